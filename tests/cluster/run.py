#!/usr/bin/env python3
"""ferry on a three-node Garage cluster: two stateless replicas behind nginx, with node loss.

    python3 tests/cluster/run.py path/to/ferry path/to/garage      (needs nginx, wrk; loopback only)

The deployment, all on loopback:

    client ── nginx (round robin, request bodies streamed, failover on connect errors)
                ├── ferry A  --s3-endpoint → Garage node 0 ┐
                └── ferry B  --s3-endpoint → Garage node 1 ├─ replication_factor 3, one zone each
                                             Garage node 2 ┘  (no replica points at it)

Each replica talks to a Garage node of its own, as a co-located gateway would in a real deployment; node 2
only stores. The checks, each printed as a sentence with ok or FAIL:

1. Every upload strategy through nginx stores the file whole; every download strategy serves it byte for byte
   from the replica that did not store it, and from each replica, ranges included (206, the right bytes).
2. Under a bounded wrk load of uploads and downloads through nginx (wrk's kit scripts, with every answer and
   the id of every 201 recorded by tests/cluster/record.lua), beside two Python probers that time one upload
   at a time (a small one, a single PUT on S3; a large streamed one, a multipart upload): SIGKILL Garage node 2
   (the node no replica points at), and no upload or download fails; restart it. Then SIGKILL replica A, with
   an upload to it cut half way: nginx fails over to B, only requests in flight on A fail, the cut upload never
   becomes a file, A restarts with a short --s3-sweep-after and sweeps the cut multipart upload away; then
   every upload ferry answered 201 downloads whole, the listing holds exactly those files (and any A published
   but was killed before answering, whole, no more than nginx saw go unanswered), the bucket holds one content
   object and one row per file and nothing else, and `ferry fsck` on S3 finds no problem, and names planted
   damage.
3. A delete on A is seen on B: B answers 404 within ferry's stated bound (1 s; the time it took is printed).

Closes with `cluster: N passed, M failed`. Every wait is bounded; every process (three Garage nodes, two
ferries, nginx, wrk) is started and stopped by pid, also on failure or SIGTERM; the temporary directory is
removed.
"""

import concurrent.futures
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "wrk"))
import bench  # noqa: E402  the kit's reading of the spec: every strategy's path and body kind
import postdata  # noqa: E402  the kit's multipart and JSON bodies
from garage import Garage, free_port  # noqa: E402

WAIT = 60  # any single wait
LOAD_SECONDS = 8  # each wrk run
KILL_AT = 2.5  # seconds into the run
WRK_CONNECTIONS = 4  # per wrk (one uploads, one downloads)
DELETE_BOUND = 1.0  # ferry caches rows at most 1 s on S3
SWEEP_AFTER = "2s"
LARGE = (10 << 20) + 12345  # streamed uploads: several multipart parts, a short last one
SMALL = (2 << 20) + 321  # uploads buffered in memory
LOAD_BODY = 256 << 10
PROBE_BODY = 64 << 10
LARGE_PROBE_BODY = (9 << 20) + 4321  # two multipart parts
RANGES = ["bytes=0-0", "bytes=1000-1999", f"bytes={(5 << 20) - 100}-{(5 << 20) + 99}",
          f"bytes={(8 << 20) - 7}-{(8 << 20) + 8}", "bytes=-4097"]


class Failed(Exception):
    pass


# --- small helpers ---------------------------------------------------------------------------------------------


def http(method: str, url: str, body=None, headers: dict | None = None,
         timeout: float = WAIT) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, {k.lower(): v for k, v in res.headers.items()}, res.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def byte_range(data: bytes, spec: str) -> bytes:
    first, last = spec.removeprefix("bytes=").split("-")
    if not first:
        return data[-int(last):]
    return data[int(first):int(last) + 1]


def chunks(data: bytes, size: int = 1 << 20):
    """A body urllib sends chunked: nothing tells nginx or ferry its length up front."""
    for i in range(0, len(data), size):
        yield data[i:i + size]


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, wait: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=wait)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok: bool, sentence: str, detail: str = "") -> bool:
        self.passed, self.failed = self.passed + bool(ok), self.failed + (not ok)
        print(f"{'ok' if ok else 'FAIL'}: {sentence}" + (f"\n      {detail}" if detail and not ok else ""),
              flush=True)
        return bool(ok)

    def note(self, text: str) -> None:
        print(f"      {text}", flush=True)


