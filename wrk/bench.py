#!/usr/bin/env python3
"""ferry's benchmark: every upload and download endpoint under wrk, the FastAPI post's tables, one command.

    python3 wrk/bench.py                          # 256 KiB, -c100, -t<cores>, -d10, workers 1 and <cores>
    python3 wrk/bench.py --reference nginx        # adds nginx (sendfile / WebDAV PUT) and ratios to it
    python3 wrk/bench.py --sizes 4KiB,256KiB,16MiB --only download

Each endpoint runs against a fresh release ferry on a fresh data directory (default /dev/shm, a tmpfs), so
uploads never fill the disk and peak RSS is per endpoint. Only loopback is used; every run is bounded by
--duration and everything started is stopped. Results go to wrk/results/ as Markdown, JSON and an SVG chart.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
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
BINARY = ROOT / "target" / "release" / "ferry"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# (path, body, streamed?) in the order of the post's table
UPLOADS = [
    ("stream/async_read_and_memory_write", "raw", "yes"),
    ("stream/async_read_and_disk_write", "raw", "yes"),
    ("stream/async_read_and_async_write", "raw", "yes"),
    ("single", "multipart", "no (whole part in memory)"),
    ("single/sync", "multipart", "no (whole part in memory)"),
    ("single/stream", "multipart", "yes"),
    ("single/stream/async_read_sync_write", "multipart", "yes"),
    ("single/stream/sync_read_sync_write", "multipart", "spooled to disk"),
    ("raw/json/base64decode", "json", "no (JSON + decoded in memory)"),
]
DOWNLOADS = [
    ("stream/sync_read", "yes"),
    ("stream/async_read", "yes"),
    ("file", "yes"),
    ("file/sync", "yes"),
    ("cached", "no (whole file from memory)"),
]
CONTENT_TYPES = {
    "raw": "application/octet-stream",
    "multipart": postdata.MULTIPART_CONTENT_TYPE,
    "json": "application/json",
}


@dataclass
class Row:
    endpoint: str
    kind: str  # upload | download
    body: str
    streamed: str
    workers: int
    size: int
    requests: int = 0
    rps: float = 0.0
    avg_latency_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    peak_rss_mib: float = 0.0
    cpu_s: float = 0.0
    ratio: float | None = None
    server: str = "ferry"
    note: str = ""
    extra: dict = field(default_factory=dict)


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B?)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text}")
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]


def human(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} B"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as res:
                if res.status < 500:
                    return
        except OSError:
            time.sleep(0.05)
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


def started(server, url: str):
    """Waits for a server to answer; stops and cleans it up when it never does."""
    try:
        wait_http(url)
    except BaseException:
        server.__exit__(None, None, None)
        raise
    return server


def stop(proc: subprocess.Popen, sig: int, directory: Path) -> None:
    """Asks a server to stop (killing it after 15 s), then removes its directory."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(directory, ignore_errors=True)


class Ferry:
    """A release ferry on a fresh data directory; stopped and wiped on exit."""

    def __init__(self, data_root: Path, workers: int, fsync: bool, size: int):
        self.data = Path(tempfile.mkdtemp(prefix="ferry-bench-", dir=data_root))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        limit = str(max(size * 2, 64 << 20))
        args = [str(BINARY), "--addr", f"127.0.0.1:{self.port}", "--workers", str(workers),
                "--data-dir", str(self.data), "--fsync", str(fsync).lower(),
                "--max-upload-bytes", limit, "--max-buffered-bytes", limit]
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)

    def __enter__(self):
        return started(self, self.base + "/health")

    def __exit__(self, *exc):
        stop(self.proc, signal.SIGINT, self.data)

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def upload(self, path: Path) -> str:
        req = urllib.request.Request(self.base + "/files/upload/stream/async_read_and_async_write?filename=fixture.bin",
                                     data=path.read_bytes(), method="POST")
        with urllib.request.urlopen(req, timeout=60) as res:
            return json.load(res)["id"]


