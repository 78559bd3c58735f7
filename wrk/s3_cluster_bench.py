#!/usr/bin/env python3
"""What a second replica buys: ferry on Garage behind nginx, one replica against two, under wrk.

    python3 wrk/s3_cluster_bench.py                               # 1-node Garage, 3 rounds, 10 s per wrk run
    python3 wrk/s3_cluster_bench.py --nodes 3 --repeat 5 --duration 5 --size 1MiB

The deployment is tests/cluster/run.py's, all on loopback: a Garage (tests/cluster/garage.py; --nodes 1 or 3),
ferry replicas with --storage s3 on it, and Debian's nginx in front (run as this user, its own prefix and pid file,
a free port; round robin over the replicas, request bodies streamed, keepalive to the upstreams). Three ways of
running ferry, each behind the same nginx configuration:

- `1 replica, --workers 1`: the baseline;
- `1 replica, --workers 2`: one process using both cores, the fair comparison on a 2-core machine;
- `2 replicas, --workers 1 each`: what a second replica buys.

In every round each of the three is started fresh (its own --s3-prefix, so every round starts from an empty
listing), and measured with wrk through nginx: uploads on a streaming strategy (a raw body), then downloads of
one stored file on a streaming download strategy; the rounds interleave the three so that they see the same
machine weather. Tables give medians (min–max) and each way's ratio to the baseline, with the machine, the load
average at start and end, and the command.

Every wait is bounded; Garage, nginx and every ferry are stopped by pid, also on failure or SIGTERM.
"""

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
import bench  # noqa: E402  wrk, ports, process figures, the machine
from garage import Garage, stop  # noqa: E402
from s3_bench import DEFAULT_GARAGE, running_garage  # noqa: E402

UPLOAD = "/files/upload/stream/async_read_and_async_write"
DOWNLOAD = "/files/download/stream/async_read/{id}"
WAIT = 60
WAYS = [  # name, replicas, workers each
    ("1 replica, --workers 1", 1, 1),
    ("1 replica, --workers 2", 1, 2),
    ("2 replicas, --workers 1 each", 2, 1),
]


def nginx_conf(root: Path, port: int, upstreams: list[int], workers: int) -> Path:
    """tests/cluster/run.py's proxy, without its access log and failover settings."""
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstreams)
    conf = root / "nginx.conf"
    conf.write_text(f"""\
{"user root root;" if os.getuid() == 0 else ""}
daemon off;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    upstream ferry {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 1000000;
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        location / {{
            proxy_pass http://ferry;
        }}
    }}
}}
""")
    return conf


class Deployment:
    """REPLICAS ferries (WORKERS each) on one --s3-prefix of the Garage, behind nginx; stopped on exit."""

    def __init__(self, args, garage: Garage, work: Path, replicas: int, workers: int, prefix: str):
        self.args, self.garage, self.work = args, garage, work
        self.replicas, self.workers, self.prefix = replicas, workers, prefix
        self.ferries: list[subprocess.Popen] = []
        self.nginx: subprocess.Popen | None = None
        self.port = bench.free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def start(self) -> None:
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.garage.access_key,
                   AWS_SECRET_ACCESS_KEY=self.garage.secret_key, RUST_LOG="warn")
        ports = []
        for i in range(self.replicas):
            port = bench.free_port()
            data = self.work / f"data-{i}"
            data.mkdir()
            log = (self.work / f"ferry-{i}.log").open("ab")
            proc = subprocess.Popen(
                [str(self.args.bin), "--addr", f"127.0.0.1:{port}", "--workers", str(self.workers),
                 "--data-dir", str(data), "--fsync", "false", "--storage", "s3",
                 "--s3-endpoint", self.garage.endpoints[i % len(self.garage.endpoints)],
                 "--s3-bucket", self.garage.bucket, "--s3-region", self.garage.region, "--s3-prefix", self.prefix],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            self.ferries.append(proc)
            ports.append(port)
            bench.wait_http(f"http://127.0.0.1:{port}/health/ready", proc, WAIT)
        nginx_dir = self.work / "nginx"
        nginx_dir.mkdir()
        conf = nginx_conf(nginx_dir, self.port, ports, self.args.nginx_workers)
        with (nginx_dir / "stderr.log").open("ab") as log:
            self.nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(nginx_dir)], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        bench.wait_http(self.base + "/health/ready", self.nginx, WAIT)

    def __exit__(self, *exc) -> None:
        stop(self.nginx, signal.SIGQUIT)
        for proc in self.ferries:
            stop(proc, signal.SIGINT)

    def ferry_pids(self) -> list[int]:
        return [p.pid for p in self.ferries]

    def upload(self, body: bytes) -> str:
        req = urllib.request.Request(f"{self.base}{UPLOAD}?filename=fixture.bin", data=body, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=WAIT) as res:
            return json.load(res)["id"]


def cpu_seconds(pids: list[int]) -> float:
    return bench.proc_stats(pids)[1]


