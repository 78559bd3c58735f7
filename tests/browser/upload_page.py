#!/usr/bin/env python3
"""Drives the upload page at / in headless Chromium, against a ferry with a token: the page must ask for the
token once; two files picked at once must both show progress; ferry is then killed (SIGKILL) while the larger
one is under way and started again on the same address, and the page must say it was interrupted, resume from
the server's offset and finish; each finished upload must show the file's sha256; a download from the list of
stored files must give the same bytes, and a delete from it must remove the file. Saves screenshots to
target/upload-page-progress.png and target/upload-page.png.

    python3 tests/browser/upload_page.py [path/to/ferry]     # needs chromium, chromium-driver, selenium

Exits non-zero on the first failed expectation, naming the step. Every wait is bounded and the whole run is
bounded by a wall-clock alarm (DEADLINE seconds). The browser's upload speed is throttled (DevTools network
emulation) so that the interruption lands mid-upload on any machine.
"""

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60
DEADLINE = 300
BIG = 40 << 20
SMALL = 3 << 20
THROUGHPUT = 8 << 20  # bytes per second the browser may upload

PASSED = []


def expect(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"FAILED: {what}")
    PASSED.append(what)
    print(f"ok: {what}")


def until(driver, step: str, condition, wait: float = WAIT):
    try:
        return WebDriverWait(driver, wait, poll_frequency=0.05).until(condition)
    except TimeoutException:
        sys.exit(f"FAILED: timed out after {wait} s waiting for: {step}")


def make_token(binary: str, data_dir: str) -> str:
    out = subprocess.run([binary, "token", "create", "--name", "page", "--scopes", "upload,read,delete",
                          "--data-dir", data_dir], capture_output=True, text=True, timeout=WAIT, check=True)
    return out.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ferry(binary: str, data_dir: str, port: int, flags: list[str] = ()) -> subprocess.Popen:
    proc = subprocess.Popen(
        [binary, "--addr", f"127.0.0.1:{port}", "--workers", "1", "--data-dir", data_dir, *flags],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, RUST_LOG="info"),
    )
    for line in proc.stderr:
        if "listening on http://" in line:
            # keep draining its log, so it never blocks on a full pipe
            subprocess.Popen(["cat"], stdin=proc.stderr, stdout=subprocess.DEVNULL)
            return proc
    proc.kill()
    sys.exit("FAILED: ferry did not start")


def browser(profile: str, downloads: str) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--window-size=1100,900"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": THROUGHPUT,
    })
    return driver


def upload_row(driver, name: str):
    rows = driver.find_elements(By.CSS_SELECTOR, f'.upload[data-name="{name}"]')
    return rows[0] if rows else None


def state(driver, name: str) -> tuple[str, float, str]:
    """The page's state of one upload: its data-state, its progress (0 to 1) and its note."""
    return driver.execute_script("""
        const row = document.querySelector(`.upload[data-name="${arguments[0]}"]`);
        if (!row) return ["", 0, ""];
        return [row.dataset.state || "", row.querySelector("progress").value, row.querySelector(".note").textContent];
    """, name)


def on_deadline(*_) -> None:
    sys.exit(f"FAILED: the upload page test did not finish within {DEADLINE} s")


def main() -> None:
    signal.signal(signal.SIGALRM, on_deadline)
    signal.alarm(DEADLINE)
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "ferry")
    with tempfile.TemporaryDirectory(prefix="ferry-page-") as tmp:
        files = {"big.bin": os.urandom(BIG), "small.txt": os.urandom(SMALL)}
        for name, content in files.items():
            (Path(tmp) / name).write_bytes(content)
        data = str(Path(tmp) / "data")
        token = make_token(binary, data)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_ferry(binary, data, port)
        downloads = Path(tmp) / "downloads"
        downloads.mkdir()
        driver = browser(str(Path(tmp) / "profile"), str(downloads))
        try:
            driver.set_page_load_timeout(WAIT)
            driver.get(base + "/")
            box = until(driver, "the page asks for a token", EC.visibility_of_element_located((By.ID, "token-box")))
            box.find_element(By.ID, "token").send_keys(token)
            box.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            until(driver, "the token box closes", EC.invisibility_of_element_located((By.ID, "token-box")))
            until(driver, "the empty list says so", lambda d: "No files yet" in d.find_element(By.ID, "files-note").text)
            expect(True, "the page asks for a token once, then lists the (no) stored files")

            picker = driver.find_element(By.ID, "picker")
            picker.send_keys("\n".join(str(Path(tmp) / name) for name in files))
            until(driver, "both uploads show", lambda d: upload_row(d, "big.bin") and upload_row(d, "small.txt"))
            until(driver, "the big upload is a quarter through", lambda d: state(d, "big.bin")[1] > 0.25)
            driver.save_screenshot(str(ROOT / "target" / "upload-page-progress.png"))
            stat = upload_row(driver, "big.bin").find_element(By.CSS_SELECTOR, ".stat").text
            expect(re.search(r"MiB of 40\.0 MiB · [0-9.]+ [KM]iB/s", stat) is not None,
                   f"the big upload shows its progress and speed ({stat!r})")
            expect(state(driver, "big.bin")[0] == "uploading", "the big upload is still under way")

            proc.kill()
            proc.wait()
            until(driver, "the page says the upload was interrupted",
                  lambda d: state(d, "big.bin")[0] == "retrying" and "Interrupted" in state(d, "big.bin")[2])
            expect(True, "the page says the big upload was interrupted and will resume")
            proc = start_ferry(binary, data, port)
            resumed = False
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                kind, progress, note = state(driver, "big.bin")
                resumed = resumed or (note.startswith("resuming at") and progress > 0.2)
                if kind == "done":
                    break
                time.sleep(0.05)
            expect(resumed, "the big upload resumed from the server's offset, not from the start")
            for name, content in files.items():
                until(driver, f"{name} finishes", lambda d, n=name: state(d, n)[0] == "done")
                shown = upload_row(driver, name).find_element(By.CSS_SELECTOR, ".sha256").text
                expect(shown == hashlib.sha256(content).hexdigest(), f"{name} shows its sha256")
            until(driver, "the list shows both files", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#files tbody tr")) == 2)
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(str(ROOT / "target" / "upload-page.png"))

            row = driver.find_element(By.XPATH, "//table[@id='files']//tr[td[@class='name' and text()='big.bin']]")
            file_id = row.get_attribute("data-id")
            row.find_element(By.CSS_SELECTOR, ".download").click()
            saved = downloads / "big.bin"
            until(driver, "the download from the list lands", lambda _: saved.exists() and saved.stat().st_size == BIG)
            expect(saved.read_bytes() == files["big.bin"], "the download from the list is the file, byte for byte")

            row.find_element(By.CSS_SELECTOR, ".delete").click()
            until(driver, "the deleted file leaves the list",
                  lambda d: len(d.find_elements(By.CSS_SELECTOR, "#files tbody tr")) == 1)
            request = urllib.request.Request(f"{base}/files/{file_id}", headers={"Authorization": f"Bearer {token}"})
            try:
                urllib.request.urlopen(request, timeout=WAIT)
                expect(False, "the deleted file is gone from the server")
            except urllib.error.HTTPError as err:
                expect(err.code == 404, f"the deleted file is gone from the server ({err.code})")
        finally:
            driver.quit()
            proc.kill()
            proc.wait()
    print(f"upload page: {len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main()
