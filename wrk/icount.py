#!/usr/bin/env python3
"""Instructions ferry executes per request, counted by valgrind (cachegrind, no cache simulation): a figure that,
unlike req/s, does not move with the machine's load, so small request-path costs (metrics, access lines) can be
told apart on a shared machine. It counts user-space instructions only: the kernel's share (a log line's
write(2), the socket copies) is not in it.

    python3 wrk/icount.py --bin target/release/ferry --variant metrics='--metrics-addr auto' --variant logs='RUST_LOG=info'

For each binary and variant, ferry runs under valgrind with one worker, takes N1 and then N2 sequential
keep-alive requests in two separate runs (a 256 KiB cached download, or a raw upload of the same size), and
the difference of the two runs' totals divided by N2 - N1 is the cost of one request, startup excluded.
"""

import argparse
import http.client
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import free_port, variant_parts  # noqa: E402

SIZE = 256 << 10
RAW = "/files/upload/stream/async_read_and_memory_write"


def run(binary: str, words: list[str], kind: str, n: int, tmp: Path) -> int:
    env, extra = variant_parts(words)
    if "--metrics-addr" in extra and extra[extra.index("--metrics-addr") + 1] == "auto":
        extra[extra.index("--metrics-addr") + 1] = f"127.0.0.1:{free_port()}"
    port = free_port()
    data = Path(tempfile.mkdtemp(dir=tmp))
    out = tmp / f"cachegrind-{port}.log"
    proc = subprocess.Popen(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                             f"--log-file={out}", binary, "--addr", f"127.0.0.1:{port}", "--workers", "1",
                             "--data-dir", str(data), "--fsync", "false", *extra],
                            env={**os.environ, "RUST_LOG": "warn", **env}, stderr=(tmp / f"ferry-{port}.log").open("w"))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("GET", "/health/live")
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        body = os.urandom(SIZE)
        conn.request("POST", f"{RAW}?filename=f.bin", body, {"Content-Type": "application/octet-stream"})
        res = conn.getresponse()
        file_id = re.search(rb'"id":"([^"]+)"', res.read()).group(1).decode()
        for _ in range(n):
            if kind == "cached":
                conn.request("GET", f"/files/download/cached/{file_id}")
            else:
                conn.request("POST", f"{RAW}?filename=f.bin", body, {"Content-Type": "application/octet-stream"})
            res = conn.getresponse()
            res.read()
            assert res.status in (200, 201), res.status
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    return int(re.search(r"I\s+refs:\s+([\d,]+)", out.read_text()).group(1).replace(",", ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", action="append", required=True, help="ferry binaries to compare (repeatable)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME='ARGS'", help="as bench.py's")
    p.add_argument("--kind", action="append", choices=["cached", "upload"], help="default: both")
    p.add_argument("--n", default="200,1000", help="the two request counts (default 200,1000)")
    args = p.parse_args()
    n1, n2 = map(int, args.n.split(","))
    variants = {"plain": []} | {v.partition("=")[0]: shlex.split(v.partition("=")[2]) for v in args.variant}
    with tempfile.TemporaryDirectory(prefix="ferry-icount-") as tmp:
        for kind in args.kind or ["cached", "upload"]:
            for binary in args.bin:
                for name, words in variants.items():
                    low, high = run(binary, words, kind, n1, Path(tmp)), run(binary, words, kind, n2, Path(tmp))
                    per = (high - low) / (n2 - n1)
                    print(f"{kind:7} {binary:40} {name:10} {per:12,.0f} instructions per request", flush=True)


if __name__ == "__main__":
    main()
