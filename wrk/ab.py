#!/usr/bin/env python3
"""Measures what one server setting costs: two ferry servers, A and B, differing only in the flags given, loaded
by wrk in interleaved rounds (A, B, A, B, ...) so that the machine's drift hits both alike. Prints each round and
the medians of requests/sec, and B's median as a ratio of A's.

    python3 wrk/ab.py --bin target/release/ferry --b-setup token --rounds 5 cached upload

`--b-setup token` gives B a tokens file (access control on) and sends its token on every request: the cost of
access control. `--a-flags`/`--b-flags` add ferry flags to either side (e.g. `--b-flags "--metrics-addr
127.0.0.1:0"`). The targets are `cached`, `sync_read` (256 KiB downloads) and `upload` (256 KiB raw buffered
uploads, `/files/upload/stream/async_read_and_memory_write`).
"""

import argparse
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 256 * 1024


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, binary, flags, data, token_setup, started):
        self.data, self.headers = data, {}
        os.makedirs(data, exist_ok=True)
        if token_setup:
            out = subprocess.run([binary, "token", "create", "--data-dir", data, "--name", "bench",
                                  "--scopes", "upload,read,delete"], check=True, capture_output=True, text=True)
            token = re.search(r"[A-Za-z0-9_\-]{32,}", out.stdout).group(0)
            self.headers["Authorization"] = f"Bearer {token}"
        self.base = f"http://127.0.0.1:{free_port()}"
        env = dict(os.environ, RUST_LOG="warn", FERRY_MIN_FREE_BYTES="0")
        self.proc = subprocess.Popen([binary, "--addr", self.base[7:], "--data-dir", data, "--fsync", "false",
                                      *flags], env=env, stderr=subprocess.DEVNULL)
        started.append(self)
        for _ in range(100):
            try:
                urllib.request.urlopen(self.base + "/health/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"ferry did not start at {self.base}")
        body = os.urandom(SIZE)
        request = urllib.request.Request(self.base + "/files/upload/stream/async_read_and_memory_write", data=body, method="POST",
                                         headers={**self.headers, "Content-Type": "application/octet-stream"})
        self.file_id = json.load(urllib.request.urlopen(request))["id"]

    def url(self, target):
        return {
            "cached": f"{self.base}/files/download/cached/{self.file_id}",
            "sync_read": f"{self.base}/files/download/stream/sync_read/{self.file_id}",
            "upload": f"{self.base}/files/upload/stream/async_read_and_memory_write",
        }[target]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def wrk(server, target, args, body):
    headers = [f"-H{name}: {value}" for name, value in server.headers.items()]
    script = ["-s", os.path.join(HERE, "upload.lua"), server.url(target), "--", body] if target == "upload" \
        else [server.url(target)]
    out = subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", *headers,
                          *script], check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors on {target}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", choices=["cached", "sync_read", "upload"])
    parser.add_argument("--bin", default="target/release/ferry")
    parser.add_argument("--a-flags", default="")
    parser.add_argument("--b-flags", default="")
    parser.add_argument("--b-setup", choices=["token"], help="token: B has access control on, wrk sends a token")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ferry-ab-") as work:
        body = os.path.join(work, "body")
        with open(body, "wb") as out:
            out.write(os.urandom(SIZE))
        servers = []
        try:
            a = Server(args.bin, shlex.split(args.a_flags), os.path.join(work, "a"), None, servers)
            b = Server(args.bin, shlex.split(args.b_flags), os.path.join(work, "b"), args.b_setup == "token", servers)
            print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
            for target in args.targets:
                results = {"A": [], "B": []}
                for round_ in range(args.rounds):
                    for name, server in (("A", a), ("B", b)) if round_ % 2 == 0 else (("B", b), ("A", a)):
                        results[name].append(wrk(server, target, args, body))
                    print(f"{target} round {round_ + 1}: A {results['A'][-1]:.0f}  B {results['B'][-1]:.0f} req/s",
                          flush=True)
                ma, mb = statistics.median(results["A"]), statistics.median(results["B"])
                print(f"{target}: median A {ma:.0f}, B {mb:.0f} req/s; B/A = {mb / ma:.3f}", flush=True)
            print(f"load average at end: {os.getloadavg()[0]:.2f}")
        finally:
            for server in servers:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
