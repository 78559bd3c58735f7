#!/usr/bin/env python3
"""ferry's benchmark: every upload and download endpoint under wrk, the FastAPI post's tables, one command.

    python3 wrk/bench.py                                   # build, then 256 KiB, -c100, -t<cores>, -d10, workers 1 and <cores>
    python3 wrk/bench.py --bin target/release/ferry --reference nginx,fastapi --repeat 3 --workers 2 --duration 5
    python3 wrk/bench.py --sizes 4KiB,256KiB,16MiB --only download --no-build
    python3 wrk/bench.py --list                            # print the endpoints the spec lists, run nothing

The endpoints come from ferry's OpenAPI document (`ferry openapi`): every POST /files/upload/<strategy> and
GET /files/download/<strategy>/{id} operation with an `x-ferry` extension, in its `order`.

Each measurement runs against a fresh server on a fresh data directory (default /dev/shm, a tmpfs), so uploads
never fill the disk and peak RSS is per endpoint. With --reference, the same endpoint is then measured on the
references (the FastAPI twin in wrk/fastapi_app.py at the same path; nginx's WebDAV PUT or sendfile), and
--repeat N does that N times, servers interleaved, so the medians and ratios see the same machine weather.
Only loopback is used; every run is bounded by --duration and everything started is stopped. Results go to
wrk/results/runs/<timestamp>/ (or --out) as Markdown, JSON and an SVG chart.

--variant NAME='ARGS' adds ferry run another way to every round, e.g. --variant metrics='--metrics-addr auto'
--variant logs='RUST_LOG=info': NAME=VALUE words are environment, the rest are ferry options (`auto` after
--metrics-addr is a free port; `{run}` in a word is a name fresh for every server started, e.g.
--s3-prefix bench-{run}). Plain ferry runs with RUST_LOG=warn and no metrics. A ferry with --metrics-addr
(a variant, or every ferry with --server-metrics) is scraped before and after each run, and the runs record the
server's own count of requests and bytes for the endpoint beside wrk's.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import postdata  # noqa: E402
import report  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_BINARY = ROOT / "target" / "release" / "ferry"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REFERENCES = ("fastapi", "nginx")
CONTENT_TYPES = {
    "raw": "application/octet-stream",
    "multipart": postdata.MULTIPART_CONTENT_TYPE,
    "json": "application/json",
}
TUS_PATH = "/files/tus/"
# What --prewarm auto assumes a server can store per second and per core; the best upload rate measured on the
# 2-core development machine was 0.9 GiB/s.
PREWARM_BYTES_PER_CORE_SECOND = 512 << 20
PREWARM_CAP = 8 << 30


# --- the endpoint list, from the spec --------------------------------------------------------------------------


class SpecError(Exception):
    pass


@dataclass(frozen=True)
class Endpoint:
    kind: str  # upload | download
    strategy: str  # e.g. single/stream
    path: str  # the spec's path template, e.g. /files/download/file/{id}
    body: str  # raw | multipart | json for uploads, "-" for downloads
    streamed: str
    order: int

    @property
    def name(self) -> str:
        """What --only matches: upload/<strategy> or download/<strategy>."""
        return f"{self.kind}/{self.strategy}"


PATHS = {
    "upload": ("post", re.compile(r"/files/upload/(.+)")),
    "download": ("get", re.compile(r"/files/download/(.+)/\{[^/{}]+\}")),
}


def endpoints_from_spec(spec: dict) -> list[Endpoint]:
    """Every upload and download operation that carries `x-ferry`, uploads first, each kind in `order`.
    HEAD operations carry the same extension as their GET and are left out."""
    found = []
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            x = op.get("x-ferry") if isinstance(op, dict) else None
            if not x or method == "head":
                continue
            kind = x.get("kind")
            if kind not in PATHS:
                raise SpecError(f"{method.upper()} {path}: x-ferry kind {kind!r} is neither upload nor download")
            want_method, pattern = PATHS[kind]
            match = pattern.fullmatch(path)
            if method != want_method or not match:
                raise SpecError(f"{method.upper()} {path}: an x-ferry {kind} must be {want_method.upper()} "
                                f"{'/files/upload/<strategy>' if kind == 'upload' else '/files/download/<strategy>/{id}'}")
            strategy = x.get("strategy", match.group(1))
            if strategy != match.group(1):
                raise SpecError(f"{method.upper()} {path}: x-ferry strategy {strategy!r} is not the path's")
            body = x.get("body") if kind == "upload" else "-"
            if kind == "upload" and body not in CONTENT_TYPES:
                raise SpecError(f"POST {path}: x-ferry body {body!r} is not one of {', '.join(CONTENT_TYPES)}")
            if not isinstance(x.get("order"), int):
                raise SpecError(f"{method.upper()} {path}: x-ferry order {x.get('order')!r} is not an integer")
            found.append(Endpoint(kind, strategy, path, body, str(x.get("streamed", "?")), x["order"]))
    if not found:
        raise SpecError("no operation carries an x-ferry extension; this ferry is too old for the kit")
    # tus is not a path of its own per strategy: its creation-with-upload (one POST carrying the whole file, as
    # every other row's one request does) is measured as the upload after the last one the spec orders
    if "post" in spec["paths"].get(TUS_PATH, {}):
        last = max((e.order for e in found if e.kind == "upload"), default=-1)
        found.append(Endpoint("upload", "tus", TUS_PATH, "tus", "yes (resumable; creation-with-upload)", last + 1))
    found.sort(key=lambda e: (e.kind != "upload", e.order, e.strategy))
    return found


def load_spec(binary: Path) -> dict:
    out = subprocess.run([str(binary), "openapi"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise SpecError(f"`{binary} openapi` failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def route_key(method: str, path: str) -> tuple[str, str]:
    """Method and path with parameter names erased, to match ferry's `{id}` with FastAPI's `{file_id}`."""
    return method.lower(), re.sub(r"\{[^}]*\}", "{}", path)


def fastapi_routes(python: str) -> set[tuple[str, str]]:
    """The routes wrk/fastapi_app.py declares, read from its own OpenAPI document (no server started)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import fastapi_app; "
            "print(json.dumps(fastapi_app.app.openapi()))")
    with tempfile.TemporaryDirectory(prefix="ferry-fastapi-spec-") as tmp:
        out = subprocess.run([python, "-c", code, str(HERE)], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, FERRY_FASTAPI_DATA=tmp))
    if out.returncode != 0:
        sys.exit(f"--reference fastapi: cannot load wrk/fastapi_app.py with {python} "
                 f"(python3 -m pip install -r wrk/requirements-fastapi.txt):\n{out.stderr.strip()[-600:]}")
    spec = json.loads(out.stdout)
    return {route_key(m, p) for p, item in spec["paths"].items() for m in item}


