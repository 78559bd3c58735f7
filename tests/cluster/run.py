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
   from the replica that did not store it, and from each replica, ranges included (206, the right bytes). The
   store verifies what ferry sends: a file stored in one PUT carries its sha256 as the object's checksum, and
   Garage refuses a PUT whose x-amz-checksum-sha256 does not match its body.
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

The deployment and the load are in tests/cluster/deploy.py, the Garage cluster in tests/cluster/garage.py.
Closes with `cluster: N passed, M failed`. Every wait is bounded; every process (three Garage nodes, two
ferries, nginx, wrk) is started and stopped by pid, also on failure or SIGTERM; the temporary directory is
removed.
"""

import base64
import concurrent.futures
import hashlib
import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy import (WAIT, LOAD_SECONDS, WRK_CONNECTIONS, Deployment, Failed, Load, Prober, bench, http,  # noqa: E402
                    sha, slow_upload, stop, tail, upload, wait_for)

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


def byte_range(data: bytes, spec: str) -> bytes:
    first, last = spec.removeprefix("bytes=").split("-")
    if not first:
        return data[-int(last):]
    return data[int(first):int(last) + 1]


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


# --- 1: every strategy ----------------------------------------------------------------------------------------

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

    store_verifies(dep, report, [(i, d) for _, i, d, _ in stored if len(d) == SMALL])

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

def store_verifies(dep: Deployment, report: Report, small: list[tuple[str, bytes]]) -> None:
    """ferry sends each PUT's SHA-256 as x-amz-checksum-sha256: Garage refuses a body that does not match it, and
    keeps it with the object (a file that fits one part: its sha256)."""
    s3, bucket = dep.garage.client(2), dep.garage.bucket
    if not small:
        report.check(False, "a file stored in one PUT, to read its checksum")
        return
    file_id, data = small[0]
    status, headers, _ = s3.request("HEAD", f"/{bucket}/files/{file_id}", headers={"x-amz-checksum-mode": "ENABLED"})
    kept = headers.get("x-amz-checksum-sha256")
    report.check(status == 200 and kept == base64.b64encode(hashlib.sha256(data).digest()).decode(),
                 "a file stored in one PUT carries its sha256 as the object's checksum in Garage", f"{status} {kept}")
    wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    status, _, body = s3.request("PUT", f"/{bucket}/checksum-probe", body=b"these bytes",
                                 headers={"x-amz-checksum-sha256": wrong})
    gone = s3.request("HEAD", f"/{bucket}/checksum-probe")[0]
    report.check(status == 400 and b"InvalidDigest" in body and gone == 404,
                 "Garage refuses a PUT whose x-amz-checksum-sha256 does not match its body, and keeps nothing",
                 f"{status} {body[:200]!r}; HEAD after: {gone}")


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
        # what the markers name: the multipart upload of each (read now: the marker goes with the sweep)
        cut_uploads = {m: json.loads(s3.get(dep.garage.bucket, m)[1]).get("multipart", "") for m in markers}
        report.check(bool(markers) and all(s3.parts(dep.garage.bucket, "files/" + m.removeprefix("uploads/"), u) == 200
                                           for m, u in cut_uploads.items()),
                     f"the upload cut on A left its multipart upload behind ({len(markers)} marker, naming an upload "
                     f"in progress)")

        started = time.monotonic()
        dep.start_ferry("A", "--s3-sweep-after", SWEEP_AFTER)
        try:
            wait_for("the sweep", lambda: all(
                s3.get(dep.garage.bucket, m)[0] == 404
                and s3.parts(dep.garage.bucket, "files/" + m.removeprefix("uploads/"), u) == 404
                for m, u in cut_uploads.items()), step=0.5)
            took = time.monotonic() - started
            report.check(bool(markers), f"A, restarted with --s3-sweep-after {SWEEP_AFTER}, swept the cut upload "
                                        f"away (marker and multipart upload gone {took:.1f}s after start)")
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
        # (Garage lists, for some seconds after a node comes back, uploads and keys removed while it was down:
        # what a listing shows is read back before it counts)
        stray = [(key, begun, key.removeprefix("files/") in listed) for key, upload_id, begun in
                 s3.multipart_uploads(dep.garage.bucket) if s3.parts(dep.garage.bucket, key, upload_id) == 200]
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
        def there(key: str) -> bool:
            return s3.get(dep.garage.bucket, key)[0] != 404

        contents = {k.removeprefix("files/") for k in s3.keys(dep.garage.bucket, "files/")}
        rows = s3.keys(dep.garage.bucket, "index/")
        others = [k for k in s3.keys(dep.garage.bucket) if not k.startswith(("files/", "index/")) and there(k)]
        leftovers = sorted(i for i in contents - set(listed) if there(f"files/{i}"))
        row_ids = {str(uuid.UUID(bytes=bytes(~b & 0xFF for b in bytes.fromhex(k.removeprefix("index/"))))): k
                   for k in rows}
        extra_rows = [k for i, k in row_ids.items() if i not in listed and there(k)]
        foreign = [i for i in leftovers if sha(s3.get(dep.garage.bucket, f"files/{i}")[1]) not in body_sha.values()]
        report.check(set(listed) <= contents and set(listed) <= set(row_ids) and not extra_rows and not others
                     and not foreign and len(leftovers) <= unanswered - len(unheard),
                     f"the bucket holds a row and a content object for each of the {len(listed)} files, and nothing "
                     f"else but {len(leftovers)} leftovers: whole uploads of this run cut before their row was "
                     f"written (of {unanswered - len(unheard)} uploads nginx saw go unanswered that are no file)",
                     f"rows missing for {sorted(set(listed) - set(row_ids))[:5]}, rows of no listed file "
                     f"{extra_rows[:5]}, content missing for {sorted(set(listed) - contents)[:5]}, other keys "
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
                     and named >= set(leftovers) and not any(there(f"files/{i}") for i in named - set(leftovers)),
                     f"ferry fsck on the bucket finds the {len(listed)} files sound (exit {code}) and names the "
                     f"{len(leftovers)} leftovers", out[-800:])
        lonely_content, lonely_row, bad_row = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())

        def row_key(file_id: str) -> str:  # as ferry names rows
            return "index/" + bytes(~b & 0xFF for b in uuid.UUID(file_id).bytes).hex()

        some_row = s3.get(dep.garage.bucket, rows[0])[1]
        planted = [f"files/{lonely_content}", row_key(lonely_row), row_key(bad_row)]
        s3.put(dep.garage.bucket, planted[0], secrets.token_bytes(1000))
        s3.put(dep.garage.bucket, planted[1], json.dumps(dict(json.loads(some_row), id=lonely_row)).encode())
        s3.put(dep.garage.bucket, planted[2], b'{"id": "not a row')
        code, out = fsck()
        report.check(code == 1 and re.search(rf"^damaged {lonely_row}:", out, re.M)
                     and re.search(rf"^damaged {bad_row}:", out, re.M)
                     and re.search(rf"^leftover files/{lonely_content}:", out, re.M),
                     f"ferry fsck calls a row without its content and an unreadable row damage (exit {code}) and "
                     f"names a content object without its row as a leftover", out[-800:])
        status, _, body = http("GET", dep.url("nginx") + "/files?limit=1000")
        report.check(status == 200 and bad_row not in body.decode(errors="replace"),
                     "an unreadable row is left out of the listing, which still answers 200", f"{status} {body[:300]!r}")
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
        if report.failed:
            for name in ("A", "B"):
                print(f"--- the end of ferry {name}'s log\n{tail(dep.log(name), 40)}", flush=True)


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"cluster: {tool} is not installed")
    # timeout(1) sends SIGTERM: leave through the finally blocks, which stop everything by pid, and let no second
    # signal cut that short
    def leave(*_):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.exit(143)

    signal.signal(signal.SIGTERM, leave)
    report = Report()
    work = Path(tempfile.mkdtemp(prefix="ferry-cluster-"))
    try:
        run(sys.argv[1], sys.argv[2], work, report)
    except SystemExit:
        report.check(False, "the run went to its end",
                     "stopped by SIGTERM (its time limit?); everything it started is stopped")
    except Exception as err:  # noqa: BLE001  whatever stopped the run is one failure, reported, and cleaned up
        detail = str(err) if isinstance(err, Failed) else traceback.format_exc()
        report.check(False, "the run went to its end", detail)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"cluster: {report.passed} passed, {report.failed} failed", flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
