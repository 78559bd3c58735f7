#!/usr/bin/env python3
"""A Garage cluster on loopback, for ferry's cluster test: N nodes (1 or 3), each with its own RPC, S3 and admin
ports, data and metadata directories, one shared random rpc_secret, replication_factor = N, one zone per node,
the layout assigned and applied, a bucket and a key that may read and write it.

    python3 tests/cluster/garage.py GARAGE_BINARY [--nodes 3]           # bring it up, print how to reach it as
                                                                        # JSON, run until SIGINT/SIGTERM
    python3 tests/cluster/garage.py GARAGE_BINARY --check               # bring it up, check it keeps serving
                                                                        # with a node SIGKILLed, stop it

As a module: `with Garage(binary, nodes=3) as garage:` gives `garage.endpoints` (one S3 URL per node),
`garage.region`, `garage.bucket`, `garage.access_key`, `garage.secret_key`, `garage.kill(i)` (SIGKILL),
`garage.restart(i)`, and `S3(endpoint, ...)`, a small path-style SigV4 client (put, ranged get, keys, delete).

Metadata is kept in SQLite (`db_engine = "sqlite"`), not Garage's default LMDB: the cluster test SIGKILLs
nodes, and Garage's own documentation reports LMDB files corrupted after unclean shutdowns while SQLite "does
not have the issues listed above for LMDB"; it is slower, which does not matter for a few thousand objects.

Every wait is bounded (WAIT seconds); every process is started and stopped by pid; the temporary directory is
removed on exit. Python 3 standard library only.
"""

import argparse
import datetime
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

WAIT = 60
REGION = "garage"
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GarageError(Exception):
    pass


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, wait: float = 10) -> None:
    """Signals a process this script started, and SIGKILLs it if it has not exited within `wait` seconds."""
    stop_together([(proc, sig)], wait)


def stop_together(procs: list[tuple[subprocess.Popen | None, int]], wait: float = 10) -> None:
    """Signals each process, then gives them `wait` seconds in all before SIGKILL (ferry waits for requests in
    flight, Garage for its own shutdown)."""
    running = [(p, sig) for p, sig in procs if p is not None and p.poll() is None]
    for proc, sig in running:
        proc.send_signal(sig)
    deadline = time.monotonic() + wait
    for proc, _ in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=wait)


# --- a small S3 client: path-style, AWS Signature Version 4 ----------------------------------------------------