class Nginx:
    """Debian's nginx on the same fixture: static files with sendfile, uploads by WebDAV PUT."""

    def __init__(self, data_root: Path, workers: int, fixture: Path):
        self.dir = Path(tempfile.mkdtemp(prefix="nginx-bench-", dir=data_root))
        (self.dir / "static").mkdir()
        (self.dir / "put").mkdir()
        (self.dir / "body").mkdir()
        shutil.copy(fixture, self.dir / "static" / "fixture.bin")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        conf = self.dir / "nginx.conf"
        # as root, nginx's workers would run as an unprivileged user that cannot read this private directory
        user = "user root root;" if os.geteuid() == 0 else ""
        conf.write_text(f"""
{user}
worker_processes {workers};
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {self.dir}/body;
    client_max_body_size 1g;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.dir};
        location /static/ {{ }}
        # every PUT stores a new file, as every ferry upload does
        location /put/ {{ rewrite ^ /put/$request_id break; dav_methods PUT; }}
    }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self):
        return started(self, self.base + "/static/fixture.bin")

    def __exit__(self, *exc):
        stop(self.proc, signal.SIGQUIT, self.dir)

    def pids(self) -> list[int]:
        children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        return [self.proc.pid, *map(int, children)]


def run_wrk(args, url: str, script: str, script_args: list[str]) -> dict:
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s",
           "--latency", "-s", str(HERE / script), url, "--", *script_args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
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


def measure(row: Row, server, args, url: str, script: str, script_args: list[str]) -> Row:
    _, cpu_before = proc_stats(server.pids())
    result = run_wrk(args, url, script, script_args)
    peak, cpu_after = proc_stats(server.pids())
    row.requests, row.rps = result["requests"], result["rps"]
    row.avg_latency_ms, row.p99_ms, row.errors = result["avg_latency_ms"], result["p99_ms"], result["errors"]
    row.peak_rss_mib, row.cpu_s = round(peak, 1), round(cpu_after - cpu_before, 2)
    if result["stderr"]:
        row.note = result["stderr"].splitlines()[0][:120]
    return row


def plan(args, size: int, workers: int, fixture: Path, bodies: dict) -> list:
    """(label, thunk) pairs, in run order."""
    steps = []
    want = (lambda name: re.search(args.only, name)) if args.only else (lambda name: True)
    for name, body, streamed in UPLOADS:
        if want(f"upload/{name}"):
            def thunk(name=name, body=body, streamed=streamed):
                row = Row(f"/files/upload/{name}", "upload", body, streamed, workers, size)
                with Ferry(args.data_dir, workers, args.fsync, size) as ferry:
                    return measure(row, ferry, args, ferry.base + row.endpoint, "upload.lua",
                                   [str(bodies[body]), CONTENT_TYPES[body]])
            steps.append((f"upload {name}", thunk))
    for name, streamed in DOWNLOADS:
        if want(f"download/{name}"):
            def thunk(name=name, streamed=streamed):
                row = Row(f"/files/download/{name}/{{id}}", "download", "-", streamed, workers, size)
                with Ferry(args.data_dir, workers, args.fsync, size) as ferry:
                    file_id = ferry.upload(fixture)
                    return measure(row, ferry, args, f"{ferry.base}/files/download/{name}/{file_id}", "download.lua", [])
            steps.append((f"download {name}", thunk))
    if args.reference == "nginx":
        def nginx_get():
            row = Row("nginx static (sendfile)", "download", "-", "sendfile", workers, size, server="nginx")
            with Nginx(args.data_dir, workers, fixture) as nginx:
                return measure(row, nginx, args, nginx.base + "/static/fixture.bin", "download.lua", [])

        def nginx_put():
            row = Row("nginx WebDAV PUT", "upload", "raw", "yes", workers, size, server="nginx")
            with Nginx(args.data_dir, workers, fixture) as nginx:
                return measure(row, nginx, args, nginx.base + "/put/upload.bin", "upload.lua",
                               [str(bodies["raw"]), "application/octet-stream", "PUT"])
        if want("download/nginx"):
            steps.append(("nginx static", nginx_get))
        if want("upload/nginx"):
            steps.append(("nginx PUT", nginx_put))
    return steps


def add_ratios(rows: list[Row]) -> None:
    for row in rows:
        ref = next((r for r in rows if r.server == "nginx" and r.kind == row.kind
                    and r.workers == row.workers and r.size == row.size), None)
        if ref and ref.rps:
            row.ratio = round(row.rps / ref.rps, 2)


def fsync_cost(args, size: int, bodies: dict, rows: list[Row]) -> list[Row]:
    """The best raw upload strategy with --fsync false and true, on a real disk (tmpfs ignores fsync)."""
    raw = [r for r in rows if r.kind == "upload" and r.body == "raw" and r.server == "ferry" and r.size == size]
    if not raw:
        return []
    best = max(raw, key=lambda r: r.rps)
    disk = ROOT / "target" / "bench-disk"
    disk.mkdir(parents=True, exist_ok=True)
    out = []
    for fsync in (False, True):
        row = Row(best.endpoint, "fsync", "raw", "yes", best.workers, size, note=f"--fsync {str(fsync).lower()}, data on {disk_kind(disk)}")
        progress(f"fsync cost: {best.endpoint} --fsync {str(fsync).lower()} on disk")
        with Ferry(disk, best.workers, fsync, size) as ferry:
            out.append(measure(row, ferry, args, ferry.base + best.endpoint, "upload.lua",
                               [str(bodies["raw"]), CONTENT_TYPES["raw"]]))
    out[1].ratio = round(out[1].rps / out[0].rps, 2) if out[0].rps else None
    return out


def prewarm(data_dir: Path, gib: int) -> None:
    """Writes and removes GIB of data in DATA_DIR. On a virtual machine, memory the guest has never touched costs a
    fault in the host the first time; tmpfs runs that store gigabytes would measure that instead of the servers."""
    progress(f"prewarming {gib} GiB of {data_dir}")
    block = os.urandom(1 << 20)
    path = data_dir / "ferry-bench-prewarm"
    try:
        with open(path, "wb") as f:
            for _ in range(gib << 10):
                f.write(block)
    finally:
        path.unlink(missing_ok=True)


def disk_kind(path: Path) -> str:
    out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True).stdout.split()
    return out[-1] if out else "?"


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def main() -> None:
    cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("/dev/shm"), help="where servers keep files (default /dev/shm)")
    p.add_argument("--connections", "-c", type=int, default=100)
    p.add_argument("--threads", "-t", type=int, default=cores)
    p.add_argument("--duration", "-d", type=int, default=10, help="seconds per endpoint")
    p.add_argument("--size", type=parse_size, default=256 << 10, help="file size (default 256KiB)")
    p.add_argument("--sizes", help="comma-separated sizes for a sweep, e.g. 4KiB,256KiB,16MiB")
    p.add_argument("--workers", default=f"1,{cores}", help=f"server worker counts to run (default 1,{cores})")
    p.add_argument("--only", help="regex over 'upload/<path>' and 'download/<path>'")
    p.add_argument("--reference", choices=["nginx"], help="also run nginx on the same fixture and report ratios")
    p.add_argument("--fsync", action="store_true", help="run ferry with --fsync true (default false, as nginx)")
    p.add_argument("--fsync-cost", action="store_true", help="add the cost of --fsync true on a disk as its own rows")
    p.add_argument("--prewarm", type=int, default=None, metavar="GIB",
                   help="write and remove this much in the data dir first (default 8 on tmpfs, 0 elsewhere)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    if args.reference == "nginx" and not shutil.which("nginx"):
        sys.exit("--reference nginx needs nginx (apt-get install nginx-light)")
    if not shutil.which("wrk"):
        sys.exit("needs wrk (apt-get install wrk)")
    if not args.no_build:
        progress("building release ferry")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    sizes = [parse_size(s) for s in args.sizes.split(",")] if args.sizes else [args.size]
    worker_counts = [int(w) for w in args.workers.split(",")]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    warm = args.prewarm if args.prewarm is not None else (8 if disk_kind(args.data_dir) == "tmpfs" else 0)
    if warm:
        prewarm(args.data_dir, warm)

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ferry-fixture-") as tmp:
        for size in sizes:
            fixture = Path(tmp) / f"fixture-{size}.bin"
            fixture.write_bytes(os.urandom(size))
            multipart, json_body = postdata.make(str(fixture))
            bodies = {"raw": fixture, "multipart": Path(multipart), "json": Path(json_body)}
            steps = [(w, label, thunk) for w in worker_counts for label, thunk in plan(args, size, w, fixture, bodies)]
            for i, (workers, label, thunk) in enumerate(steps, 1):
                progress(f"[{i}/{len(steps)}] {human(size)} workers={workers} {label} ({args.duration}s)")
                row = thunk()
                progress(f"    {row.rps:,.0f} req/s, p99 {row.p99_ms:.1f} ms, peak RSS {row.peak_rss_mib:.0f} MiB"
                         + (f", {row.errors} errors" if row.errors else ""))
                rows.append(row)
            if args.fsync_cost:
                rows += fsync_cost(args, size, bodies, rows)
    add_ratios(rows)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "wrk": f"-t{args.threads} -c{args.connections} -d{args.duration}s --latency",
        "data_dir": f"{args.data_dir} ({disk_kind(args.data_dir)})",
        "fsync": args.fsync,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    (args.out / "results.md").write_text(report.markdown(meta, rows))
    (args.out / "chart.svg").write_text(report.svg(rows, sizes[0], max(worker_counts)))
    progress(f"wrote {args.out}/results.md, results.json, chart.svg")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) >> 20
    return f"{os.cpu_count()} cores ({model}), {mem} GiB RAM, Linux {os.uname().release}; wrk on the same cores"


if __name__ == "__main__":
    main()
