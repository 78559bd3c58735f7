"""Tests of the wrk kit that need no server: reading the spec, the summary, the reports, compose_bench.sh's reading.

    python3 -m unittest wrk/test_kit.py
"""

import copy
import json
import os
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402
import report  # noqa: E402


def op(**x):
    return {"operationId": "x", "responses": {}, **({"x-ferry": x} if x else {})}


# A hand-made document in the shape ferry's carries: x-ferry on uploads, downloads and their HEADs; other
# operations without it; listed out of order.
SAMPLE = {
    "openapi": "3.1.0",
    "paths": {
        "/files": {"get": op()},
        "/files/{id}": {"get": op(), "delete": op()},
        "/health": {"get": op()},
        "/files/download/cached/{id}": {
            "get": op(kind="download", strategy="cached", streamed="no (whole file from memory)", order=4),
            "head": op(kind="download", strategy="cached", streamed="no (whole file from memory)", order=4),
        },
        "/files/download/stream/sync_read/{id}": {
            "get": op(kind="download", strategy="stream/sync_read", streamed="yes", order=0),
            "head": op(kind="download", strategy="stream/sync_read", streamed="yes", order=0),
        },
        "/files/upload/single/stream": {
            "post": op(kind="upload", strategy="single/stream", body="multipart", streamed="yes", order=5)},
        "/files/upload/raw/json/base64decode": {
            "post": op(kind="upload", strategy="raw/json/base64decode", body="json",
                       streamed="no (JSON + decoded in memory)", order=8)},
        "/files/upload/stream/async_read_and_memory_write": {
            "post": op(kind="upload", strategy="stream/async_read_and_memory_write", body="raw", streamed="yes",
                       order=0)},
        "/files/upload/single": {
            "post": op(kind="upload", strategy="single", body="multipart", streamed="no (whole part in memory)",
                       order=3)},
    },
}


class SpecReading(unittest.TestCase):
    def test_uploads_then_downloads_in_order(self):
        found = bench.endpoints_from_spec(SAMPLE)
        self.assertEqual([e.name for e in found], [
            "upload/stream/async_read_and_memory_write", "upload/single", "upload/single/stream",
            "upload/raw/json/base64decode", "download/stream/sync_read", "download/cached"])
        single = found[1]
        self.assertEqual((single.path, single.body, single.streamed), (
            "/files/upload/single", "multipart", "no (whole part in memory)"))
        self.assertEqual(found[-1].body, "-")

    def test_tus_creation_is_measured_as_the_last_upload_when_the_spec_has_it(self):
        spec = json.loads(json.dumps(SAMPLE))
        spec["paths"]["/files/tus/"] = {"post": {"operationId": "tus_create"}, "options": {}}
        found = bench.endpoints_from_spec(spec)
        uploads = [e for e in found if e.kind == "upload"]
        self.assertEqual((uploads[-1].name, uploads[-1].body, uploads[-1].path), ("upload/tus", "tus", "/files/tus/"))
        self.assertGreater(uploads[-1].order, max(e.order for e in uploads[:-1]))
        self.assertNotIn("upload/tus", [e.name for e in bench.endpoints_from_spec(SAMPLE)])

    def test_head_operations_are_ignored(self):
        names = [e.name for e in bench.endpoints_from_spec(SAMPLE)]
        self.assertEqual(len(names), len(set(names)))

    def test_bad_extensions_are_errors(self):
        cases = [
            ("/files/upload/single", "post", {"body": "xml"}),
            ("/files/upload/single", "post", {"strategy": "single/sync"}),
            ("/files/upload/single", "post", {"order": "3"}),
            ("/files/upload/single", "post", {"kind": "sideways"}),
            ("/files/download/cached/{id}", "get", {"kind": "upload", "body": "raw"}),
        ]
        for path, method, change in cases:
            spec = copy.deepcopy(SAMPLE)
            spec["paths"][path][method]["x-ferry"].update(change)
            with self.subTest(change=change), self.assertRaises(bench.SpecError):
                bench.endpoints_from_spec(spec)

    def test_a_spec_without_extensions_is_an_error(self):
        with self.assertRaises(bench.SpecError):
            bench.endpoints_from_spec({"paths": {"/health": {"get": op()}}})

    def test_route_keys_ignore_parameter_names(self):
        self.assertEqual(bench.route_key("GET", "/files/download/file/{id}"),
                         bench.route_key("get", "/files/download/file/{file_id}"))

    def test_fastapi_twins_of_every_ferry_strategy_but_cached(self):
        try:
            twins = bench.fastapi_routes(sys.executable)
        except SystemExit:
            self.skipTest("FastAPI is not installed")
        spec = copy.deepcopy(SAMPLE)
        for strategy in ("stream/async_read", "file", "file/sync"):
            spec["paths"][f"/files/download/{strategy}/{{id}}"] = {
                "get": op(kind="download", strategy=strategy, streamed="yes", order=9)}
        missing = [e.name for e in bench.endpoints_from_spec(spec)
                   if bench.route_key(bench.PATHS[e.kind][0], e.path) not in twins]
        self.assertEqual(missing, ["download/cached"])

    def test_list_with_a_spec_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(SAMPLE, f)
            f.flush()
            out = subprocess.run([sys.executable, str(HERE / "bench.py"), "--spec", f.name, "--bin", "/nonexistent",
                                  "--list", "--only", "upload/single"], capture_output=True, text=True, check=True)
        self.assertEqual([line.split()[0] for line in out.stdout.splitlines()],
                         ["upload/single", "upload/single/stream"])


