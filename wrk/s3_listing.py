#!/usr/bin/env python3
"""The listing on S3 at 0, 1k and 100k files: first page, a page deep in the listing, cold and warm; startup and
RSS of a replica on the bucket.

    python3 wrk/s3_listing.py                                     # 1-node Garage, counts 0,1000,100000, 5 rounds
    python3 wrk/s3_listing.py --counts 0,1000 --repeat 3 --nodes 3

On S3 ferry keeps no index of its own: a row is an object `<prefix>/index/<id with every bit inverted, in hex>`,
so the bucket's ascending key order is newest first, and a page is one ListObjectsV2 (`start-after` the cursor's
row key) plus one GET per row not in memory (16 at once). A row read is trusted for 1 s (ROW_TTL).

For each count, its own --s3-prefix of one Garage is filled through ferry: 16-byte raw uploads on 32 keep-alive
connections (--populate-connections) until the count is stored, which the rows in the bucket then confirm.
The cursor for the deep page is the id of the file at the middle of the listing. Then --repeat rounds, the
counts taking turns; in each, a fresh ferry (--workers 2) on the prefix:

- **startup**: spawn to the first 200 from `/health/ready` (polled every 5 ms); **RSS** at that moment;
- **cold**: the first `GET /files?limit=100`, then the first `GET /files?limit=100&after=<cursor>`: no row of
  either page is in the replica's memory (the bucket's connection is, from the readiness probe);
- **warm**: the median of the next 20 of each, one after the other (rows read less than 1 s before come from
  memory);
- **req/s**: wrk on the first page (-t1 -c4, --duration), where rows are read again once a second.

Medians over the rounds, with min–max. Every wait is bounded; Garage and every ferry are stopped by pid, also on
failure or SIGTERM; the Garage directory is removed.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
import bench  # noqa: E402
from garage import Garage  # noqa: E402
from s3_bench import DEFAULT_GARAGE, running_garage  # noqa: E402

UPLOAD = "/files/upload/stream/async_read_and_memory_write"
PAGE = 100
WARM = 20
WAIT = 120


class Ferry(bench.Server):
    """ferry on the Garage prefix, as the kit runs every server (its own session, stopped by pid, its directory
    wiped on exit); its time to readiness and its RSS then are measured."""

    stop_signal = signal.SIGINT
    health = "/health/ready"  # 503 until the bucket took a write
    ready_within, ask_every = WAIT, 0.005

    def __init__(self, args, garage: Garage, prefix: str, work: Path):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=garage.access_key, AWS_SECRET_ACCESS_KEY=garage.secret_key,
                   RUST_LOG="warn")
        data = Path(tempfile.mkdtemp(prefix="data-", dir=work))
        self.started = time.perf_counter()
        self.start([str(args.bin), "--addr", "127.0.0.1:{port}", "--workers", str(args.workers), "--data-dir",
                    str(data), "--fsync", "false", "--storage", "s3", "--s3-endpoint", garage.endpoints[0],
                    "--s3-bucket", garage.bucket, "--s3-region", garage.region, "--s3-prefix", prefix], data, env=env)

    def __enter__(self):
        super().__enter__()
        self.startup_s = time.perf_counter() - self.started
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        self.rss_mib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024
        return self


def get_ms(url: str, want: int) -> float:
    """One GET's latency; checks the page holds WANT files."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=WAIT) as res:
        page = json.load(res)
    took = (time.perf_counter() - started) * 1000
    if len(page) != want:
        raise RuntimeError(f"{url} listed {len(page)} files, not {want}")
    return took


