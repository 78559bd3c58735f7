#!/usr/bin/env python3
"""ferry with many files stored: startup time, memory, listing and upload rate at N = 0, 100k, 1M files.

    python3 wrk/scale.py                                      # build, then N = 0,100000,1000000, 3 rounds
    python3 wrk/scale.py --counts 0,10000 --repeat 1 --duration 3 --no-build

For each N, `examples/populate.rs` stores N files (16 bytes each) in a data directory through ferry's own storage
code, committing 10,000 rows a transaction: minutes for a million, where a million HTTP uploads would take hours.
The directory is kept under --data-root (default target/scale/, on disk: a million files on tmpfs would hold
gigabytes of memory) and reused by later runs with the same N. Then, --repeat times, the counts taking turns:

- ferry is started and `/health/ready` polled every 5 ms: **startup** is the time from spawn to its first 200;
- **RSS at ready** is the server's VmRSS then;
- **first page** is `GET /files?limit=100`: the first request's latency, and the median of 20 more;
- **uploads** is wrk on `upload/stream/async_read_and_memory_write` with a 256 KiB body (-t2 -c100), after which
  the files it stored are deleted again through the API, so every round sees N files.

Only loopback is used; every server is stopped (SIGINT, then SIGKILL after 15 s) even when a run fails.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
UPLOAD = "/files/upload/stream/async_read_and_memory_write"


def populate(populate_bin: Path, root: Path, count: int) -> Path:
    data = root / f"files-{count}"
    done = data / ".populated"
    if done.exists():
        return data
    if data.exists():
        subprocess.run(["rm", "-rf", str(data)], check=True)
    bench.progress(f"storing {count} files in {data}")
    subprocess.run([str(populate_bin), str(data), str(count)], check=True)
    done.write_text(str(count))
    return data


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def get_ms(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as res:
        res.read()
    return (time.perf_counter() - started) * 1000


def uploaded_since(base: str) -> list[str]:
    """Ids of the files not made by populate (the wrk run's), newest first."""
    ids, after = [], ""
    while True:
        with urllib.request.urlopen(f"{base}/files?limit=1000{after}", timeout=30) as res:
            page = json.load(res)
        fresh = [f["id"] for f in page if f["strategy"] != "populate"]
        ids.extend(fresh)
        if len(fresh) < len(page) or not page:
            return ids
        after = f"&after={page[-1]['id']}"


def delete_all(base: str, ids: list[str]) -> None:
    for file_id in ids:
        req = urllib.request.Request(f"{base}/files/{file_id}", method="DELETE")
        with urllib.request.urlopen(req, timeout=30):
            pass


def one_round(args, binary: Path, data: Path, body: Path) -> dict:
    port = bench.free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [str(binary), "--addr", f"127.0.0.1:{port}", "--workers", str(args.workers), "--data-dir", str(data),
           "--fsync", "false", "--min-free-bytes", "0"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=dict(os.environ, RUST_LOG="warn"), start_new_session=True,
                            stdout=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ferry exited with {proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(f"{base}/health/ready", timeout=1) as res:
                    if res.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - started > 120:
                raise RuntimeError("ferry was not ready within 120 s")
            time.sleep(0.005)
        startup_s = time.perf_counter() - started
        rss = rss_mib(proc.pid)
        first = get_ms(f"{base}/files?limit=100")
        pages = [get_ms(f"{base}/files?limit=100") for _ in range(20)]
        result = bench.run_wrk(args, base + UPLOAD, "upload.lua", [str(body), "application/octet-stream"])
        load = float(Path("/proc/loadavg").read_text().split()[0])
        delete_all(base, uploaded_since(base))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {"startup_s": round(startup_s, 3), "rss_mib": round(rss, 1), "first_page_ms": round(first, 2),
            "page_median_ms": round(statistics.median(pages), 2), "upload_rps": result["rps"],
            "upload_errors": result["errors"], "load": load}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", type=Path, help="the ferry binary (default target/release/ferry)")
    p.add_argument("--populate", type=Path, help="the populate example (default target/release/examples/populate)")
    p.add_argument("--no-build", action="store_true", help="do not run `cargo build --release` first")
    p.add_argument("--counts", default="0,100000,1000000", help="comma-separated numbers of stored files")
    p.add_argument("--repeat", type=int, default=3, help="rounds; the counts take turns in each")
    p.add_argument("--duration", "-d", type=int, default=5, help="seconds of wrk per round (default 5)")
    p.add_argument("--connections", "-c", type=int, default=100)
    p.add_argument("--threads", "-t", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--size", type=bench.parse_size, default=256 << 10, help="upload body (default 256KiB)")
    p.add_argument("--data-root", type=Path, default=ROOT / "target" / "scale")
    p.add_argument("--out", type=Path, help="write every round as JSON here")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    binary = (args.bin or ROOT / "target" / "release" / "ferry").resolve()
    populate_bin = (args.populate or ROOT / "target" / "release" / "examples" / "populate").resolve()
    if not args.no_build and not args.bin:
        bench.progress("building release ferry and the populate example")
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "ferry", "--example", "populate"],
                       cwd=ROOT, check=True)
    counts = [int(n) for n in args.counts.split(",")]
    args.data_root.mkdir(parents=True, exist_ok=True)
    dirs = {n: populate(populate_bin, args.data_root, n) for n in counts}
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.bin"
        body.write_bytes(os.urandom(args.size))
        rounds = {n: [] for n in counts}
        for r in range(args.repeat):
            for n in counts:
                bench.progress(f"round {r + 1}/{args.repeat}: {n} files")
                rounds[n].append(one_round(args, binary, dirs[n], body))
                print("   ", rounds[n][-1], flush=True)
    print(f"\n{bench.machine()}; data on {bench.disk_kind(args.data_root)}; "
          f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {bench.human(args.size)} raw uploads, "
          f"--workers {args.workers} --fsync false; medians of {args.repeat} (min-max)\n")
    print("| files stored | startup to ready | RSS at ready | first page (first / median) | uploads req/s | load |")
    print("|---:|---:|---:|---:|---:|---:|")

    def cell(values, fmt):
        return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"

    for n in counts:
        rs = rounds[n]
        print(f"| {n:,} | {cell([x['startup_s'] for x in rs], lambda v: f'{v * 1000:.0f} ms')} "
              f"| {cell([x['rss_mib'] for x in rs], lambda v: f'{v:.1f} MiB')} "
              f"| {statistics.median(x['first_page_ms'] for x in rs):.1f} ms / "
              f"{statistics.median(x['page_median_ms'] for x in rs):.1f} ms "
              f"| {cell([x['upload_rps'] for x in rs], lambda v: f'{v:,.0f}')} "
              f"| {statistics.median(x['load'] for x in rs):.1f} |")
    if args.out:
        args.out.write_text(json.dumps({"machine": bench.machine(), "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
