#!/usr/bin/env python3
"""Drives the real Swagger UI at /docs in headless Chromium, against a ferry with a token: an execute before
authorizing must show the 401; then "Authorize" with the token, and a multipart, a raw and a base64 upload, each
"Try it out" → choose a file → Execute, must show 201 and the file's sha256; a download by the returned id must
show 200. Saves a screenshot to target/swagger-ui.png.

    python3 tests/browser/swagger_ui.py [path/to/ferry]     # needs chromium, chromium-driver, selenium

Exits non-zero on the first failed expectation, naming the step. Every wait is bounded (WAIT seconds) and the
whole run is bounded by a wall-clock alarm (DEADLINE seconds), so a hang fails in seconds with a message, not
with a driver traceback. Not part of `cargo test` (it needs a browser); .ci/run runs it.

Request bodies are pasted, not typed: a textarea's value is set through its native setter and an `input` event
lets Swagger UI's React state see it. Typing a few thousand characters with send_keys took Chromium 156 over
two minutes.
"""

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30
DEADLINE = 240

# What a paste does: React tracks a textarea's value through the prototype's setter, so set it there, then tell
# React with an input event.
PASTE = """
const [area, text] = arguments;
Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set.call(area, text);
area.dispatchEvent(new Event('input', {bubbles: true}));
"""


def make_token(binary: str, data_dir: str) -> str:
    """A token with every scope, from `ferry token create`; its creation turns access control on."""
    out = subprocess.run([binary, "token", "create", "--name", "browser", "--scopes", "upload,read,delete",
                          "--data-dir", data_dir], capture_output=True, text=True, timeout=WAIT, check=True)
    return out.stdout.strip()


def start_ferry(binary: str, data_dir: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [binary, "--addr", "127.0.0.1:0", "--workers", "1", "--data-dir", data_dir],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, RUST_LOG="info"),
    )
    deadline = time.monotonic() + 30
    for line in proc.stderr:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    sys.exit("ferry did not start")


def browser(profile: str) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--window-size=1400,1100"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