# --- servers ---------------------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B?)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text}")
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]


human = report.size_label


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, seconds: float = 30, every: float = 0.05) -> None:
    """Until URL answers below 500, asking again EVERY seconds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as res:
                if res.status < 500:
                    return
        except OSError:
            time.sleep(every)
    raise RuntimeError(f"{url} did not answer within {seconds}s")


def proc_stats(pids: list[int]) -> tuple[float, float]:
    """Peak RSS (MiB, the largest of the processes) and CPU seconds (summed) so far."""
    peak, ticks = 0.0, 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
            peak = max(peak, int(hwm.group(1)) / 1024 if hwm else 0)
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return peak, ticks / CLK_TCK


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


class Server:
    """A server process in its own session on a fresh directory; stopped (its whole process group, killed after
    15 s) and wiped on exit."""

    name = "?"
    stop_signal = signal.SIGTERM
    health = "/health"
    # how long to wait for `health`, and how often to ask
    ready_within, ask_every = 30.0, 0.05

    def start(self, args: list[str], directory: Path, env: dict | None = None, port: int | None = None,
              stderr=None) -> None:
        """Starts ARGS ("{port}" in them is the port) with stderr shown, unless told otherwise."""
        self.dir = directory
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([a.format(port=self.port) for a in args], env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=stderr)

    def __enter__(self):
        try:
            wait_http(self.base + self.health, self.proc, self.ready_within, self.ask_every)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            os.killpg(self.proc.pid, self.stop_signal)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        finally:
            try:  # workers left behind by a supervisor that died first
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def upload(self, fixture: Path, path: str) -> str:
        """Stores the fixture through a raw upload endpoint; returns its id."""
        req = urllib.request.Request(f"{self.base}{path}?filename=fixture.bin", data=fixture.read_bytes(),
                                     headers={"Content-Type": "application/octet-stream"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as res:
            return json.load(res)["id"]


class Ferry(Server):
    name = "ferry"
    stop_signal = signal.SIGINT

    def __init__(self, binary: Path, data_root: Path, workers: int, fsync: bool, size: int,
                 variant: list[str] | None = None):
        data = Path(tempfile.mkdtemp(prefix="ferry-bench-", dir=data_root))
        limit = str(max(size * 2, 64 << 20))
        # {run}: the data directory's name, which no other server of any run had, e.g. for a fresh --s3-prefix
        env, extra = variant_parts(variant or [], run=data.name)
        self.metrics_url = None
        if "--metrics-addr" in extra:
            at = extra.index("--metrics-addr") + 1
            if extra[at:at + 1] == ["auto"]:
                extra[at] = f"127.0.0.1:{free_port()}"
            self.metrics_url = f"http://{extra[at]}/metrics"
        # what ferry logs goes where a deployment's log would: a file beside its data directory
        self.log_path = data.with_suffix(".log")
        self.start([str(binary), "--addr", "127.0.0.1:{port}", "--workers", str(workers), "--data-dir", str(data),
                    "--fsync", str(fsync).lower(), "--max-upload-bytes", limit, "--max-buffered-bytes", limit,
                    *extra], data, env={**os.environ, "RUST_LOG": "warn", **env}, stderr=self.log_path.open("w"))

    def __exit__(self, *exc):
        try:
            super().__exit__(*exc)
        finally:
            self.log_path.unlink(missing_ok=True)


def variant_parts(words: list[str], run: str = "") -> tuple[dict, list[str]]:
    """A variant's words: NAME=VALUE (NAME in capitals) is environment, the rest ferry's options; `{run}` in a word
    becomes RUN."""
    env = {}
    args = []
    for word in (w.replace("{run}", run) for w in words):
        name, eq, value = word.partition("=")
        if eq and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            env[name] = value
        else:
            args.append(word)
    return env, args


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as res:
        return res.read().decode()


def server_view(before: str, after: str, e: "Endpoint") -> tuple[int, int]:
    """The requests ferry answered on the endpoint's route and the body bytes it counted for its strategy
    (received for uploads, sent for downloads) between two scrapes of its /metrics."""
    bytes_metric = "ferry_received_bytes_total" if e.kind == "upload" else "ferry_sent_bytes_total"

    def totals(text: str) -> tuple[float, float]:
        requests = body = 0.0
        for line in text.splitlines():
            match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
            if not match:
                continue
            name, labels, value = match.groups()
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
            if name == "ferry_http_requests_total" and labels.get("route") == e.path:
                requests += float(value)
            elif name == bytes_metric and labels.get("strategy") == e.strategy:
                body += float(value)
        return requests, body

    (r0, b0), (r1, b1) = totals(before), totals(after)
    return int(r1 - r0), int(b1 - b0)


class FastAPI(Server):
    """wrk/fastapi_app.py under uvicorn with the same worker count, on a fresh directory of the same kind."""

    name = "fastapi"

    def __init__(self, python: str, data_root: Path, workers: int):
        data = Path(tempfile.mkdtemp(prefix="fastapi-bench-", dir=data_root))
        # TMPDIR: Starlette spools multipart parts over 1 MiB to a temp file; keep those on the same storage
        env = dict(os.environ, FERRY_FASTAPI_DATA=str(data / "files"), TMPDIR=str(data))
        self.start([python, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(HERE), "--host", "127.0.0.1",
                    "--port", "{port}", "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
                   data, env=env)


class Nginx(Server):
    """Debian's nginx on the same fixture: static files with sendfile, uploads by WebDAV PUT."""

    name = "nginx"
    stop_signal = signal.SIGQUIT
    health = "/static/fixture.bin"

    def __init__(self, data_root: Path, workers: int, fixture: Path):
        root = Path(tempfile.mkdtemp(prefix="nginx-bench-", dir=data_root))
        for sub in ("static", "put", "body"):
            (root / sub).mkdir()
        shutil.copy(fixture, root / "static" / "fixture.bin")
        port = free_port()
        conf = root / "nginx.conf"
        # as root, nginx's workers would run as an unprivileged user that cannot read this private directory
        user = "user root root;" if os.geteuid() == 0 else ""
        conf.write_text(f"""
{user}
worker_processes {workers};
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {root}/body;
    client_max_body_size 1g;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /static/ {{ }}
        # every PUT stores a new file, as every ferry upload does
        location /put/ {{ rewrite ^ /put/$request_id break; dav_methods PUT; }}
    }}
}}
""")
        # nginx logs to error.log in its directory, but says on stderr that it cannot open the default one first
        self.start(["nginx", "-c", str(conf), "-p", str(root)], root, port=port, stderr=subprocess.DEVNULL)


