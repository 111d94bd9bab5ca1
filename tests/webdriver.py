"""A headless Chromium driven over the W3C WebDriver protocol (chromedriver), with nothing but
the standard library: open a page, wait for text, click, read the page back.

    with Browser.start(profile_dir) as browser:
        browser.open("http://127.0.0.1:5000/")
        browser.wait_for(lambda text: "demo" in text)
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
CHROMEDRIVER = shutil.which("chromedriver")
#: What a test browser needs: no sandbox (containers), nothing fetched behind the test's back,
#: no first-run dialogs, a fresh profile.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         "--disable-sync", "--window-size=2400,1400"]


def wait_until_served(url: str, server, timeout: float, what: str) -> None:
    """Waits until `url` answers, while the `server` process lives, for `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            ended = server.poll() is not None
            if ended or time.monotonic() > deadline:
                errors = server.stderr.read() if ended and server.stderr else ""
                raise AssertionError(f"{what} did not start: {errors}") from None
            time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Browser:
    """One chromedriver process and one browser session on a fresh profile."""

    def __init__(self, driver: subprocess.Popen, base: str, session: str):
        self.driver, self.base, self.session = driver, base, session

    @classmethod
    def start(cls, profile: Path) -> Browser:
        port = free_port()
        driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                _call("GET", f"{base}/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    driver.kill()
                    raise
                time.sleep(0.2)
        options = {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={profile}"]}
        try:
            answer = _call("POST", f"{base}/session", {"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": options}}})
        except BaseException:
            driver.kill()
            raise
        return cls(driver, base, answer["value"]["sessionId"])

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_exc) -> None:
        try:
            _call("DELETE", f"{self.base}/session/{self.session}")
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=30)

    def _session(self, method: str, path: str, body: dict | None = None):
        return _call(method, f"{self.base}/session/{self.session}{path}", body)["value"]

    def open(self, url: str) -> None:
        self._session("POST", "/url", {"url": url})

    def run(self, script: str, *args):
        """Runs JavaScript in the page (`return ...` gives a value back)."""
        return self._session("POST", "/execute/sync", {"script": script, "args": list(args)})

    def url(self) -> str:
        return self._session("GET", "/url")

    def text(self) -> str:
        return self.run("return document.body ? document.body.innerText : '';")

    def wait_for(self, condition, timeout: float = 90.0, what: str = "the page"):
        """Polls the page's text until `condition(text)` holds; returns the text."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if condition(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the page says:\n"
                                     f"{text[:3000]}")
            time.sleep(0.5)

    def wait_for_url(self, condition, timeout: float = 90.0) -> str:
        """Polls the address until `condition(url)` holds; returns it."""
        deadline = time.monotonic() + timeout
        while not condition(url := self.url()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; the browser is at {url}")
            time.sleep(0.3)
        return url

    def click_link(self, text: str) -> None:
        """Clicks the first link whose visible text is `text`."""
        element = self._session("POST", "/element", {
            "using": "xpath", "value": f"//a[normalize-space(.)={json.dumps(text)}]"})
        element_id = next(iter(element.values()))
        self._session("POST", f"/element/{element_id}/click", {})


def _call(method: str, url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read() or b"{}")
