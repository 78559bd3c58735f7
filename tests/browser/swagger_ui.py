#!/usr/bin/env python3
"""Drives the real Swagger UI at /docs in headless Chromium: a multipart, a raw and a base64 upload, each
"Try it out" → choose a file → Execute, must show 201 and the file's sha256; a download by the returned id must
show 200. Saves a screenshot to target/swagger-ui.png.

    python3 tests/browser/swagger_ui.py [path/to/ferry]     # needs chromium, chromium-driver, selenium

Exits non-zero on the first failed expectation. Not part of `cargo test` (it needs a browser); .ci/run runs it.
"""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30


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
        self.driver, self.wait = driver, WebDriverWait(driver, WAIT)
        driver.get(base + "/docs")  # redirects to /docs/
        self.wait.until(EC.presence_of_element_located((By.ID, "operations-upload-single_stream")))

    def open(self, operation_id: str):
        """Expands an operation and presses "Try it out"."""
        op = self.driver.find_element(By.ID, operation_id)
        self.driver.execute_script("arguments[0].scrollIntoView()", op)
        op.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        self.wait.until(lambda _: op.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
        op.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
        self.wait.until(lambda _: op.find_elements(By.CSS_SELECTOR, ".execute"))
        return op

    def execute(self, op) -> tuple[str, str]:
        """Presses Execute; returns the status and body the page shows."""
        op.find_element(By.CSS_SELECTOR, ".execute").click()
        cell = ".live-responses-table tbody .response-col_status"
        self.wait.until(lambda _: op.find_elements(By.CSS_SELECTOR, cell))
        status = op.find_element(By.CSS_SELECTOR, cell).text.strip()
        bodies = op.find_elements(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_description pre")
        return status, "\n".join(b.text for b in bodies)


def expect(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


def check_upload(ui: SwaggerUi, operation_id: str, fill, digest: str) -> str:
    op = ui.open(operation_id)
    fill(op)
    status, body = ui.execute(op)
    expect(status == "201", f"{operation_id} shows 201 (got {status!r})")
    expect(digest in body, f"{operation_id} shows the file's sha256")
    match = re.search(r'"id": "([0-9a-f-]{36})"', body)
    expect(match is not None, f"{operation_id} shows the new id")
    return match.group(1)


def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "ferry")
    with tempfile.TemporaryDirectory(prefix="ferry-browser-") as tmp:
        payload = os.urandom(3000)
        sample = Path(tmp) / "sample.bin"
        sample.write_bytes(payload)
        digest = hashlib.sha256(payload).hexdigest()
        proc, base = start_ferry(binary, str(Path(tmp) / "data"))
        driver = browser(str(Path(tmp) / "profile"))
        try:
            ui = SwaggerUi(driver, base)
            pick_file = lambda op: op.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(sample))

            def json_body(op):
                area = op.find_element(By.CSS_SELECTOR, "textarea.body-param__text")
                area.clear()
                area.send_keys(json.dumps({"filename": "sample.bin", "data": base64.b64encode(payload).decode()}))

            check_upload(ui, "operations-upload-async_read_and_async_write", pick_file, digest)
            check_upload(ui, "operations-upload-base64decode", json_body, digest)
            file_id = check_upload(ui, "operations-upload-single_stream", pick_file, digest)
            shown = driver.find_element(By.CSS_SELECTOR, "#operations-upload-single_stream .live-responses-table")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", shown)
            driver.save_screenshot(str(ROOT / "target" / "swagger-ui.png"))

            op = ui.open("operations-download-sync_read")
            op.find_element(By.CSS_SELECTOR, "input[placeholder=id]").send_keys(file_id)
            status, _ = ui.execute(op)
            expect(status == "200", f"download of {file_id} shows 200 (got {status!r})")
            stored = Path(tmp) / "data" / "files" / file_id
            expect(stored.read_bytes() == payload, "the file uploaded from the browser is stored byte for byte")
        finally:
            driver.quit()
            proc.terminate()
            proc.wait(timeout=10)
    print("swagger ui: 4 passed, 0 failed")


if __name__ == "__main__":
    main()