# --- measuring -------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run against one server."""

    kind: str  # upload | download | fsync
    strategy: str  # ferry's strategy this run stands beside (nginx runs too)
    server: str  # ferry | fastapi | nginx
    workers: int
    size: int
    round: int
    body: str = "-"
    streamed: str = ""
    target: str = ""  # what was hit: the path, or nginx's PUT / static file
    requests: int = 0
    rps: float = 0.0
    avg_latency_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    peak_rss_mib: float = 0.0
    cpu_s: float = 0.0
    load: float = 0.0  # the machine's 1-minute load average when the run ended (wrk and the server add about 2)
    note: str = ""
    # ferry's own view from /metrics, when it had --metrics-addr: requests answered on the route, body bytes
    server_requests: int | None = None
    server_bytes: int | None = None


def run_wrk(args, url: str, script: str, script_args: list[str]) -> dict:
    timeout = getattr(args, "timeout", 2)  # wrk's own default: an answer slower than this is an error
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s",
           "--timeout", f"{timeout}s", "--latency", "-s", str(HERE / script), url, "--", *script_args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + timeout + 60)
    text = out.stdout
    if out.returncode != 0 or "Requests/sec" not in text:
        raise RuntimeError(f"wrk failed: {out.stderr or text}")

    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s|m)\b", text)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s|m)\b", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests": int(re.search(r"(\d+) requests in", text).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "avg_latency_ms": ms(*lat.groups()) if lat else 0.0,
        "p99_ms": ms(*p99.groups()) if p99 else 0.0,
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0),
        "stderr": out.stderr.strip(),
    }