class SwaggerUi:
    def __init__(self, driver: webdriver.Chrome, base: str):
        self.driver = driver
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        driver.get(base + "/docs")  # redirects to /docs/
        self.until("Swagger UI renders the operations",
                   EC.presence_of_element_located((By.ID, "operations-upload-single_stream")))

    def until(self, step: str, condition):
        """Waits for one step, at most WAIT seconds; a step that does not happen fails with its name."""
        try:
            return WebDriverWait(self.driver, WAIT).until(condition)
        except TimeoutException:
            sys.exit(f"FAILED: timed out after {WAIT} s waiting for: {step}")

    def open(self, operation_id: str):
        """Expands an operation and presses "Try it out"."""
        op = self.until(f"{operation_id} is on the page", EC.presence_of_element_located((By.ID, operation_id)))
        self.driver.execute_script("arguments[0].scrollIntoView()", op)
        op.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        self.until(f"{operation_id} shows 'Try it out'", lambda _: op.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
        op.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
        self.until(f"{operation_id} shows 'Execute'", lambda _: op.find_elements(By.CSS_SELECTOR, ".execute"))
        return op

    def authorize(self, token: str) -> None:
        """The "Authorize" button: the bearer token goes in the dialog, then Authorize and Close."""
        self.driver.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
        field = self.until("the Authorize dialog asks for the bearer token",
                           EC.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux input")))
        field.send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, ".modal-ux .auth-btn-wrapper .authorize").click()
        self.until("the dialog shows Close", EC.element_to_be_clickable((By.CSS_SELECTOR, ".modal-ux .btn-done")))
        self.driver.find_element(By.CSS_SELECTOR, ".modal-ux .btn-done").click()
        self.until("the dialog closes", EC.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))

    def paste(self, element, text: str) -> None:
        """Puts text into a textarea the way a paste does, whatever its length."""
        self.driver.execute_script(PASTE, element, text)
        self.until("the pasted body shows in the textarea", lambda _: element.get_attribute("value") == text)

    def execute(self, op) -> tuple[str, str]:
        """Presses Execute; returns the status and body the page shows."""
        op.find_element(By.CSS_SELECTOR, ".execute").click()
        cell = ".live-responses-table tbody .response-col_status"
        self.until(f"{op.get_attribute('id')} shows a response", lambda _: op.find_elements(By.CSS_SELECTOR, cell))
        status = op.find_element(By.CSS_SELECTOR, cell).text.strip()
        bodies = op.find_elements(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_description pre")
        return status, "\n".join(b.text for b in bodies)


PASSED = []


def expect(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"FAILED: {what}")
    PASSED.append(what)
    print(f"ok: {what}")


def check_upload(ui: SwaggerUi, base: str, token: str, operation_id: str, fill, payload: bytes) -> str:
    """One upload through the page: 201, the sha256 and a new id shown, and the server holds the same bytes."""
    op = ui.open(operation_id)
    fill(op)
    status, body = ui.execute(op)
    expect(status == "201", f"{operation_id} shows 201 (got {status!r})")
    expect(hashlib.sha256(payload).hexdigest() in body, f"{operation_id} shows the file's sha256")
    match = re.search(r'"id": "([0-9a-f-]{36})"', body)
    expect(match is not None, f"{operation_id} shows the new id")
    file_id = match.group(1)
    download = urllib.request.Request(f"{base}/files/download/stream/sync_read/{file_id}",
                                      headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(download, timeout=WAIT) as res:
        expect(res.read() == payload, f"{operation_id} stored the file byte for byte")
    return file_id


def on_deadline(*_) -> None:
    sys.exit(f"FAILED: the browser test did not finish within {DEADLINE} s")


def main() -> None:
    signal.signal(signal.SIGALRM, on_deadline)
    signal.alarm(DEADLINE)
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "ferry")
    with tempfile.TemporaryDirectory(prefix="ferry-browser-") as tmp:
        payload = os.urandom(3000)
        sample = Path(tmp) / "sample.bin"
        sample.write_bytes(payload)
        token = make_token(binary, str(Path(tmp) / "data"))
        proc, base = start_ferry(binary, str(Path(tmp) / "data"))
        driver = browser(str(Path(tmp) / "profile"))
        try:
            ui = SwaggerUi(driver, base)
            pick_file = lambda op: op.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(sample))

            def json_body(op):
                area = op.find_element(By.CSS_SELECTOR, "textarea.body-param__text")
                ui.paste(area, json.dumps({"filename": "sample.bin", "data": base64.b64encode(payload).decode()}))

            listing = ui.open("operations-files-list")
            status, body = ui.execute(listing)
            expect(status == "401" and "unauthorized" in body, f"an execute before Authorize shows 401 (got {status!r})")
            ui.authorize(token)
            status, _ = ui.execute(listing)
            expect(status == "200", f"the same execute after Authorize shows 200 (got {status!r})")

            check_upload(ui, base, token, "operations-upload-async_read_and_async_write", pick_file, payload)
            check_upload(ui, base, token, "operations-upload-base64decode", json_body, payload)
            file_id = check_upload(ui, base, token, "operations-upload-single_stream", pick_file, payload)
            # the whole executed operation: its parameters, the request, the 201 and the body
            driver.set_window_size(1400, 2800)
            shown = driver.find_element(By.ID, "operations-upload-single_stream")
            driver.execute_script("arguments[0].scrollIntoView()", shown)
            shown.screenshot(str(ROOT / "target" / "swagger-ui.png"))
            driver.set_window_size(1400, 1100)

            op = ui.open("operations-download-sync_read")
            op.find_element(By.CSS_SELECTOR, "input[placeholder=id]").send_keys(file_id)
            status, _ = ui.execute(op)
            expect(status == "200", f"download of {file_id} shows 200 (got {status!r})")
        finally:
            driver.quit()
            proc.terminate()
            proc.wait(timeout=10)
    print(f"swagger ui: {len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main()