def one_round(args, garage: Garage, work: Path, body_path: Path, way: tuple, rnd: int) -> dict:
    name, replicas, workers = way
    prefix = f"clusterbench-{time.strftime('%H%M%S')}-{replicas}x{workers}-{rnd}"
    with tempfile.TemporaryDirectory(prefix="deploy-", dir=work) as tmp, \
            Deployment(args, garage, Path(tmp), replicas, workers, prefix) as d:
        result = {"way": name, "round": rnd}
        for kind in ("upload", "download"):
            if kind == "upload":
                url, script, script_args = d.base + UPLOAD, "upload.lua", [str(body_path), "application/octet-stream"]
            else:
                url = d.base + DOWNLOAD.format(id=d.upload(body_path.read_bytes()))
                script, script_args = "download.lua", []
            pids = d.ferry_pids() + garage_pids(garage)
            before = [cpu_seconds([p]) for p in pids]
            wrk = bench.run_wrk(args, url, script, script_args)
            after = [cpu_seconds([p]) for p in pids]
            ferry_cpu = sum(after[i] - before[i] for i in range(len(d.ferries)))
            garage_cpu = sum(after[i] - before[i] for i in range(len(d.ferries), len(pids)))
            result[kind] = {"rps": wrk["rps"], "p99_ms": wrk["p99_ms"], "errors": wrk["errors"],
                            "ferry_cpu_s": round(ferry_cpu, 2), "garage_cpu_s": round(garage_cpu, 2)}
            bench.progress(f"    {kind}: {wrk['rps']:,.0f} req/s, p99 {wrk['p99_ms']:.0f} ms, "
                           f"ferry CPU {ferry_cpu:.1f} s, Garage CPU {garage_cpu:.1f} s"
                           + (f", {wrk['errors']} errors" if wrk["errors"] else ""))
        return result


def garage_pids(garage: Garage) -> list[int]:
    return [n.proc.pid for n in garage.nodes if n.proc is not None]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def table(rounds: list[dict], args) -> str:
    def med(values):
        return statistics.median(values)

    lines = ["| ferry behind nginx | uploads req/s | ÷ baseline | p99 | downloads req/s | ÷ baseline | p99 "
             "| CPU s per wrk run: ferry / Garage (up, down) | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = {k: {r["round"]: r[k]["rps"] for r in rounds if r["way"] == WAYS[0][0]} for k in ("upload", "download")}
    for name, _, _ in WAYS:
        mine = [r for r in rounds if r["way"] == name]
        if not mine:
            continue
        cells = []
        for kind in ("upload", "download"):
            rps = [r[kind]["rps"] for r in mine]
            ratios = [r[kind]["rps"] / base[kind][r["round"]] for r in mine if base[kind].get(r["round"])]
            ratio = med(rps) / med(base[kind].values()) if base[kind] else 0
            spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
            cells += [f"{med(rps):,.0f} ({min(rps):,.0f}–{max(rps):,.0f})", f"{ratio:.2f}×{spread}",
                      f"{med(r[kind]['p99_ms'] for r in mine):.0f} ms"]
        cpu = " ; ".join(f"{med(r[k]['ferry_cpu_s'] for r in mine):.1f} / {med(r[k]['garage_cpu_s'] for r in mine):.1f}"
                         for k in ("upload", "download"))
        errors = sum(r[k]["errors"] for r in mine for k in ("upload", "download"))
        lines.append(f"| {name} | {' | '.join(cells)} | {cpu} | {errors} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "ferry", help="the ferry binary")
    p.add_argument("--garage", type=Path, default=DEFAULT_GARAGE, help=f"the garage binary (default {DEFAULT_GARAGE})")
    p.add_argument("--nodes", type=int, default=1, choices=(1, 3), help="Garage nodes (default 1); with 3, "
                   "replica i talks to node i")
    p.add_argument("--work-root", type=Path, default=Path("/dev/shm"),
                   help="where Garage, nginx and the replicas keep their files (default /dev/shm)")
    p.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--duration", "-d", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument("--connections", "-c", type=int, default=100)
    p.add_argument("--threads", "-t", type=int, default=2)
    p.add_argument("--size", type=bench.parse_size, default=256 << 10, help="body size (default 256KiB)")
    p.add_argument("--timeout", type=int, default=10, metavar="SECONDS",
                   help="wrk counts an answer slower than this as an error (default 10)")
    p.add_argument("--nginx-workers", type=int, default=1,
                   help="nginx worker_processes (default 1, as tests/cluster/run.py's proxy)")
    args = p.parse_args()
    args.bin = args.bin.resolve()
    for need, what in ((args.bin, "ferry (cargo build --release)"), (args.garage, "garage")):
        if not need.is_file():
            p.error(f"no {what} at {need}")
    for tool in ("wrk", "nginx"):
        if not subprocess.run(["which", tool], capture_output=True).returncode == 0:
            p.error(f"needs {tool} (apt-get install {tool})")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = shlex.join(["python3", "wrk/s3_cluster_bench.py", *sys.argv[1:]])
    start_load = load_average()
    bench.progress(f"load average at start: {start_load} on {os.cpu_count()} cores")
    rounds = []
    args.work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ferry-clusterbench-", dir=args.work_root) as work, \
            running_garage(args.garage, args.nodes, Path(work)) as garage:
        body = Path(work) / "body.bin"
        body.write_bytes(os.urandom(args.size))
        for rnd in range(1, args.repeat + 1):
            for way in WAYS:
                bench.progress(f"round {rnd}/{args.repeat}: {way[0]}")
                rounds.append(one_round(args, garage, Path(work), body, way, rnd))
    end_load = load_average()
    print(f"\n- command: `{command}`")
    print(f"- machine: {bench.machine()}; `nproc` {os.cpu_count()}; load average at start {start_load}, "
          f"at end {end_load}")
    print(f"- Garage: {args.nodes} node(s), replication_factor {args.nodes}, SQLite metadata, on "
          f"{bench.disk_kind(args.work_root)}; nginx {args.nginx_workers} worker(s), round robin, keepalive "
          "to the replicas")
    print(f"- wrk -t{args.threads} -c{args.connections} -d{args.duration}s --timeout {args.timeout}s through nginx: "
          f"`POST {UPLOAD}` ({bench.human(args.size)} raw body), `GET {DOWNLOAD}` (one stored "
          f"{bench.human(args.size)} file); medians of {args.repeat} rounds (min–max), the three ways "
          "interleaved in each; ÷ baseline is over `1 replica, --workers 1` (the spread: per-round ratios)\n")
    print(table(rounds, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