def measure(run: Run, server: Server, args, url: str, script: str, script_args: list[str],
            endpoint: "Endpoint | None" = None) -> Run:
    metrics_url = getattr(server, "metrics_url", None) if endpoint else None
    before = scrape(metrics_url) if metrics_url else None
    _, cpu_before = proc_stats(server.pids())
    result = run_wrk(args, url, script, script_args)
    peak, cpu_after = proc_stats(server.pids())
    if metrics_url:
        # the last responses' counts land as wrk's connections close
        time.sleep(0.2)
        run.server_requests, run.server_bytes = server_view(before, scrape(metrics_url), endpoint)
    run.requests, run.rps = result["requests"], result["rps"]
    run.avg_latency_ms, run.p99_ms, run.errors = result["avg_latency_ms"], result["p99_ms"], result["errors"]
    run.peak_rss_mib, run.cpu_s = round(peak, 1), round(cpu_after - cpu_before, 2)
    run.load = float(Path("/proc/loadavg").read_text().split()[0])
    if result["stderr"]:
        run.note = result["stderr"].splitlines()[0][:120]
    return run


@dataclass
class Context:
    args: argparse.Namespace
    binary: Path
    endpoints: list[Endpoint]  # the ones to measure (after --only)
    raw_upload: Endpoint | None  # the spec's first raw upload, which stores the downloads' fixture
    twins: set = field(default_factory=set)