class ComposeReading(unittest.TestCase):
    def test_compose_bench_lists_what_bench_py_lists(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "api-docs").mkdir()
            (Path(tmp) / "api-docs" / "openapi.json").write_text(json.dumps(SAMPLE))
            out = subprocess.run(["sh", str(HERE / "compose_bench.sh")], capture_output=True, text=True, check=True,
                                 env=dict(os.environ, FERRY_URL=f"file://{tmp}", BENCH_LIST="1"))
        want = [f"{e.kind} {e.strategy} {e.body} {e.path}" for e in bench.endpoints_from_spec(SAMPLE)]
        self.assertEqual(out.stdout.splitlines(), want)


def fake_runs(repeat=3):
    endpoints = bench.endpoints_from_spec(SAMPLE)
    runs = []
    for e in endpoints:
        for rnd in range(1, repeat + 1):
            for server, base in (("ferry", 3000), ("fastapi", 1000), ("nginx", 3500)):
                if server == "fastapi" and e.strategy == "cached":
                    continue
                rps = base * (10 if e.kind == "download" else 1) * (1 + 0.1 * rnd)
                runs.append(bench.Run(e.kind, e.strategy, server, 2, 256 << 10, rnd, e.body, e.streamed,
                                      e.path if server != "nginx" else "nginx thing", requests=int(rps * 5),
                                      rps=rps, avg_latency_ms=10, p99_ms=20 * rnd, peak_rss_mib=30 + rnd,
                                      cpu_s=4))
    return endpoints, runs


class Reports(unittest.TestCase):
    meta = {"date": "d", "command": "python3 wrk/bench.py", "machine": "m", "versions": {"ferry": "ferry 0"},
            "wrk": "-t2 -c100 -d5s --latency", "data_dir": "/dev/shm (tmpfs)", "prewarm": "5 GiB", "fsync": False,
            "repeat": 3, "references": ["fastapi", "nginx"]}

    def test_medians_spreads_and_ratios(self):
        endpoints, runs = fake_runs()
        summary = {(s["kind"], s["strategy"]): s for s in report.summarize(runs, endpoints)}
        single = summary[("upload", "single")]
        self.assertEqual(single["servers"]["ferry"]["rps"], 3600)
        self.assertEqual((single["servers"]["ferry"]["rps_min"], single["servers"]["ferry"]["rps_max"]), (3300, 3900))
        self.assertEqual(single["vs"]["fastapi"], {"ratio": 3.0, "min": 3.0, "max": 3.0})
        self.assertEqual(single["vs"]["nginx"]["ratio"], round(3000 / 3500, 2))
        self.assertNotIn("fastapi", summary[("download", "cached")]["vs"])

    def test_markdown_says_dash_for_a_missing_twin(self):
        endpoints, runs = fake_runs()
        md = report.markdown(self.meta, report.summarize(runs, endpoints), runs)
        cached = next(line for line in md.splitlines() if line.startswith("| `download/cached`"))
        self.assertEqual(cached.split(" | ")[4:6], ["–", "–"])
        self.assertIn("3,600 (3,300–3,900)", md)

    def test_svg_is_well_formed_with_axes_and_legend(self):
        endpoints, runs = fake_runs()
        runs += [bench.Run(r.kind, r.strategy, r.server, r.workers, 4096, r.round, r.body, r.streamed, r.target,
                           rps=r.rps * 5) for r in runs]
        text = report.svg(report.summarize(runs, endpoints), self.meta)
        root = ET.fromstring(text)
        texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
        self.assertIn("uploads: requests per second", texts)
        self.assertIn("downloads: requests per second", texts)
        self.assertEqual(sum(1 for t in texts if t.endswith("per server")), 2)  # one section per size
        self.assertIn("FastAPI", texts)
        self.assertIn("no FastAPI twin", texts)


