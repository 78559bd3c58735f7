#!/usr/bin/env python3
"""CORS in headless Chromium: a page served on another loopback port uploads to ferry with a token through
`fetch`. From the origin ferry allows (`--cors-origin`), the preflight passes and the upload answers 201 with a
readable Location; from another origin, the browser blocks the request.

    python3 tests/browser/cors.py [path/to/ferry]     # needs chromium, chromium-driver, selenium

Bounded like swagger_ui.py: each wait WAIT seconds, the whole run DEADLINE seconds. .ci/run runs it.
"""

import functools
import hashlib
import http.server
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from swagger_ui import ROOT, WAIT, browser, make_token  # noqa: E402

DEADLINE = 120

PAGE = """<!doctype html><title>cors</title><script>
async function upload(base, token) {
  try {
    const res = await fetch(base + '/files/upload/stream/async_read_and_async_write?filename=a.txt', {
      method: 'POST', body: 'hello from another origin',
      headers: {'Authorization': 'Bearer ' + token, 'Content-Type': 'application/octet-stream',
                'X-Checksum-Sha256': '%s'}});
    return res.status + ' ' + res.headers.get('location');
  } catch (err) { return 'blocked: ' + err; }
}
</script>"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_) -> None:
        pass


def serve_page(directory: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main() -> None:
    signal.signal(signal.SIGALRM, lambda *_: sys.exit(f"FAILED: the CORS test did not finish within {DEADLINE} s"))
    signal.alarm(DEADLINE)
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "ferry")
    passed = 0
    with tempfile.TemporaryDirectory(prefix="ferry-cors-") as tmp:
        digest = hashlib.sha256(b"hello from another origin").hexdigest()
        (Path(tmp) / "page.html").write_text(PAGE % digest)
        allowed, allowed_origin = serve_page(tmp)
        other, other_origin = serve_page(tmp)
        data = str(Path(tmp) / "data")
        token = make_token(binary, data)
        proc = subprocess.Popen([binary, "--addr", "127.0.0.1:0", "--workers", "1", "--data-dir", data,
                                 "--cors-origin", allowed_origin], stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, RUST_LOG="info"))
        base = None
        for line in proc.stderr:
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                base = match.group(1)
                break
        if base is None:
            sys.exit("FAILED: ferry did not start")
        driver = browser(str(Path(tmp) / "profile"))
        driver.set_script_timeout(WAIT)
        try:
            for origin, expected in ((allowed_origin, r"^201 /files/[0-9a-f-]{36}$"), (other_origin, r"^blocked")):
                driver.get(f"{origin}/page.html")
                time.sleep(0.2)
                got = driver.execute_async_script(
                    "const done = arguments[arguments.length - 1]; upload(arguments[0], arguments[1]).then(done);",
                    base, token)
                if not re.search(expected, got):
                    sys.exit(f"FAILED: an upload from {origin} answered {got!r}, expected {expected}")
                passed += 1
                print(f"ok: an upload from {origin}: {got}")
        finally:
            driver.quit()
            proc.terminate()
            proc.wait(timeout=10)
            allowed.shutdown()
            other.shutdown()
    print(f"cors: {passed} passed, 0 failed")


if __name__ == "__main__":
    main()