def servers_for(ctx: Context, e: Endpoint) -> list[str]:
    names = ["ferry", *(f"ferry:{name}" for name in ctx.args.variants)]
    for ref in ctx.args.reference:
        if ref == "fastapi" and route_key(PATHS[e.kind][0], e.path) not in ctx.twins:
            continue  # no FastAPI twin (ferry's cached download): the table says "–"
        names.append(ref)
    return names


def measure_one(ctx: Context, e: Endpoint, server_name: str, workers: int, size: int, rnd: int,
                fixture: Path, bodies: dict) -> Run:
    args = ctx.args
    run = Run(e.kind, e.strategy, server_name, workers, size, rnd, e.body, e.streamed)
    if server_name == "nginx":
        with Nginx(args.data_dir, workers, fixture) as nginx:
            if e.kind == "upload":
                # WebDAV PUT takes the raw file whatever the endpoint's body; it is the upper bound for all of them
                run.target = "nginx WebDAV PUT"
                return measure(run, nginx, args, nginx.base + "/put/upload.bin", "upload.lua",
                               [str(bodies["raw"]), CONTENT_TYPES["raw"], "PUT"])
            run.target = "nginx static (sendfile)"
            return measure(run, nginx, args, nginx.base + "/static/fixture.bin", "download.lua", [])
    if server_name.startswith("ferry"):
        variant = args.variants.get(server_name.partition(":")[2], [])
        if args.server_metrics and "--metrics-addr" not in variant:
            variant = [*variant, "--metrics-addr", "auto"]
        server = Ferry(ctx.binary, args.data_dir, workers, args.fsync, size, variant)
    else:
        server = FastAPI(args.fastapi_python, args.data_dir, workers)
    run.target = e.path
    with server:
        if e.body == "tus":
            raw = bodies["raw"]
            return measure(run, server, args, server.base + e.path, "upload.lua",
                           [str(raw), "application/offset+octet-stream", "POST", "Tus-Resumable: 1.0.0",
                            f"Upload-Length: {raw.stat().st_size}"], e)
        if e.kind == "upload":
            return measure(run, server, args, server.base + e.path, "upload.lua",
                           [str(bodies[e.body]), CONTENT_TYPES[e.body]], e)
        file_id = server.upload(fixture, ctx.raw_upload.path)
        url = server.base + re.sub(r"\{[^}]*\}", file_id, e.path)
        return measure(run, server, args, url, "download.lua", [], e)


def fsync_cost(ctx: Context, size: int, bodies: dict, runs: list[Run]) -> list[Run]:
    """The best raw upload strategy with --fsync false and true, on a real disk (tmpfs ignores fsync)."""
    args = ctx.args
    raw = [e for e in ctx.endpoints if e.kind == "upload" and e.body == "raw"]
    medians = {e: statistics.median([r.rps for r in runs if r.server == "ferry" and r.kind == "upload"
                                     and r.strategy == e.strategy and r.size == size] or [0]) for e in raw}
    best = max(raw, key=lambda e: medians[e])
    workers = max(int(w) for w in args.workers.split(","))
    disk = ROOT / "target" / "bench-disk"
    disk.mkdir(parents=True, exist_ok=True)
    out = []
    for rnd in range(1, args.repeat + 1):
        for fsync in (False, True):
            run = Run("fsync", best.strategy, "ferry", workers, size, rnd, "raw", "yes", best.path,
                      note=f"--fsync {str(fsync).lower()}, data on {disk_kind(disk)}")
            progress(f"fsync cost: {best.name} --fsync {str(fsync).lower()} on disk, round {rnd}/{args.repeat}")
            with Ferry(ctx.binary, disk, workers, fsync, size) as ferry:
                out.append(measure(run, ferry, args, ferry.base + best.path, "upload.lua",
                                   [str(bodies["raw"]), CONTENT_TYPES["raw"]]))
    return out


# --- the machine -----------------------------------------------------------------------------------------------


