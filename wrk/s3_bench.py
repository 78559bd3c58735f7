#!/usr/bin/env python3
r"""What the object store costs: the wrk kit's rows with ferry on local disk and on Garage side by side, one command.

    python3 wrk/s3_bench.py                                     # 1-node Garage; bench.py's defaults
    python3 wrk/s3_bench.py --nodes 3 -- --workers 2 --repeat 3 --duration 5 --no-build
    python3 wrk/s3_bench.py -- --sizes 16MiB --connections 16 --timeout 60 --workers 2 --repeat 3 --duration 5 \
        --only 'upload/stream/async_read_and_async_write$|download/stream/async_read$' --no-build

Brings up a Garage on loopback (tests/cluster/garage.py: 1 node measures the cost of the store's protocol, 3 nodes
with replication_factor 3 adds the replication), then runs wrk/bench.py with everything after `--` and one more
variant, `s3`: ferry with `--storage s3` on that Garage, a fresh `--s3-prefix` for every server started (bench.py's
`{run}`), the credentials in its environment. In every round each endpoint is measured on plain ferry (local disk,
bench.py's --data-dir) and then on ferry:s3, so each table row gives both and the ratio (s3 req/s over local).
bench.py's tables go to its results directory and are printed here, with the machine and the load average at
start and end.

Garage stores the same body once however often wrk sends it (its blocks are content-addressed), so on S3 the
bytes of a 256 KiB upload are hashed and referenced, not written again: the rows show the cost of the protocol and
of Garage's metadata, which is what differs from local disk here. Garage keeps its metadata in SQLite (as
garage.py configures it) and its data under --garage-root (default /dev/shm, like bench.py's data).

Everything is bounded: Garage's own waits (60 s each), bench.py's runs (its --duration each); Garage's nodes are
stopped by pid on exit, also on failure or SIGTERM.
"""

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
from garage import Garage  # noqa: E402

DEFAULT_GARAGE = Path("/var/cache/ferry-ci/garage/bin/garage")  # where .ci/run caches it


@contextlib.contextmanager
def running_garage(binary: Path, nodes: int, root: Path):
    """A Garage of NODES nodes in ROOT/garage, stopped by pid on exit."""
    with Garage(str(binary), nodes=nodes, root=str(root / "garage")) as garage:
        yield garage


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def shown(argv: list[str]) -> str:
    return shlex.join(["python3", "wrk/" + Path(argv[0]).name, *argv[1:]])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--garage", type=Path, default=DEFAULT_GARAGE, help=f"the garage binary (default {DEFAULT_GARAGE})")
    p.add_argument("--nodes", type=int, default=1, choices=(1, 3), help="Garage nodes (default 1)")
    p.add_argument("--garage-root", type=Path, default=Path("/dev/shm"),
                   help="where Garage keeps its data and metadata (default /dev/shm)")
    p.add_argument("bench", nargs=argparse.REMAINDER, help="-- then bench.py's options")
    args = p.parse_args()
    bench_args = args.bench[1:] if args.bench[:1] == ["--"] else args.bench
    if not args.garage.is_file():
        p.error(f"no garage binary at {args.garage} (cargo install garage --locked --version 2.5.0)")

    # SIGTERM leaves through the with-blocks below, so Garage and bench.py's servers are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    start_load = load_average()
    progress(f"load average at start: {start_load} on {os.cpu_count()} cores")
    args.garage_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ferry-s3bench-", dir=args.garage_root) as root, \
            running_garage(args.garage, args.nodes, Path(root)) as garage:
        progress(f"Garage {args.nodes} node(s) at {garage.endpoints[0]}, bucket {garage.bucket}")
        variant = (f"s3=--storage s3 --s3-endpoint {garage.endpoints[0]} --s3-bucket {garage.bucket} "
                   f"--s3-region {garage.region} --s3-prefix bench-{{run}}")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=garage.access_key, AWS_SECRET_ACCESS_KEY=garage.secret_key,
                   FERRY_BENCH_COMMAND=shown(sys.argv))
        out = next((bench_args[i + 1] for i, a in enumerate(bench_args[:-1]) if a == "--out"), None)
        if out is None:
            out = str(HERE / "results" / "runs" / f"s3-{time.strftime('%Y%m%d-%H%M%S')}")
            bench_args = [*bench_args, "--out", out]
        cmd = [sys.executable, str(HERE / "bench.py"), *bench_args, "--variant", variant]
        code = subprocess.run(cmd, env=env).returncode
    end_load = load_average()
    results = Path(out) / "results.md"
    if code == 0 and results.is_file():
        print()
        print(f"Garage: {args.nodes} node(s), replication_factor {args.nodes}, SQLite metadata, on "
              f"{args.garage_root}; `ferry:s3` is ferry with --storage s3 on it (a fresh --s3-prefix per server).")
        print(f"`nproc` {os.cpu_count()}; load average at start {start_load}, at end {end_load}.\n")
        print(results.read_text())
    else:
        progress(f"bench.py exited with {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