def row_ids(garage: Garage, prefix: str) -> list[str]:
    """The ids of the files under PREFIX, newest first (the bucket's order of their row keys)."""
    keys = garage.client().keys(garage.bucket, f"{prefix}/index/")
    ids = []
    for key in keys:
        raw = bytes(b ^ 0xFF for b in bytes.fromhex(key.rsplit("/", 1)[1]))
        h = raw.hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def populate(args, garage: Garage, prefix: str, count: int, work: Path, body: Path) -> list[str]:
    """Stores COUNT small files under PREFIX through ferry (--populate-connections keep-alive connections, each
    uploading until the count is reached); returns their ids, newest first."""
    if count:
        started = time.perf_counter()
        data = body.read_bytes()
        left = iter(range(count))
        lock = threading.Lock()

        def uploader(port: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
            done = 0
            try:
                while True:
                    with lock:
                        if next(left, None) is None:
                            return done
                    conn.request("POST", UPLOAD + "?filename=f.bin", body=data,
                                 headers={"Content-Type": "application/octet-stream"})
                    res = conn.getresponse()
                    res.read()
                    if res.status != 201:
                        raise RuntimeError(f"an upload was answered {res.status}")
                    done += 1
            finally:
                conn.close()

        with Ferry(args, garage, prefix, work) as ferry, \
                concurrent.futures.ThreadPoolExecutor(args.populate_connections) as pool:
            stored = sum(pool.map(uploader, [ferry.port] * args.populate_connections))
        took = time.perf_counter() - started
        bench.progress(f"stored {stored:,} files under {prefix} in {took:.0f} s ({stored / took:,.0f} files/s)")
    ids = row_ids(garage, prefix)
    if len(ids) != count:
        raise RuntimeError(f"{prefix} holds {len(ids)} rows, not {count}")
    return ids


def one_round(args, garage: Garage, prefix: str, ids: list[str], work: Path) -> dict:
    cursor = ids[len(ids) // 2] if len(ids) > 2 * PAGE else None
    first_url = f"/files?limit={PAGE}"
    deep_url = f"/files?limit={PAGE}&after={cursor}" if cursor else None
    want = min(PAGE, len(ids))
    with Ferry(args, garage, prefix, work) as ferry:
        out = {"startup_ms": ferry.startup_s * 1000, "rss_mib": ferry.rss_mib}
        out["first_cold_ms"] = get_ms(ferry.base + first_url, want)
        if deep_url:
            out["deep_cold_ms"] = get_ms(ferry.base + deep_url, PAGE)
        out["first_warm_ms"] = statistics.median(get_ms(ferry.base + first_url, want) for _ in range(WARM))
        if deep_url:
            out["deep_warm_ms"] = statistics.median(get_ms(ferry.base + deep_url, PAGE) for _ in range(WARM))
        wrk_args = argparse.Namespace(threads=1, connections=4, duration=args.duration)
        result = bench.run_wrk(wrk_args, ferry.base + first_url, "download.lua", [])
        out["first_rps"] = result["rps"]
        out["errors"] = result["errors"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "ferry", help="the ferry binary")
    p.add_argument("--garage", type=Path, default=DEFAULT_GARAGE, help=f"the garage binary (default {DEFAULT_GARAGE})")
    p.add_argument("--nodes", type=int, default=1, choices=(1, 3), help="Garage nodes (default 1)")
    p.add_argument("--work-root", type=Path, default=Path("/dev/shm"),
                   help="where Garage and the replicas keep their files (default /dev/shm)")
    p.add_argument("--counts", default="0,1000,100000", help="comma-separated numbers of files (default 0,1000,100000)")
    p.add_argument("--repeat", type=int, default=5, help="rounds, the counts taking turns (default 5)")
    p.add_argument("--workers", type=int, default=2, help="ferry --workers (default 2)")
    p.add_argument("--duration", "-d", type=int, default=5, help="seconds of wrk on the first page (default 5)")
    p.add_argument("--populate-connections", type=int, default=32,
                   help="connections storing the files (default 32)")
    args = p.parse_args()
    args.bin = args.bin.resolve()
    for need, what in ((args.bin, "ferry (cargo build --release)"), (args.garage, "garage")):
        if not need.is_file():
            p.error(f"no {what} at {need}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = shlex.join(["python3", "wrk/s3_listing.py", *sys.argv[1:]])
    counts = [int(n) for n in args.counts.split(",")]
    start_load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    bench.progress(f"load average at start: {start_load} on {os.cpu_count()} cores")
    args.work_root.mkdir(parents=True, exist_ok=True)
    rounds: dict[int, list[dict]] = {n: [] for n in counts}
    stored: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="ferry-s3listing-", dir=args.work_root) as work, \
            running_garage(args.garage, args.nodes, Path(work)) as garage:
        body = Path(work) / "body.bin"
        body.write_bytes(os.urandom(16))
        ids = {n: populate(args, garage, f"listing-{n}", n, Path(work), body) for n in counts}
        stored = {n: len(v) for n, v in ids.items()}
        for rnd in range(1, args.repeat + 1):
            for n in counts:
                bench.progress(f"round {rnd}/{args.repeat}: {stored[n]:,} files")
                rounds[n].append(one_round(args, garage, f"listing-{n}", ids[n], Path(work)))
                print("   ", {k: round(v, 1) for k, v in rounds[n][-1].items()}, flush=True)
    end_load = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    def cell(rs: list[dict], key: str, fmt) -> str:
        values = [r[key] for r in rs if key in r]
        if not values:
            return "–"
        return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"

    def ms(v: float) -> str:
        return f"{v:.0f}" if v >= 10 else f"{v:.1f}"

    print(f"\n- command: `{command}`")
    print(f"- machine: {bench.machine()}; `nproc` {os.cpu_count()}; load average at start {start_load}, "
          f"at end {end_load}")
    print(f"- Garage: {args.nodes} node(s), SQLite metadata, on {bench.disk_kind(args.work_root)}; ferry "
          f"--storage s3 --workers {args.workers}; pages of {PAGE}; the deep page starts after the middle file; "
          f"medians of {args.repeat} fresh replicas (min–max); warm: median of {WARM} requests in a row; req/s: "
          f"wrk -t1 -c4 -d{args.duration}s on the first page\n")
    print("| files | startup to ready, ms | RSS at ready, MiB | first page, cold, ms | first page, warm, ms "
          "| deep page, cold, ms | deep page, warm, ms | first page req/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in counts:
        rs = rounds[n]
        print(f"| {stored[n]:,} | {cell(rs, 'startup_ms', ms)} | {cell(rs, 'rss_mib', lambda v: f'{v:.1f}')} "
              f"| {cell(rs, 'first_cold_ms', ms)} | {cell(rs, 'first_warm_ms', ms)} | {cell(rs, 'deep_cold_ms', ms)} "
              f"| {cell(rs, 'deep_warm_ms', ms)} | {cell(rs, 'first_rps', lambda v: f'{v:,.0f}')} |")
    errors = sum(r["errors"] for rs in rounds.values() for r in rs)
    if errors:
        print(f"\n{errors} wrk errors (non-2xx or socket errors) on the first page")
    return 0


if __name__ == "__main__":
    sys.exit(main())
