#!/usr/bin/env python3
"""The deployment tests/cluster/run.py checks, and the load it puts on it: three Garage nodes (garage.py), two
ferry replicas on S3 (A on node 0, B on node 1), Debian's nginx in front of them, wrk and two Python probers
uploading and downloading through nginx. Every process is started and stopped by pid; every wait is bounded.
"""

import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "wrk"))
import bench  # noqa: E402  the kit's reading of the spec: every strategy's path and body kind
import postdata  # noqa: E402  the kit's multipart and JSON bodies
from garage import Garage, free_port, stop, stop_together  # noqa: E402

WAIT = 60  # any single wait
LOAD_SECONDS = 8  # each wrk run
WRK_CONNECTIONS = 4  # per wrk (one uploads, one downloads)


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


def chunks(data: bytes, size: int = 1 << 20):
    """A body urllib sends chunked: nothing tells nginx or ferry its length up front."""
    for i in range(0, len(data), size):
        yield data[i:i + size]


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


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
        self.loads: list[subprocess.Popen] = []  # every wrk started
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
        """Everything this run started, by pid: wrk, nginx, the replicas, then the Garage nodes."""
        stop_together([(p, signal.SIGTERM) for p in self.loads]
                      + [(self.procs.get(n), signal.SIGQUIT if n == "nginx" else signal.SIGTERM)
                         for n in ("nginx", "A", "B")])
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


# --- load ----------------------------------------------------------------------------------------------------


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
        dep.loads += self.procs
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