EXPOSITION = """# HELP ferry_http_requests Requests answered, by route template, method and status
# TYPE ferry_http_requests counter
ferry_http_requests_total{route="/files/download/cached/{id}",method="GET",status="200"} %d
ferry_http_requests_total{route="/files/download/cached/{id}",method="HEAD",status="200"} 2
ferry_http_requests_total{route="/files/upload/single",method="POST",status="201"} 7
ferry_http_requests_total{route="/files/upload/single",method="POST",status="413"} %d
# TYPE ferry_received_bytes counter
ferry_received_bytes_total{strategy="single"} %d
ferry_received_bytes_total{strategy="single/stream"} 999
# TYPE ferry_sent_bytes counter
ferry_sent_bytes_total{strategy="cached"} %d
# EOF
"""


class ServerView(unittest.TestCase):
    def test_requests_on_the_route_and_bytes_of_the_strategy_between_two_scrapes(self):
        endpoints = {e.name: e for e in bench.endpoints_from_spec(SAMPLE)}
        before, after = EXPOSITION % (10, 1, 100, 4000), EXPOSITION % (35, 3, 1300, 29000)
        self.assertEqual(bench.server_view(before, after, endpoints["download/cached"]), (25, 25000))
        self.assertEqual(bench.server_view(before, after, endpoints["upload/single"]), (2, 1200))
        self.assertEqual(bench.server_view(before, after, endpoints["upload/single/stream"]), (0, 0))

    def test_a_variant_is_environment_and_options(self):
        env, args = bench.variant_parts(["RUST_LOG=info,ferry::access=off", "--metrics-addr", "auto",
                                         "--log-format=json"])
        self.assertEqual(env, {"RUST_LOG": "info,ferry::access=off"})
        self.assertEqual(args, ["--metrics-addr", "auto", "--log-format=json"])

    def test_run_in_a_variant_is_the_servers_own_name(self):
        words = ["FERRY_S3_PREFIX=a-{run}", "--s3-prefix", "bench-{run}"]
        self.assertEqual(bench.variant_parts(words, run="ferry-bench-x1"),
                         ({"FERRY_S3_PREFIX": "a-ferry-bench-x1"}, ["--s3-prefix", "bench-ferry-bench-x1"]))
        self.assertNotEqual(bench.variant_parts(words, run="one"), bench.variant_parts(words, run="two"))

    def test_variants_are_reported_over_plain_ferry_round_by_round(self):
        endpoints, runs = fake_runs()
        runs += [bench.Run(r.kind, r.strategy, "ferry:metrics", r.workers, r.size, r.round, r.body, r.streamed,
                           r.target, requests=r.requests, rps=r.rps * (0.95 if r.round == 1 else 0.99),
                           server_requests=r.requests + 1, server_bytes=123) for r in runs if r.server == "ferry"]
        summary = {(s["kind"], s["strategy"]): s for s in report.summarize(runs, endpoints)}
        self.assertEqual(summary[("upload", "single")]["variants"]["ferry:metrics"],
                         {"ratio": round(0.99 * 3600 / 3600, 3), "min": 0.95, "max": 0.99})
        meta = dict(Reports.meta, variants={"metrics": "--metrics-addr auto"})
        md = report.markdown(meta, report.summarize(runs, endpoints), runs)
        self.assertIn("- `ferry:metrics`: `--metrics-addr auto`", md)
        self.assertIn("0.990 (0.950–0.990)", md)
        self.assertIn(f"| {runs[-1].requests:,} / {runs[-1].requests + 1:,} | 123 |", md)


class Options(unittest.TestCase):
    def test_prewarm_scales_with_the_run(self):
        class Args:
            data_dir = Path("/dev/shm")
            duration = 2
        if bench.disk_kind(Args.data_dir) != "tmpfs":
            self.skipTest("/dev/shm is not a tmpfs here")
        endpoints = bench.endpoints_from_spec(SAMPLE)
        short = bench.prewarm_bytes(Args, endpoints, [256 << 10])
        Args.duration = 600
        long = bench.prewarm_bytes(Args, endpoints, [256 << 10])
        self.assertLess(short, long)
        self.assertLessEqual(long, bench.PREWARM_CAP)
        self.assertLessEqual(bench.prewarm_bytes(Args, [e for e in endpoints if e.kind == "download"], [256 << 10]),
                             1 << 30)


if __name__ == "__main__":
    unittest.main()