# --- the deployment --------------------------------------------------------------------------------------------


@dataclass
class Proxied:
    """One request as nginx logged it."""
    end: float  # epoch seconds
    status: int  # what the client was sent
    upstreams: str  # the replicas tried, in order ("127.0.0.1:A, 127.0.0.1:B")
    ferry_status: str  # the last replica's answer ("-" when there was none)
    location: str  # its Location header (a 201's /files/<id>)
    method: str
    path: str


class Deployment:
    def __init__(self, ferry: str, garage_binary: str, work: Path):
        self.ferry = str(Path(ferry).resolve())
        self.work = work
        self.garage = Garage(garage_binary, nodes=3, root=str(work / "garage"))
        self.ports = {"A": free_port(), "B": free_port()}
        self.node_of = {"A": 0, "B": 1}
        self.procs: dict[str, subprocess.Popen | None] = {"A": None, "B": None, "nginx": None}
        self.proxy_port = free_port()

    def url(self, who: str) -> str:
        return f"http://127.0.0.1:{self.proxy_port if who == 'nginx' else self.ports[who]}"

    def replica_at(self, upstream: str) -> str:
        """A or B, from nginx's $upstream_addr (the last address tried answered)."""
        last = upstream.split(",")[-1].strip()
        return next((name for name, port in self.ports.items() if last == f"127.0.0.1:{port}"), upstream or "?")

    def s3_args(self, node: int) -> list[str]:
        return ["--storage", "s3", "--s3-endpoint", self.garage.endpoints[node], "--s3-bucket", self.garage.bucket,
                "--s3-region", self.garage.region]

    def env(self) -> dict:
        return dict(os.environ, AWS_ACCESS_KEY_ID=self.garage.access_key,
                    AWS_SECRET_ACCESS_KEY=self.garage.secret_key, RUST_LOG=os.environ.get("FERRY_LOG", "warn"))

    def log(self, name: str) -> Path:
        return self.work / f"{name}.log"

    def start_ferry(self, name: str, *extra: str) -> None:
        data = self.work / f"data-{name}"
        data.mkdir(exist_ok=True)
        with self.log(name).open("ab") as log:
            proc = subprocess.Popen([self.ferry, "--addr", f"127.0.0.1:{self.ports[name]}", "--data-dir", str(data),
                                     *self.s3_args(self.node_of[name]), *extra],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env())
        self.procs[name] = proc
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise Failed(f"ferry {name} exited with {proc.returncode}:\n{tail(self.log(name))}")
            try:
                if http("GET", self.url(name) + "/health/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise Failed(f"ferry {name} was not ready within {WAIT}s:\n{tail(self.log(name))}")

    def start_nginx(self) -> None:
        conf_dir = self.work / "nginx"
        conf_dir.mkdir()
        # one worker, so that its view of a dead upstream is the only one; a replica that refuses a connection
        # is skipped for 10 s (max_fails=1), and the request goes to the other (proxy_next_upstream error,
        # nginx's default: only when nothing of the request reached the dead one)
        (conf_dir / "nginx.conf").write_text(f"""\
{"user root root;" if os.getuid() == 0 else ""}
daemon off;
worker_processes 1;
pid {conf_dir}/nginx.pid;
error_log {conf_dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format cluster '$msec $status "$upstream_addr" "$upstream_status" "$upstream_http_location" '
                       '$request_method $uri';
    access_log {conf_dir}/access.log cluster;
    client_body_temp_path {conf_dir}/body;
    proxy_temp_path {conf_dir}/proxy;
    upstream ferry {{
        server 127.0.0.1:{self.ports["A"]} max_fails=1 fail_timeout=10s;
        server 127.0.0.1:{self.ports["B"]} max_fails=1 fail_timeout=10s;
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{self.proxy_port};
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_connect_timeout 2s;
        proxy_next_upstream error timeout;
        proxy_send_timeout 120s;
        proxy_read_timeout 120s;
        add_header X-Cluster-Upstream $upstream_addr always;
        location / {{
            proxy_pass http://ferry;
        }}
    }}
}}
""")
        conf = str(conf_dir / "nginx.conf")
        test = subprocess.run(["nginx", "-t", "-q", "-c", conf, "-p", str(conf_dir)], capture_output=True,
                              text=True, timeout=WAIT)
        if test.returncode != 0:
            raise Failed(f"nginx -t: {test.stderr}")
        with (conf_dir / "stderr.log").open("ab") as log:
            self.procs["nginx"] = subprocess.Popen(["nginx", "-c", conf, "-p", str(conf_dir)], stdout=log,
                                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                if http("GET", self.url("nginx") + "/health/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise Failed(f"nginx did not answer within {WAIT}s:\n{tail(conf_dir / 'error.log')}")

    def access_log(self) -> list["Proxied"]:
        """nginx's lines, oldest first."""
        rows = []
        for line in (self.work / "nginx" / "access.log").read_text().splitlines():
            m = re.match(r'(\S+) (\d+) "([^"]*)" "([^"]*)" "([^"]*)" (\S+) (\S+)', line)
            if m:
                rows.append(Proxied(float(m.group(1)), int(m.group(2)), m.group(3),
                                    m.group(4).split(",")[-1].strip(), m.group(5), m.group(6), m.group(7)))
        return rows

    def stop_all(self) -> None:
        for name in ("nginx", "A", "B"):
            stop(self.procs.get(name), signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        self.garage.stop()

    def listing(self, who: str) -> list[dict]:
        """Every file ferry lists, following the Link header's next pages."""
        files, path = [], "/files?limit=1000"
        for _ in range(1000):
            status, headers, body = http("GET", self.url(who) + path)
            if status != 200:
                raise Failed(f"GET {path} on {who}: {status} {body[:300]!r}")
            files += json.loads(body)
            m = re.search(r"<([^>]+)>;\s*rel=\"next\"", headers.get("link", ""))
            if not m:
                return files
            path = m.group(1)
        raise Failed("the listing did not end")


# --- 1: every strategy ----------------------------------------------------------------------------------------


def upload(dep: Deployment, endpoint: bench.Endpoint, data: bytes, who: str = "nginx",
           name: str = "cluster.bin") -> tuple[int, dict, dict]:
    """One upload by `endpoint`'s strategy; returns the status, ferry's JSON (or the error) and the headers."""
    headers = {"Content-Type": bench.CONTENT_TYPES[endpoint.body]}
    if endpoint.body == "multipart":
        body = postdata.multipart_body(data, name)
    elif endpoint.body == "json":
        body = postdata.json_body(data, name)
    else:
        body = chunks(data)
    status, res_headers, answer = http("POST", dep.url(who) + endpoint.path, body, headers)
    try:
        doc = json.loads(answer)
    except ValueError:
        doc = {"raw": answer[:300].decode(errors="replace")}
    return status, doc, res_headers


def every_strategy(dep: Deployment, report: Report, uploads: list[bench.Endpoint],
                   downloads: list[bench.Endpoint], expected: dict[str, str]) -> None:
    stored = []  # (strategy, id, data, replica that stored it)
    for endpoint in uploads:
        buffered = not endpoint.streamed.startswith("yes") and endpoint.streamed != "spooled to disk"
        data = secrets.token_bytes(SMALL if buffered else LARGE)
        status, doc, headers = upload(dep, endpoint, data)
        replica = dep.replica_at(headers.get("x-cluster-upstream", ""))
        if report.check(status == 201 and doc.get("sha256") == sha(data) and doc.get("size") == len(data),
                        f"upload {endpoint.strategy} ({len(data)} bytes) through nginx, stored by {replica}: "
                        f"201 with the sha256 and size sent", f"{status} {doc}"):
            stored.append((endpoint.strategy, doc["id"], data, replica))
            expected[doc["id"]] = sha(data)

    for strategy, file_id, data, replica in stored:
        other = "B" if replica == "A" else "A"
        bad = []
        for d in downloads:
            status, _, body = http("GET", dep.url(other) + d.path.replace("{id}", file_id))
            if status != 200 or body != data:
                bad.append(f"{d.strategy}: {status}, {len(body)} bytes")
        report.check(not bad, f"the file {strategy} stored on {replica} downloads byte for byte from {other} by "
                              f"each of the {len(downloads)} download strategies", "; ".join(bad))

    large = next(((s, i, d) for s, i, d, _ in stored if len(d) == LARGE), None)
    if large is None:
        report.check(False, "a streamed upload to range over")
        return
    strategy, file_id, data = large
    for who in ("A", "B"):
        for d in downloads:
            url = dep.url(who) + d.path.replace("{id}", file_id)
            status, _, body = http("GET", url)
            bad = [] if status == 200 and body == data else [f"whole: {status}, {len(body)} bytes"]
            for spec in RANGES:
                status, headers, body = http("GET", url, headers={"Range": spec})
                want = byte_range(data, spec)
                if status != 206 or body != want:
                    bad.append(f"{spec}: {status}, {len(body)} bytes (want 206, {len(want)})")
            report.check(not bad, f"download {d.strategy} from {who}: the whole file and {len(RANGES)} ranges "
                                  f"(206, the right bytes)", "; ".join(bad))


# --- 2: load, and something killed during it ------------------------------------------------------------------


class Prober(threading.Thread):
    """One upload at a time through nginx, each timed: when uploads failed and resumed. A small buffered one
    (a single PUT on S3) times the failover finely; a large streamed one keeps a multipart upload in flight."""

    def __init__(self, dep: Deployment, endpoint: bench.Endpoint, data: bytes):
        super().__init__(daemon=True)
        self.dep, self.endpoint, self.data = dep, endpoint, data
        self.halt = threading.Event()
        self.rows: list[tuple[float, float, int, str]] = []  # start, end, status (0: no answer), id

    def run(self) -> None:
        while not self.halt.is_set():
            start = time.monotonic()
            try:
                status, doc, _ = upload(self.dep, self.endpoint, self.data, name="probe.bin")
                file_id = doc.get("id", "-") if status == 201 else "-"
            except OSError:
                status, file_id = 0, "-"
            self.rows.append((start, time.monotonic(), status, file_id))
            self.halt.wait(0.05)


class Load:
    """wrk uploading and wrk downloading through nginx for LOAD_SECONDS, and the probers beside them."""

    def __init__(self, dep: Deployment, name: str, upload_path: str, body_file: Path, download_path: str,
                 probes: list[Prober]):
        self.dep, self.name, self.probes = dep, name, probes
        self.records = {kind: dep.work / f"{name}-{kind}.txt" for kind in ("upload", "download")}
        self.procs = []
        runs = {"upload": (upload_path, "upload.lua", [str(body_file), "application/octet-stream"]),
                "download": (download_path, "download.lua", [])}
        for kind, (path, script, args) in runs.items():
            env = dict(os.environ, FERRY_KIT_SCRIPT=str(ROOT / "wrk" / script), FERRY_RECORD=str(self.records[kind]))
            with (dep.work / f"{name}-{kind}.wrk").open("wb") as out:
                self.procs.append(subprocess.Popen(
                    ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{LOAD_SECONDS}s", "--timeout", "30s",
                     "-s", str(HERE / "record.lua"), dep.url("nginx") + path, "--", *args],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env))
        self.started = time.monotonic()
        for probe in probes:
            probe.start()

    def finish(self) -> dict:
        try:
            for proc in self.procs:
                proc.wait(timeout=LOAD_SECONDS + WAIT)
        finally:
            for proc in self.procs:
                stop(proc)
            for probe in self.probes:
                probe.halt.set()
            for probe in self.probes:
                probe.join(timeout=WAIT)
        result = {}
        for kind, path in self.records.items():
            if not path.exists():
                raise Failed(f"wrk ({kind}) wrote no record:\n{tail(self.dep.work / f'{self.name}-{kind}.wrk')}")
            lines = path.read_text().splitlines()
            errors = [int(n) for n in lines[-1].split()[1:]]
            statuses: dict[int, int] = {}
            ids = []
            for line in lines[:-1]:
                status, file_id = line.split()
                statuses[int(status)] = statuses.get(int(status), 0) + 1
                if status == "201":
                    ids.append(file_id)
            result[kind] = {"statuses": statuses, "ids": ids, "socket_errors": sum(errors),
                            "ok": sum(n for s, n in statuses.items() if 200 <= s < 300)}
            result[kind]["failed"] = sum(statuses.values()) - result[kind]["ok"] + result[kind]["socket_errors"]
        return result


def describe(kind: str, r: dict) -> str:
    others = {s: n for s, n in r["statuses"].items() if not 200 <= s < 300}
    return (f"{kind}s: {r['ok']} 2xx, {sum(others.values())} other answers{f' {others}' if others else ''}, "
            f"{r['socket_errors']} socket errors")


def probe_summary(probe: Prober, killed_at: float) -> tuple[list, list, float | None]:
    """The prober's requests started after the kill: failures, successes, and seconds from the kill to the
    end of the first success started after it."""
    after = [row for row in probe.rows if row[0] >= killed_at]
    fails = [row for row in after if row[2] != 201]
    oks = [row for row in after if row[2] == 201]
    return fails, oks, (oks[0][1] - killed_at if oks else None)


def slow_upload(dep: Deployment, who: str, path: str, total: int, send: int) -> socket.socket:
    """Starts an upload of `total` bytes to `who` and sends only `send` of them; the socket stays open."""
    sock = socket.create_connection(("127.0.0.1", dep.ports[who]), timeout=WAIT)
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                  f"Content-Length: {total}\r\n\r\n").encode())
    block = secrets.token_bytes(1 << 20)
    for _ in range(send >> 20):
        sock.sendall(block)
    return sock


def wait_for(what: str, predicate, seconds: float = WAIT, step: float = 0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise Failed(f"{what}: not within {seconds}s")


# --- the run --------------------------------------------------------------------------------------------------


def run(ferry: str, garage_binary: str, work: Path, report: Report) -> None:
    spec = bench.load_spec(Path(ferry))
    endpoints = bench.endpoints_from_spec(spec)
    uploads = [e for e in endpoints if e.kind == "upload" and e.body != "tus"]
    downloads = [e for e in endpoints if e.kind == "download"]
    by_strategy = {e.strategy: e for e in uploads}
    dep = Deployment(ferry, garage_binary, work)
    expected: dict[str, str] = {}  # every id that got a 201 -> its sha256
    try:
        started = time.monotonic()
        dep.garage.start()
        report.note(f"garage: 3 nodes up in {time.monotonic() - started:.1f}s, S3 at {', '.join(dep.garage.endpoints)}")
        dep.start_ferry("A")
        dep.start_ferry("B")
        dep.start_nginx()
        report.note(f"ferry A → garage node 0, ferry B → garage node 1, nginx at {dep.url('nginx')}")
        s3 = dep.garage.client(2)

        # 1
        every_strategy(dep, report, uploads, downloads, expected)

        # the load's bodies and the file it downloads
        load_body = secrets.token_bytes(LOAD_BODY)
        body_file = work / "load.bin"
        body_file.write_bytes(load_body)
        probe_body = secrets.token_bytes(PROBE_BODY)
        large_body = secrets.token_bytes(LARGE_PROBE_BODY)
        stream = by_strategy["stream/async_read_and_async_write"]
        buffered = by_strategy["single"]
        streamed_form = by_strategy["single/stream"]
        # what each upload path carries during the load, to know a file by its path in nginx's log
        body_sha = {stream.path: sha(load_body), buffered.path: sha(probe_body), streamed_form.path: sha(large_body)}

        def probers() -> list[Prober]:
            return [Prober(dep, buffered, probe_body), Prober(dep, streamed_form, large_body)]
        status, doc, _ = upload(dep, stream, secrets.token_bytes(1 << 20))
        if status != 201:
            raise Failed(f"the download load's file: {status} {doc}")
        target = doc["id"]
        expected[target] = doc["sha256"]
        download_path = f"/files/download/stream/async_read/{target}"

        def record(result: dict, probes: list[Prober]) -> None:
            for file_id in result["upload"]["ids"]:
                expected[file_id] = sha(load_body)
            for probe in probes:
                for row in probe.rows:
                    if row[2] == 201:
                        expected[row[3]] = sha(probe.data)

        # 2a: a Garage node dies under load
        probes = probers()
        load = Load(dep, "garage-kill", stream.path, body_file, download_path, probes)
        time.sleep(KILL_AT)
        killed_at = time.monotonic()
        dep.garage.kill(2)
        result = load.finish()
        record(result, probes)
        summaries = [probe_summary(probe, killed_at) for probe in probes]
        fails = [row for f, _, _ in summaries for row in f]
        oks = [row for _, o, _ in summaries for row in o]
        report.note(f"Garage node 2 SIGKILLed {KILL_AT}s into {LOAD_SECONDS}s of load: "
                    f"{describe('upload', result['upload'])}; {describe('download', result['download'])}; "
                    f"probers after the kill: {len(oks)} 201s, {len(fails)} failures")
        report.check(result["upload"]["failed"] == 0 and result["download"]["failed"] == 0 and not fails,
                     "with Garage node 2 SIGKILLed under load, no upload or download through nginx failed "
                     "(both replicas' Garage nodes keep a write quorum of 2 of 3)")
        report.check(len(oks) > 0 and result["upload"]["ok"] > 0 and result["download"]["ok"] > 0,
                     "and uploads and downloads went on after the kill")
        started = time.monotonic()
        dep.garage.restart(2)
        report.note(f"Garage node 2 restarted; its peers saw it again after {time.monotonic() - started:.1f}s")
        status, body = s3.get(dep.garage.bucket, f"files/{result['upload']['ids'][-1]}") \
            if result["upload"]["ids"] else (0, b"")
        report.check(status == 200 and body == load_body,
                     "the restarted node serves a file uploaded while it was down")

        # 2b: replica A dies under load, with an upload to it cut half way
        markers_before = set(s3.keys(dep.garage.bucket, "uploads/"))
        cut = slow_upload(dep, "A", stream.path, 64 << 20, 24 << 20)
        try:
            markers = wait_for("the cut upload's multipart marker in the bucket",
                               lambda: set(s3.keys(dep.garage.bucket, "uploads/")) - markers_before)
        except Failed as err:
            report.check(False, "an upload in progress on A has its multipart marker in the bucket", str(err))
            markers = set()
        probes = probers()
        load = Load(dep, "replica-kill", stream.path, body_file, download_path, probes)
        time.sleep(KILL_AT)
        killed_at, killed_wall = time.monotonic(), time.time()
        stop(dep.procs["A"], signal.SIGKILL)
        result = load.finish()
        cut.close()
        record(result, probes)
        fails, oks, failover = probe_summary(probes[0], killed_at)
        large_fails, large_oks, _ = probe_summary(probes[1], killed_at)
        routed = [row for row in dep.access_log() if row.end >= killed_wall]
        retried = sum(1 for row in routed if "," in row.upstreams)
        report.note(f"ferry A SIGKILLed {KILL_AT}s into {LOAD_SECONDS}s of load: "
                    f"{describe('upload', result['upload'])}; {describe('download', result['download'])}; "
                    f"small prober after the kill: {len(oks)} 201s, {len(fails)} failures, first 201 "
                    f"{failover if failover is None else round(failover, 3)}s after the kill; large prober: "
                    f"{len(large_oks)} 201s, {len(large_fails)} failures; nginx passed {retried} requests on to B "
                    f"after A refused them")
        in_flight = 2 * WRK_CONNECTIONS + len(probes)
        failed = result["upload"]["failed"] + result["download"]["failed"] + len(fails) + len(large_fails)
        report.check(failed <= in_flight,
                     f"with ferry A SIGKILLed under load, only requests in flight on A failed: {failed} "
                     f"(at most one per client connection, {in_flight})")
        report.check(bool(oks) and all(row[0] < oks[0][0] for row in fails) and bool(large_oks),
                     "nginx failed over to B: the probers' uploads succeeded after the kill, and none of the small "
                     "one's failed once one had")
        report.check(bool(markers), f"the upload cut on A left its multipart upload behind ({len(markers)} marker)")

        started = time.monotonic()
        dep.start_ferry("A", "--s3-sweep-after", SWEEP_AFTER)
        cut_keys = {"files/" + m.removeprefix("uploads/") for m in markers}
        try:
            wait_for("the sweep", lambda: not (set(s3.keys(dep.garage.bucket, "uploads/")) & markers)
                     and not {key for key, _, _ in s3.multipart_uploads(dep.garage.bucket)} & cut_keys, step=0.5)
            report.check(bool(markers), f"A, restarted with --s3-sweep-after {SWEEP_AFTER}, swept the cut upload away "
                                        f"(marker and multipart upload gone {time.monotonic() - started:.1f}s after start)")
        except Failed as err:
            report.check(False, "A, restarted with a short --s3-sweep-after, swept the cut upload away",
                         f"{err}; markers left: {s3.keys(dep.garage.bucket, 'uploads/')}, multipart uploads left: "
                         f"{s3.multipart_uploads(dep.garage.bucket)}\n{tail(dep.log('A'))}")

        # after the run: what got a 201 is there, whole, and nothing else is. wrk's record has the 201s its
        # clients read; nginx's log has every 201 ferry sent (with its Location), also those that came after wrk's
        # time was up and it stopped reading, and every upload that got no 201 from ferry
        proxied = [row for row in dep.access_log() if row.method == "POST" and row.path in body_sha]
        read_by_clients = len(expected)
        sent_late = 0
        unanswered = 0
        for row in proxied:
            if row.ferry_status == "201" and row.location.startswith("/files/"):
                file_id = row.location.rsplit("/", 1)[1]
                if file_id not in expected:
                    sent_late += 1
                    expected[file_id] = body_sha[row.path]
            else:
                unanswered += 1
        listed = {f["id"]: f for f in dep.listing("B")}
        listed_a = {f["id"] for f in dep.listing("A")}
        missing = [i for i in expected if i not in listed]
        extra = [i for i in listed if i not in expected]
        report.check(not missing, f"every one of the {len(expected)} uploads ferry answered 201 is listed",
                     f"missing: {missing[:5]}")
        # an upload ferry published but never answered (A killed between the two, or the client gone first)
        # is a file no client heard of: there can be no more of them than uploads nginx saw go unanswered,
        # and each must be whole
        unheard = [i for i in extra if listed[i]["sha256"] in body_sha.values()]
        report.check(len(extra) == len(unheard) and len(unheard) <= unanswered,
                     f"the listing holds exactly the files ferry answered 201: {len(listed)} listed = "
                     f"{read_by_clients} 201s the clients read + {sent_late} sent after wrk stopped reading + "
                     f"{len(unheard)} published but never answered (of {unanswered} uploads nginx saw go "
                     f"unanswered)", f"not uploaded by this run: {[listed[i] for i in extra if i not in unheard][:3]}")
        report.check(listed_a == set(listed), "both replicas list the same files")
        # multipart uploads no marker names (begun by the store but never known to ferry: ferry's sweep cannot
        # see them; an S3 lifecycle rule, AbortIncompleteMultipartUpload, is what removes them)
        stray = [(key, begun, key.removeprefix("files/") in listed) for key, _, begun in
                 s3.multipart_uploads(dep.garage.bucket)]
        if stray:
            report.note(f"multipart uploads in progress that no marker names (key, begun, its file listed): {stray}")
        for i in unheard:
            expected[i] = listed[i]["sha256"]

        def whole(item: tuple[int, str]) -> str | None:
            n, file_id = item
            who = "AB"[n % 2]
            status, _, body = http("GET", f"{dep.url(who)}/files/download/stream/async_read/{file_id}")
            return None if status == 200 and sha(body) == expected[file_id] else f"{file_id} on {who}: {status}"

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            broken = [r for r in pool.map(whole, enumerate(expected)) if r]
        report.check(not broken, f"all {len(expected)} download whole (sha256 as uploaded), half from each replica",
                     "; ".join(broken[:5]))

        # the bucket: a row and a content object per listed file, and nothing else but leftovers: the content of
        # an upload cut after its content was stored and before its row was written (A killed in between, or
        # the client gone). It never got a 201 and is never listed; ferry leaves it to the operator, whom fsck
        # tells. Each must be an upload of this run, whole, and there can be no more of them than uploads nginx
        # saw go unanswered and that did not become files.
        contents = {k.removeprefix("files/") for k in s3.keys(dep.garage.bucket, "files/")}
        rows = s3.keys(dep.garage.bucket, "index/")
        others = [k for k in s3.keys(dep.garage.bucket) if not k.startswith(("files/", "index/"))]
        leftovers = sorted(contents - set(listed))
        foreign = [i for i in leftovers if sha(s3.get(dep.garage.bucket, f"files/{i}")[1]) not in body_sha.values()]
        report.check(set(listed) <= contents and len(rows) == len(listed) and not others and not foreign
                     and len(leftovers) <= unanswered - len(unheard),
                     f"the bucket holds a row and a content object for each of the {len(listed)} files, and nothing "
                     f"else but {len(leftovers)} leftovers: whole uploads of this run cut before their row was "
                     f"written (of {unanswered - len(unheard)} uploads nginx saw go unanswered that are no file)",
                     f"{len(rows)} rows, content missing for {sorted(set(listed) - contents)[:5]}, other keys "
                     f"{others[:5]}, leftovers not uploaded by this run {foreign[:5]}")
        if leftovers:
            report.note(f"leftovers (content without a row, not swept): {', '.join(leftovers)}")

        # ferry fsck on the bucket: no damage in the files, every leftover named; then it names damage planted
        # beside them (a row without its content, a content object without its row), removed again after
        (work / "data-fsck").mkdir()

        def fsck() -> tuple[int, str]:
            # a data directory of its own: the replicas' are theirs (ferry locks them); on S3 it holds nothing
            out = subprocess.run([dep.ferry, "fsck", "--data-dir", str(work / "data-fsck"), *dep.s3_args(0)],
                                 capture_output=True, text=True, timeout=10 * WAIT, env=dep.env())
            return out.returncode, out.stdout + out.stderr

        code, out = fsck()
        named = set(re.findall(r"^leftover files/(\S+):", out, re.M))
        report.check(code == 0 and f"checked {len(listed)} files" in out and f"{len(listed)} ok, 0 damaged" in out
                     and named == set(leftovers),
                     f"ferry fsck on the bucket finds the {len(listed)} files sound (exit {code}) and names the "
                     f"{len(leftovers)} leftovers", out[-800:])
        lonely_content, lonely_row = str(uuid.uuid4()), str(uuid.uuid4())
        row_key = "index/" + bytes(~b & 0xFF for b in uuid.UUID(lonely_row).bytes).hex()
        some_row = s3.get(dep.garage.bucket, rows[0])[1]
        planted = [f"files/{lonely_content}", row_key]
        s3.put(dep.garage.bucket, planted[0], secrets.token_bytes(1000))
        s3.put(dep.garage.bucket, planted[1], json.dumps(dict(json.loads(some_row), id=lonely_row)).encode())
        code, out = fsck()
        report.check(code == 1 and re.search(rf"^damaged {lonely_row}:", out, re.M)
                     and re.search(rf"^leftover files/{lonely_content}:", out, re.M),
                     f"ferry fsck calls a row without its content damage (exit {code}) and names a content object "
                     f"without its row as a leftover", out[-800:])
        for key in planted:
            s3.delete(dep.garage.bucket, key)

        # 3: a delete on A, seen on B: B has served the file by every strategy just before (its row, and
        # the cached strategy's bytes, in its caches), then polls every strategy until all answer 404
        data = secrets.token_bytes(PROBE_BODY)
        status, doc, _ = upload(dep, buffered, data, who="A", name="deleted.bin")
        if status != 201:
            raise Failed(f"the file to delete: {status} {doc}")
        urls = [f"{dep.url('B')}{d.path.replace('{id}', doc['id'])}" for d in downloads]
        before = [http("GET", url)[:3:2] for url in urls]
        status_del = http("DELETE", f"{dep.url('A')}/files/{doc['id']}")[0]
        deleted = time.monotonic()
        polls = []  # (seconds after the delete when the request started, status, strategy)
        while time.monotonic() < deleted + DELETE_BOUND + 1.0:
            for d, url in zip(downloads, urls):
                start = time.monotonic()
                status = http("GET", url)[0]
                polls.append((start - deleted, status, d.strategy))
            time.sleep(0.01)
        served = [t for t, status, _ in polls if status != 404]
        seen = (f"the last download that served it started {max(served):.3f}s after the delete" if served
                else "at once")
        late = [(round(t, 3), status, d) for t, status, d in polls if t >= DELETE_BOUND and status != 404]
        report.check(all(st == 200 and body == data for st, body in before) and status_del == 204 and not late,
                     f"deleted on A, the file answers 404 on B by every download strategy ({seen}; none started "
                     f"{DELETE_BOUND:g}s or more after the delete served it, of {len(polls)} in {DELETE_BOUND + 1:g}s)",
                     f"before {[st for st, _ in before]}, delete {status_del}, after the bound: {late[:5]}")
    finally:
        dep.stop_all()


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"cluster: {tool} is not installed")
    # timeout(1) sends SIGTERM: leave through the finally blocks, which stop everything by pid
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = Report()
    work = Path(tempfile.mkdtemp(prefix="ferry-cluster-"))
    try:
        run(sys.argv[1], sys.argv[2], work, report)
    except Exception as err:  # noqa: BLE001  whatever stopped the run is one failure, reported, and cleaned up
        detail = str(err) if isinstance(err, Failed) else traceback.format_exc()
        report.check(False, "the run went to its end", detail)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"cluster: {report.passed} passed, {report.failed} failed", flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
