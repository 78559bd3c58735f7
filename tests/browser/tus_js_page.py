#!/usr/bin/env python3
"""tus-js-client (the tus project's own browser client, from npm) in a page on another origin, in headless
Chromium, against ferry with CORS for that origin: a 40 MiB upload is under way when ferry is killed (SIGKILL)
and started again on the same address; the client must resume from the server's offset (its progress never goes
back to the start) and finish, and ferry must then hold exactly one file, with the source's sha256.

    python3 tests/browser/tus_js_page.py path/to/ferry path/to/node_modules   # needs chromium, chromium-driver,
                                                                              # selenium, npm's tus-js-client

Exits non-zero on the first failed expectation, naming the step; every wait is bounded and the whole run is
bounded by a wall-clock alarm. The browser's upload speed is throttled (DevTools network emulation) so that the
interruption lands mid-upload on any machine.
"""

import functools
import hashlib
import http.server
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upload_page import browser, expect, free_port, start_ferry, until, PASSED  # noqa: E402

DEADLINE = 240
WAIT = 60
SIZE = 40 << 20

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>tus-js-client against ferry</title>
<script src="tus.min.js"></script>
<input type="file" id="picker">
<script>
window.result = { progress: [], done: false, error: null, retries: 0 };
document.getElementById("picker").addEventListener("change", (event) => {
  const file = event.target.files[0];
  const upload = new tus.Upload(file, {
    endpoint: ENDPOINT,
    chunkSize: 4 * 1024 * 1024,
    retryDelays: [0, 500, 1000, 1000, 2000, 2000, 3000, 3000, 5000, 5000, 5000, 5000],
    metadata: { filename: file.name, filetype: "application/octet-stream" },
    onProgress: (sent, total) => window.result.progress.push([performance.now(), sent, total]),
    onShouldRetry: () => { window.result.retries += 1; return true; },
    onError: (error) => { window.result.error = String(error); },
    onSuccess: () => { window.result.done = true; },
  });
  upload.start();
});
</script>
"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(directory: Path, port: int) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def on_deadline(*_) -> None:
    sys.exit(f"FAILED: the tus-js-client page test did not finish within {DEADLINE} s")


def main() -> None:
    signal.signal(signal.SIGALRM, on_deadline)
    signal.alarm(DEADLINE)
    binary, modules = sys.argv[1], Path(sys.argv[2])
    with tempfile.TemporaryDirectory(prefix="ferry-tusjs-") as tmp:
        tmp = Path(tmp)
        source = os.urandom(SIZE)
        (tmp / "big.bin").write_bytes(source)
        site = tmp / "site"
        site.mkdir()
        shutil.copy(modules / "tus-js-client" / "dist" / "tus.min.js", site / "tus.min.js")
        port, page_port = free_port(), free_port()
        base, origin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{page_port}"
        (site / "index.html").write_text(PAGE.replace("ENDPOINT", json.dumps(f"{base}/files/tus/")))
        page = serve(site, page_port)
        data = str(tmp / "data")
        flags = ["--cors-origin", origin]
        proc = start_ferry(binary, data, port, flags)
        driver = browser(str(tmp / "profile"), str(tmp / "downloads"))
        progress = lambda d: d.execute_script("return window.result.progress.at(-1) || [0, 0, 1]")  # noqa: E731
        try:
            driver.set_page_load_timeout(WAIT)
            driver.get(origin + "/index.html")
            driver.find_element("id", "picker").send_keys(str(tmp / "big.bin"))
            until(driver, "the upload is a quarter through", lambda d: progress(d)[1] > SIZE // 4)
            proc.kill()
            proc.wait()
            killed_at = progress(driver)[1]
            seen_before = driver.execute_script("return window.result.progress.length")
            until(driver, "the client notices and retries", lambda d: d.execute_script("return window.result.retries") > 0)
            time.sleep(1)
            proc = start_ferry(binary, data, port, flags)
            until(driver, "the upload finishes", lambda d: d.execute_script("return window.result.done || window.result.error"))
            result = driver.execute_script("return window.result")
            expect(result["error"] is None and result["done"], f"tus-js-client finished the upload ({result['error']})")
            after = [sent for _, sent, _ in result["progress"][seen_before:]]
            expect(bool(after) and min(after) > SIZE // 8,
                   f"it resumed from the server's offset: after the restart its progress never fell below "
                   f"{min(after or [0]) >> 20} MiB (killed at {killed_at >> 20} MiB of {SIZE >> 20})")
            with urllib.request.urlopen(f"{base}/files", timeout=WAIT) as res:
                listed = json.load(res)
            expect(len(listed) == 1, f"ferry holds exactly one file ({len(listed)})")
            expect(listed[0]["sha256"] == hashlib.sha256(source).hexdigest() and listed[0]["filename"] == "big.bin",
                   "the stored file is the source, byte for byte (sha256), under its name")
        finally:
            driver.quit()
            proc.kill()
            proc.wait()
            page.shutdown()
    print(f"tus-js-client page: {len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main()