def prewarm_bytes(args, endpoints: list[Endpoint], sizes: list[int]) -> int:
    """--prewarm auto: on tmpfs, as much as the busiest single run can store, capped."""
    if disk_kind(args.data_dir) != "tmpfs":
        return 0
    cores = os.cpu_count() or 1
    if any(e.kind == "upload" for e in endpoints):
        need = args.duration * cores * PREWARM_BYTES_PER_CORE_SECOND
    else:  # downloads store one file per server
        need = 2 * max(sizes)
    avail = int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) << 10
    free = shutil.disk_usage(args.data_dir).free
    gib = 1 << 30
    need = -(-need // gib) * gib  # whole GiB
    return max(0, min(need, PREWARM_CAP, avail // 2, free // 2))


def prewarm(data_dir: Path, nbytes: int) -> None:
    """Writes and removes NBYTES in DATA_DIR. On a virtual machine, memory the guest has never touched costs a
    fault in the host the first time; tmpfs runs that store gigabytes would measure that instead of the servers.
    Pages freed after a run are reused by the next, so covering the largest single run is enough."""
    progress(f"prewarming {human(nbytes)} of {data_dir}")
    block = os.urandom(1 << 20)
    path = data_dir / "ferry-bench-prewarm"
    try:
        with open(path, "wb") as f:
            for _ in range(nbytes >> 20):
                f.write(block)
    finally:
        path.unlink(missing_ok=True)


def disk_kind(path: Path) -> str:
    out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True).stdout.split()
    return out[-1] if out else "?"


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) >> 20
    return f"{os.cpu_count()} cores ({model}), {mem} GiB RAM, Linux {os.uname().release}; wrk on the same cores"


def versions(ctx: Context) -> dict:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except OSError:
            return "?"
        line = ((out.stdout or out.stderr).strip().splitlines() or ["?"])[0]
        return re.sub(r"^nginx version: | Copyright.*$", "", line)

    found = {"ferry": first_line([str(ctx.binary), "--version"]), "wrk version": first_line(["wrk", "--version"])}
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"])
    modified = ", src/ or Cargo files modified" if dirty != "?" and dirty else ""
    found["repository at run time"] = f"commit {commit}{modified}"
    if "nginx" in ctx.args.reference:
        found["nginx"] = first_line(["nginx", "-v"])
    if "fastapi" in ctx.args.reference:
        found["fastapi"] = first_line([ctx.args.fastapi_python, "-c",
                                       "import sys, fastapi, starlette, uvicorn, uvloop, httptools; "
                                       "print(f'Python {sys.version.split()[0]}, fastapi {fastapi.__version__}, "
                                       "starlette {starlette.__version__}, uvicorn {uvicorn.__version__} "
                                       "(uvloop, httptools)')"])
    return found


def shown_command() -> str:
    """This run's command line, with paths inside the repository made relative to it; a wrapper that ran this
    script (wrk/s3_bench.py) shows its own through FERRY_BENCH_COMMAND."""
    if os.environ.get("FERRY_BENCH_COMMAND"):
        return os.environ["FERRY_BENCH_COMMAND"]
    def rel(arg: str) -> str:
        try:
            return str(Path(arg).resolve().relative_to(ROOT)) if os.sep in arg else arg
        except ValueError:
            return arg
    return shlex.join(["python3", "wrk/bench.py", *map(rel, sys.argv[1:])])


# --- main ------------------------------------------------------------------------------------------------------


def parse_args():
    cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", type=Path, metavar="PATH", help="the ferry binary to run; skips the build")
    p.add_argument("--no-build", action="store_true",
                   help="run target/release/ferry as it is, without `cargo build --release` first")
    p.add_argument("--spec", type=Path, metavar="FILE",
                   help="read the endpoints from this OpenAPI document instead of `<binary> openapi`")
    p.add_argument("--list", action="store_true", help="print the endpoints and the servers each runs on, then exit")
    p.add_argument("--data-dir", type=Path, default=Path("/dev/shm"), help="where servers keep files (default /dev/shm)")
    p.add_argument("--connections", "-c", type=int, default=100)
    p.add_argument("--threads", "-t", type=int, default=cores)
    p.add_argument("--duration", "-d", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument("--timeout", type=int, default=2, metavar="SECONDS",
                   help="wrk counts an answer slower than this as a timeout error (default 2, wrk's): raise it "
                        "where one request takes longer, e.g. 16 MiB uploads to an object store")
    p.add_argument("--size", type=parse_size, default=256 << 10, help="file size (default 256KiB)")
    p.add_argument("--sizes", help="comma-separated sizes for a sweep, e.g. 4KiB,256KiB,16MiB")
    p.add_argument("--workers", default=f"1,{cores}",
                   help=f"comma-separated server worker counts (default 1,{cores}); references get the same count")
    p.add_argument("--only", help="regex searched in 'upload/<strategy>' and 'download/<strategy>'")
    p.add_argument("--reference", action="append", default=[], metavar="NAME[,NAME]",
                   help="also measure each endpoint on: fastapi (wrk/fastapi_app.py under uvicorn, same path), "
                        "nginx (WebDAV PUT / static sendfile); repeat or comma-separate for both")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="measure every endpoint N times, servers interleaved (ferry, fastapi, nginx, then again); "
                        "tables show the median and the min-max spread")
    p.add_argument("--fastapi-python", default=sys.executable, metavar="PYTHON",
                   help="interpreter with wrk/requirements-fastapi.txt installed (default: this one)")
    p.add_argument("--fsync", action="store_true", help="run ferry with --fsync true (default false, as nginx)")
    p.add_argument("--fsync-cost", action="store_true", help="add the cost of --fsync true on a disk as its own rows")
    p.add_argument("--prewarm", default="auto", metavar="auto|GIB",
                   help="write and remove this much in the data dir first: on a VM, memory the guest touches for "
                        "the first time costs a host page fault, which tmpfs runs storing gigabytes would measure. "
                        "auto (default): on tmpfs only, as much as one run could store (duration x cores x "
                        "0.5 GiB/s; downloads only: twice the largest file), capped at 8 GiB and half the free "
                        "memory; 0 elsewhere")
    p.add_argument("--variant", action="append", default=[], metavar="NAME='ARGS'",
                   help="also run ferry this way in every round, e.g. metrics='--metrics-addr auto' or "
                        "logs='RUST_LOG=info' (NAME=VALUE words are environment); tables give each variant's "
                        "req/s over plain ferry's")
    p.add_argument("--server-metrics", action="store_true",
                   help="run every ferry with --metrics-addr and record its own count of requests and bytes")
    p.add_argument("--out", type=Path, help="results directory (default wrk/results/runs/<timestamp>/, gitignored)")
    args = p.parse_args()
    args.variants = {}
    for item in args.variant:
        name, eq, words = item.partition("=")
        if not eq or not re.fullmatch(r"[a-z0-9_-]+", name):
            p.error(f"--variant takes NAME='ARGS' with a lowercase name, not {item!r}")
        args.variants[name] = shlex.split(words)
    args.reference = [r.strip() for item in args.reference for r in item.split(",") if r.strip()]
    bad = [r for r in args.reference if r not in REFERENCES]
    if bad:
        p.error(f"unknown --reference {', '.join(bad)} (known: {', '.join(REFERENCES)})")
    args.reference = [r for r in REFERENCES if r in args.reference]  # fastapi before nginx, once each
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.prewarm != "auto" and not re.fullmatch(r"\d+", args.prewarm):
        p.error("--prewarm takes auto or a whole number of GiB")
    return args


def main() -> None:
    args = parse_args()
    if args.bin:
        binary = args.bin.resolve()
    else:
        binary = DEFAULT_BINARY
        if not args.no_build and not (args.list and args.spec):
            progress("building release ferry")
            subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    if not args.spec and not binary.is_file():
        sys.exit(f"no ferry binary at {binary} (build it, or give --bin)")
    try:
        spec = json.loads(args.spec.read_text()) if args.spec else load_spec(binary)
        endpoints = endpoints_from_spec(spec)
    except (SpecError, json.JSONDecodeError) as e:
        sys.exit(f"reading the endpoints from the spec: {e}")
    raw_upload = next((e for e in endpoints if e.kind == "upload" and e.body == "raw"), None)
    if args.only:
        endpoints = [e for e in endpoints if re.search(args.only, e.name)]
    ctx = Context(args, binary, endpoints, raw_upload)
    if "fastapi" in args.reference:
        ctx.twins = fastapi_routes(args.fastapi_python)
    if args.list:
        for e in endpoints:
            print(f"{e.name:50} {e.body:9} {', '.join(servers_for(ctx, e)):22} {e.streamed}")
        return
    if not endpoints:
        sys.exit(f"--only {args.only!r} matches no endpoint")
    if any(e.kind == "download" for e in endpoints) and not raw_upload:
        sys.exit("the spec lists no raw upload to store the downloads' fixture with")
    if "nginx" in args.reference and not shutil.which("nginx"):
        sys.exit("--reference nginx needs nginx (apt-get install nginx-light)")
    if not shutil.which("wrk"):
        sys.exit("needs wrk (apt-get install wrk)")

    load = float(Path("/proc/loadavg").read_text().split()[0])
    if load > 0.5 * (os.cpu_count() or 1):
        progress(f"warning: load average {load:.1f} on {os.cpu_count()} cores; other work will show in the figures")
    sizes = [parse_size(s) for s in args.sizes.split(",")] if args.sizes else [args.size]
    worker_counts = [int(w) for w in args.workers.split(",")]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    warm = prewarm_bytes(args, endpoints, sizes) if args.prewarm == "auto" else int(args.prewarm) << 30
    if warm:
        prewarm(args.data_dir, warm)
    out_dir = args.out or HERE / "results" / "runs" / time.strftime("%Y%m%d-%H%M%S")

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="ferry-fixture-") as tmp:
        for size in sizes:
            fixture = Path(tmp) / f"fixture-{size}.bin"
            fixture.write_bytes(os.urandom(size))
            multipart, json_body = postdata.make(str(fixture))
            bodies = {"raw": fixture, "multipart": Path(multipart), "json": Path(json_body)}
            steps = [(w, e, rnd, server) for w in worker_counts for e in endpoints
                     for rnd in range(1, args.repeat + 1) for server in servers_for(ctx, e)]
            for i, (workers, e, rnd, server) in enumerate(steps, 1):
                progress(f"[{i}/{len(steps)}] {human(size)} workers={workers} {e.name} "
                         f"round {rnd}/{args.repeat} {server} ({args.duration}s)")
                run = measure_one(ctx, e, server, workers, size, rnd, fixture, bodies)
                progress(f"    {run.rps:,.0f} req/s, p99 {run.p99_ms:.1f} ms, peak RSS {run.peak_rss_mib:.0f} MiB"
                         + (f", {run.errors} errors" if run.errors else ""))
                runs.append(run)
            if args.fsync_cost and any(e.kind == "upload" and e.body == "raw" for e in endpoints):
                runs += fsync_cost(ctx, size, bodies, runs)

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": shown_command(),
        "machine": machine(),
        "versions": versions(ctx),
        "wrk": f"-t{args.threads} -c{args.connections} -d{args.duration}s --timeout {args.timeout}s --latency",
        "data_dir": f"{args.data_dir} ({disk_kind(args.data_dir)})",
        "prewarm": human(warm) if warm else "none",
        "fsync": args.fsync,
        "repeat": args.repeat,
        "references": args.reference,
        "variants": {name: shlex.join(words) for name, words in args.variants.items()},
    }
    summaries = report.summarize(runs, endpoints)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps({
        "meta": meta,
        "endpoints": [asdict(e) for e in endpoints],
        "summary": summaries,
        "runs": [asdict(r) for r in runs],
    }, indent=2) + "\n")
    (out_dir / "results.md").write_text(report.markdown(meta, summaries, runs))
    (out_dir / "chart.svg").write_text(report.svg(summaries, meta))
    progress(f"wrote {out_dir}/results.md, results.json, chart.svg")


if __name__ == "__main__":
    main()