class S3:
    """Just what the cluster test needs from S3, signed with SigV4 (standard library only)."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str = REGION, timeout: float = 30):
        self.endpoint = endpoint.rstrip("/")
        self.host = urllib.parse.urlparse(self.endpoint).netloc
        self.access_key, self.secret_key, self.region, self.timeout = access_key, secret_key, region, timeout

    def _sign(self, method: str, path: str, query: dict, payload_hash: str, extra: dict | None = None) -> dict:
        """The headers of a signed request; `extra` headers are signed too (under their lower-case names, as SigV4
        wants)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(str(v), safe='-_.~')}"
            for k, v in sorted(query.items()))
        extra = {name.lower(): value for name, value in (extra or {}).items()}
        headers = {"host": self.host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date, **extra}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, urllib.parse.quote(path, safe="/-_.~"), canonical_query,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload_hash])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        del headers["host"]
        return headers

    def request(self, method: str, path: str, query: dict | None = None, body: bytes = b"",
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        """One signed request; returns status, headers (lower-case names) and body, errors included."""
        query = query or {}
        all_headers = self._sign(method, path, query, hashlib.sha256(body).hexdigest(), headers)
        url = self.endpoint + urllib.parse.quote(path, safe="/-_.~")
        if query:
            url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method,
                                     headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                return res.status, {k.lower(): v for k, v in res.headers.items()}, res.read()
        except urllib.error.HTTPError as err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()

    def put(self, bucket: str, key: str, data: bytes) -> int:
        return self.request("PUT", f"/{bucket}/{key}", body=data)[0]

    def get(self, bucket: str, key: str, byte_range: str | None = None) -> tuple[int, bytes]:
        status, _, body = self.request("GET", f"/{bucket}/{key}",
                                       headers={"Range": byte_range} if byte_range else None)
        return status, body

    def parts(self, bucket: str, key: str, upload_id: str) -> int:
        """ListParts of one multipart upload: 200 while it is in progress, 404 once completed or aborted. A read
        of that upload itself, not a listing (Garage's listings can show, for some seconds after a node comes
        back, keys deleted while it was down)."""
        return self.request("GET", f"/{bucket}/{key}", {"uploadId": upload_id})[0]

    def delete(self, bucket: str, key: str) -> int:
        return self.request("DELETE", f"/{bucket}/{key}")[0]

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under `prefix` (ListObjectsV2, following continuation tokens)."""
        keys, token = [], None
        for _ in range(10_000):
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, _, body = self.request("GET", f"/{bucket}", query)
            if status != 200:
                raise GarageError(f"ListObjectsV2 {bucket}/{prefix}: {status} {body[:300]!r}")
            root = ET.fromstring(body)
            keys += [c.findtext(f"{S3_NS}Key") for c in root.iter(f"{S3_NS}Contents")]
            token = root.findtext(f"{S3_NS}NextContinuationToken")
            if root.findtext(f"{S3_NS}IsTruncated") != "true" or not token:
                return keys
        raise GarageError(f"ListObjectsV2 {bucket}/{prefix}: more pages than anyone stores here")

    def multipart_uploads(self, bucket: str) -> list[tuple[str, str, str]]:
        """The multipart uploads in progress (ListMultipartUploads, first page): key, upload id, when begun."""
        status, _, body = self.request("GET", f"/{bucket}", {"uploads": ""})
        if status != 200:
            raise GarageError(f"ListMultipartUploads {bucket}: {status} {body[:300]!r}")
        return [(u.findtext(f"{S3_NS}Key"), u.findtext(f"{S3_NS}UploadId"), u.findtext(f"{S3_NS}Initiated"))
                for u in ET.fromstring(body).iter(f"{S3_NS}Upload")]


# --- the cluster ----------------------------------------------------------------------------------------------


class Node:
    def __init__(self, index: int, root: Path):
        self.index = index
        self.dir = root / f"node{index}"
        self.rpc_port, self.s3_port, self.admin_port = free_port(), free_port(), free_port()
        self.config = self.dir / "garage.toml"
        self.log = self.dir / "garage.log"
        self.proc: subprocess.Popen | None = None
        self.node_id = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def rpc_addr(self) -> str:
        return f"127.0.0.1:{self.rpc_port}"


class Garage:
    def __init__(self, binary: str, nodes: int = 3, root: str | None = None, bucket: str = "ferry"):
        if nodes not in (1, 3):
            raise ValueError("nodes: 1 or 3")
        self.binary = str(Path(binary).resolve())
        self._tmp = None if root else tempfile.mkdtemp(prefix="ferry-garage-")
        self.root = Path(root or self._tmp)
        self.region, self.bucket = REGION, bucket
        self.rpc_secret = secrets.token_hex(32)
        self.admin_token = secrets.token_urlsafe(24)
        # Garage key ids are GK and 24 hex digits, secrets 64 hex digits: imported, so known before the cluster is
        self.access_key = "GK" + secrets.token_hex(12)
        self.secret_key = secrets.token_hex(32)
        self.nodes = [Node(i, self.root) for i in range(nodes)]

    # -- lifecycle

    def __enter__(self) -> "Garage":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoints(self) -> list[str]:
        return [n.endpoint for n in self.nodes]

    def client(self, i: int = 0) -> S3:
        return S3(self.nodes[i].endpoint, self.access_key, self.secret_key, self.region)

    def info(self) -> dict:
        return {"endpoints": self.endpoints, "region": self.region, "bucket": self.bucket,
                "access_key_id": self.access_key, "secret_access_key": self.secret_key,
                "pids": [n.proc.pid if n.proc else None for n in self.nodes], "root": str(self.root)}

    def start(self) -> None:
        for node in self.nodes:
            (node.dir / "meta").mkdir(parents=True, exist_ok=True)
            (node.dir / "data").mkdir(parents=True, exist_ok=True)
            node.config.write_text(self._config(node))
            node.config.chmod(0o600)
            self._spawn(node)
        for node in self.nodes:
            node.node_id = self._node_id(node)
        # as a deployment would: a node that restarts finds its peers at once (read at start, so for restarts)
        for node in self.nodes:
            node.config.write_text(self._config(node))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.cli(first, "node", "connect", f"{node.node_id}@{node.rpc_addr}")
        for node in self.nodes:
            self.cli(first, "layout", "assign", "-z", f"zone{node.index}", "-c", "1G", node.node_id)
        self.cli(first, "layout", "apply", "--version", "1")
        self.wait_healthy()
        self.cli(first, "bucket", "create", self.bucket)
        self.cli(first, "key", "import", "-n", "ferry", "--yes", self.access_key, self.secret_key)
        self.cli(first, "bucket", "allow", "--read", "--write", "--owner", self.bucket, "--key", "ferry")
        for i in range(len(self.nodes)):
            self.wait_s3(i)

    def stop(self) -> None:
        """Stops every node by pid (SIGTERM, then SIGKILL after a bounded wait) and removes the directory this
        object made."""
        procs = [(node.proc, signal.SIGTERM) for node in self.nodes]  # all asked at once, then each awaited
        for node in self.nodes:
            node.proc = None
        stop_together(procs)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def kill(self, i: int) -> None:
        """SIGKILLs node i: no shutdown, as a crash or a pulled plug would."""
        self._end(self.nodes[i], signal.SIGKILL)

    def restart(self, i: int) -> None:
        """Starts node i again on its own directories and ports, and waits until it serves S3 and sees all its
        peers."""
        node = self.nodes[i]
        self._end(node, signal.SIGTERM)
        self._spawn(node)
        self.wait_healthy()
        self.wait_s3(i)

    # -- helpers

    def _config(self, node: Node) -> str:
        peers = [f'"{n.node_id}@{n.rpc_addr}"' for n in self.nodes if n is not node and n.node_id]
        return f"""\
metadata_dir = "{node.dir / 'meta'}"
data_dir = "{node.dir / 'data'}"
db_engine = "sqlite"
replication_factor = {len(self.nodes)}
rpc_bind_addr = "{node.rpc_addr}"
rpc_public_addr = "{node.rpc_addr}"
rpc_secret = "{self.rpc_secret}"
bootstrap_peers = [{", ".join(peers)}]

[s3_api]
s3_region = "{self.region}"
api_bind_addr = "127.0.0.1:{node.s3_port}"

[admin]
api_bind_addr = "127.0.0.1:{node.admin_port}"
admin_token = "{self.admin_token}"
"""

    def _spawn(self, node: Node) -> None:
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen([self.binary, "-c", str(node.config), "server"], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=dict(os.environ, RUST_LOG=os.environ.get("GARAGE_LOG", "warn")))

    def _end(self, node: Node, sig: int) -> None:
        proc, node.proc = node.proc, None
        stop(proc, sig)

    def cli(self, node: Node, *args: str) -> str:
        """Runs `garage -c <node's config> ARGS` (bounded) and returns its output; raises with it on failure."""
        out = subprocess.run([self.binary, "-c", str(node.config), *args], capture_output=True, text=True,
                             timeout=WAIT)
        if out.returncode != 0:
            raise GarageError(f"garage {' '.join(args)} (node {node.index}): {out.stderr.strip() or out.stdout}"
                              f"\n{self.tail(node)}")
        return out.stdout

    def tail(self, node: Node, lines: int = 15) -> str:
        try:
            return "\n".join(node.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _deadline(self, what: str, node: Node | None = None):
        """Yields until WAIT seconds have passed, then raises naming what was awaited."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for n in [node] if node else self.nodes:
                if n.proc is not None and n.proc.poll() is not None:
                    raise GarageError(f"garage node {n.index} exited ({n.proc.returncode}) while waiting for "
                                      f"{what}\n{self.tail(n)}")
            yield
            time.sleep(0.2)
        raise GarageError(f"garage: {what} did not happen within {WAIT}s\n" +
                          "\n".join(self.tail(n) for n in ([node] if node else self.nodes)))

    def _node_id(self, node: Node) -> str:
        """The node's id, once it listens for RPC (its key exists a moment before)."""
        for _ in self._deadline(f"node {node.index}'s id and RPC port", node):
            try:
                socket.create_connection(("127.0.0.1", node.rpc_port), timeout=2).close()
            except OSError:
                continue
            out = subprocess.run([self.binary, "-c", str(node.config), "node", "id", "-q"], capture_output=True,
                                 text=True, timeout=WAIT)
            if out.returncode == 0 and "@" in out.stdout:
                return out.stdout.strip().split("@", 1)[0]

    def health(self, i: int) -> dict | None:
        """The node's /v2/GetClusterHealth, or None when it does not answer."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.nodes[i].admin_port}/v2/GetClusterHealth",
                                     headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as res:
                return json.load(res)
        except (OSError, ValueError):
            return None

    def wait_healthy(self) -> None:
        """Until every running node reports every storage node up and every partition fully replicated."""
        n = len(self.nodes)
        for _ in self._deadline("a healthy cluster"):
            states = [self.health(i) for i, node in enumerate(self.nodes) if node.proc is not None]
            if all(s and s.get("status") == "healthy" and s.get("storageNodesUp") == n
                   and s.get("partitionsAllOk") == s.get("partitions") for s in states):
                return

    def wait_s3(self, i: int) -> None:
        """Until node i's S3 endpoint stores, returns and deletes an object with the key."""
        s3, key = self.client(i), f"probe/{i}-{secrets.token_hex(4)}"
        for _ in self._deadline(f"node {i}'s S3 API", self.nodes[i]):
            try:
                if s3.put(self.bucket, key, b"probe") == 200 and s3.get(self.bucket, key) == (200, b"probe") \
                        and s3.delete(self.bucket, key) == 204:
                    return
            except OSError:
                pass


# --- as a command ---------------------------------------------------------------------------------------------


def check(binary: str, nodes: int) -> int:
    """Puts and ranged gets go on with one node SIGKILLed, through each remaining node, and the restarted node
    serves what was written while it was down."""
    passed = failed = 0

    def report(ok: bool, sentence: str) -> None:
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'ok' if ok else 'FAIL'}: {sentence}", flush=True)

    with Garage(binary, nodes=nodes) as garage:
        data = secrets.token_bytes(3 << 20)
        clients = [garage.client(i) for i in range(nodes)]
        report(clients[0].put(garage.bucket, "check/before", data) == 200
               and all(c.get(garage.bucket, "check/before") == (200, data) for c in clients),
               f"an object put through node 0 reads back whole through each of the {nodes} nodes")
        last = nodes - 1
        if nodes > 1:
            garage.kill(last)
            alive = clients[:last]
            report(all(c.put(garage.bucket, f"check/during{i}", data) == 200 for i, c in enumerate(alive)),
                   f"with node {last} SIGKILLed, puts through the other nodes succeed (quorum 2 of 3)")
            report(all(c.get(garage.bucket, "check/before", "bytes=1000-1999") == (206, data[1000:2000])
                       for c in alive), "and ranged gets answer 206 with the right bytes")
            garage.restart(last)
            report(clients[last].get(garage.bucket, "check/during0") == (200, data),
                   f"node {last}, restarted, serves what was written while it was down")
        listed = clients[0].keys(garage.bucket, "check/")
        report(sorted(listed) == ["check/before"] + [f"check/during{i}" for i in range(nodes - 1)],
               f"the bucket lists exactly the objects written: {len(listed)}")
    print(f"garage: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", help="the garage binary")
    parser.add_argument("--nodes", type=int, default=3, choices=(1, 3))
    parser.add_argument("--check", action="store_true", help="check it serves with a node killed, then stop")
    args = parser.parse_args()
    if args.check:
        return check(args.binary, args.nodes)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with Garage(args.binary, nodes=args.nodes) as garage:
        print(json.dumps(garage.info(), indent=2), flush=True)
        try:
            while not stop:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
