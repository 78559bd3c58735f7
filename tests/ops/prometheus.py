#!/usr/bin/env python3
"""Prometheus scrapes a running ferry: Debian's prometheus, on a free loopback port with a config and data
directory of its own, scrapes the debug ferry's --metrics-addr every second. After a known sequence of uploads
(three strategies, one refused with 413) and downloads, the counters asked through Prometheus's HTTP API
(/api/v1/query) must have the expected values, and `promtool check metrics` must pass on ferry's exposition.
Prometheus asks for OpenMetrics and gets it; promtool reads the classic text format, which ferry sends to
scrapers that do not ask for OpenMetrics.

    python3 tests/ops/prometheus.py [path/to/ferry]     # needs prometheus (apt), which ships promtool

Every wait is bounded (WAIT seconds), and so is the whole run (DEADLINE). Both servers are stopped by pid.
.ci/run runs it.
"""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30
DEADLINE = 120
BOUNDARY = "promtest0123"
MULTIPART_LIMIT = 1 << 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def multipart(data: bytes) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def head_only(base: str, path: str, length: int) -> bytes:
    """Sends only the head of a multipart upload of `length` bytes and returns the first answer: a 413 comes
    before the body, and sending the body would race the server closing the connection."""
    host, port = urllib.parse.urlparse(base).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n"
                      f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n").encode())
        return sock.recv(4096)


def start_ferry(binary: str, data: str, log: Path) -> tuple[subprocess.Popen, str, str]:
    out = log.open("w")
    proc = subprocess.Popen([binary, "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--workers", "1",
                             "--data-dir", data, "--max-buffered-bytes", str(MULTIPART_LIMIT), "--fsync", "false"],
                            stderr=out, env=dict(os.environ, RUST_LOG="info", FERRY_MIN_FREE_BYTES="0"))
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        text = log.read_text()
        base = re.search(r"listening on (http://[0-9.:]+)", text)
        metrics = re.search(r"metrics at (http://[0-9.:]+/metrics)", text)
        if base and metrics:
            return proc, base.group(1), metrics.group(1)
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"FAILED: ferry did not start:\n{log.read_text()}")


def start_prometheus(tmp: Path, target: str) -> tuple[subprocess.Popen, str]:
    config = tmp / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: ferry
    static_configs:
      - targets: ["{target}"]
""")
    port = free_port()
    log = (tmp / "prometheus.log").open("w")
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    return proc, f"http://127.0.0.1:{port}"


def query(prometheus: str, promql: str) -> float | None:
    """The single value of an instant query, or None while it has none."""
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        status, body = request("GET", url)
    except OSError:
        return None
    if status != 200:
        return None
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if len(result) == 1 else None


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def traffic(base: str) -> dict[str, float]:
    """The known sequence; returns the PromQL expressions and the values they must reach."""
    raw = "/files/upload/stream/async_read_and_memory_write"
    ids = []
    for size in (1000, 2000, 3000):
        status, body = request("POST", f"{base}{raw}?filename=r.bin", bytes(size),
                               {"Content-Type": "application/octet-stream"})
        assert status == 201, (status, body)
        ids.append(json.loads(body)["id"])
    forms = [multipart(b"m" * 4096), multipart(b"n" * 5000)]
    for form in forms:
        status, body = request("POST", f"{base}/files/upload/single", form,
                               {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        assert status == 201, (status, body)
    document = json.dumps({"filename": "j.txt", "data": base64.b64encode(b"json" * 100).decode()}).encode()
    status, body = request("POST", f"{base}/files/upload/raw/json/base64decode", document,
                           {"Content-Type": "application/json"})
    assert status == 201, (status, body)
    assert head_only(base, "/files/upload/single", MULTIPART_LIMIT + 70_000).startswith(b"HTTP/1.1 413"), "no 413"
    for _ in range(4):
        status, body = request("GET", f"{base}/files/download/cached/{ids[0]}")
        assert (status, len(body)) == (200, 1000), status
    for _ in range(2):
        status, body = request("GET", f"{base}/files/download/stream/sync_read/{ids[2]}")
        assert (status, len(body)) == (200, 3000), status
    status, _ = request("GET", f"{base}/files/0190")
    assert status == 404, status

    requests = 'ferry_http_requests_total{{route="{}",method="{}",status="{}"}}'
    received = 'ferry_received_bytes_total{{strategy="{}"}}'
    return {
        requests.format(raw, "POST", 201): 3,
        requests.format("/files/upload/single", "POST", 201): 2,
        requests.format("/files/upload/single", "POST", 413): 1,
        requests.format("/files/upload/raw/json/base64decode", "POST", 201): 1,
        requests.format("/files/download/cached/{id}", "GET", 200): 4,
        requests.format("/files/download/stream/sync_read/{id}", "GET", 200): 2,
        requests.format("/files/{id}", "GET", 404): 1,
        received.format("stream/async_read_and_memory_write"): 6000,
        received.format("single"): sum(len(form) for form in forms),
        received.format("raw/json/base64decode"): len(document),
        'ferry_sent_bytes_total{strategy="cached"}': 4000,
        'ferry_sent_bytes_total{strategy="stream/sync_read"}': 6000,
        'ferry_uploads_failed_total{code="payload_too_large"}': 1,
        'ferry_cache_hits_total': 3,
        'ferry_stored_files': 6,
        'up{job="ferry"}': 1,
    }


def main() -> None:
    signal.signal(signal.SIGALRM, lambda *_: sys.exit(f"FAILED: the Prometheus test did not finish in {DEADLINE} s"))
    signal.alarm(DEADLINE)
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "ferry")
    passed, failed = 0, 0
    with tempfile.TemporaryDirectory(prefix="ferry-prometheus-") as tmp:
        tmp = Path(tmp)
        ferry, base, metrics = start_ferry(binary, str(tmp / "data"), tmp / "ferry.log")
        target = urllib.parse.urlparse(metrics).netloc
        prometheus, api = start_prometheus(tmp, target)
        try:
            expected = traffic(base)
            deadline = time.monotonic() + WAIT
            got: dict[str, float | None] = {}
            while time.monotonic() < deadline:
                got = {promql: query(api, promql) for promql in expected}
                if got == expected:
                    break
                time.sleep(0.5)
            for promql, value in expected.items():
                if got.get(promql) == value:
                    passed += 1
                    print(f"ok: {promql} = {value:g}")
                else:
                    failed += 1
                    print(f"FAILED: {promql} is {got.get(promql)}, expected {value:g}")
            status, exposition = request("GET", metrics)
            check = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True,
                                   timeout=WAIT)
            if status == 200 and check.returncode == 0:
                passed += 1
                print("ok: promtool check metrics")
            else:
                failed += 1
                print(f"FAILED: promtool check metrics ({status}, exit {check.returncode}):\n"
                      f"{check.stdout.decode()}{check.stderr.decode()}")
        finally:
            stop(prometheus)
            stop(ferry)
        if failed:
            print((tmp / "prometheus.log").read_text()[-3000:])
    print(f"prometheus: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
