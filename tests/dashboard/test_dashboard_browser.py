"""End to end: the real dashboard server (``dashboard.launch``, i.e. ``streamlit run``) in headless
Debian Chromium, against a database filled by real gateway requests.

Chromium runs with the usual headless flags and is driven over the DevTools protocol with real
key presses. (``--dump-dom`` / ``--screenshot`` with ``--virtual-time-budget`` do not work for a
Streamlit app: virtual time runs out before the app's WebSocket delivers the page, so they
capture the empty shell.) The tests check the login page, that a policy-page URL shows no
editor to a visitor, and that the request detail page renders its data after logging in; the
last one takes the screenshot the README shows; with ``WARDEN_UPDATE_SCREENSHOTS=1`` it is saved
to ``docs/screenshots/request-detail.png`` (otherwise only checked, so a test run changes no file).

Needs ``/usr/bin/chromium`` (Debian package ``chromium``); skipped without it unless CI=true.
"""

from __future__ import annotations

import base64
import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.dashboard_fixtures import PASSWORDS, Dash, Seed, dashboard_seed, make_dash
from tests.gateway_harness import free_port

__all__ = ["dashboard_seed"]

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "screenshots" / "request-detail.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BASE_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)  # fmt: skip
WAIT_S = 60.0


def _need_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is not installed (apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def site(dashboard_seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Dash:
    """One copy of the seeded database for this module's tests, which only read it."""
    return make_dash(tmp_path_factory.mktemp("dashboard-browser"), dashboard_seed)


@pytest.fixture(scope="module")
def server(site: Dash) -> Iterator[str]:
    """``dashboard.launch`` in a child process (it execs ``streamlit run``); yields its URL."""
    _need_chromium()
    dash = site
    port = free_port()
    code = f"import dashboard; dashboard.launch({str(dash.config_path)!r}, {port}, '127.0.0.1')"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise RuntimeError(f"dashboard exited with {proc.returncode}: {out[-2000:]}")
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("dashboard did not come up")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            output = proc.stdout.read().decode(errors="replace")
            proc.stdout.close()
            for secret in PASSWORDS.values():
                assert secret not in output, "a password reached the server's log"


# -- a small DevTools-protocol driver ------------------------------------------------------


@dataclass
class Browser:
    ws: ClientConnection
    ids: itertools.count[int]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(orjson.dumps({"id": msg_id, "method": method, "params": params}).decode())
        while True:
            reply = orjson.loads(self.ws.recv(timeout=WAIT_S))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def text(self) -> str:
        return str(self.js("document.body ? document.body.innerText : ''"))

    def wait_for(self, expression: str, what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not self.js(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never showed {what}; it shows:\n{self.text()[:3000]}")
            time.sleep(0.25)

    def type_into(self, selector: str, value: str, *, enter: bool = False) -> None:
        self.wait_for(f"document.querySelector({selector!r}) !== null", selector)
        self.js(f"document.querySelector({selector!r}).focus()")
        self.call("Input.insertText", text=value)
        if enter:
            for kind in ("keyDown", "keyUp"):
                self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                          windowsVirtualKeyCode=13, text="\r" if kind == "keyDown" else "")  # fmt: skip


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    _need_chromium()
    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [CHROMIUM, *BASE_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,1700",
         "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + WAIT_S
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().splitlines()[0]
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        target = next(p for p in pages if p.get("type") == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=WAIT_S) as ws:
            b = Browser(ws, itertools.count(1))
            b.call("Emulation.setDeviceMetricsOverride", width=1400, height=1700, deviceScaleFactor=1, mobile=False)
            yield b
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_login_page_renders(server: str, browser: Browser) -> None:
    browser.call("Page.navigate", url=server)
    browser.wait_for("document.body.innerText.includes('User name')", "the login form")
    page = browser.text()
    assert "Warden compliance dashboard" in page
    assert "Traceback" not in page and "Error" not in page
    for title in ("Overview", "Policies", "Review queue"):
        assert title not in page, "no page is listed before logging in"


def test_policy_page_url_shows_no_editor_without_login(server: str, browser: Browser) -> None:
    browser.call("Page.navigate", url=f"{server}/policies")
    browser.wait_for("document.body.innerText.includes('User name')", "the login form")
    assert "Policy YAML" not in browser.text()
    assert browser.js("document.querySelector('textarea') === null")


def test_request_detail_renders_data_and_is_screenshotted(server: str, browser: Browser, site: Dash) -> None:
    browser.call("Page.navigate", url=server)
    browser.type_into('input[aria-label="User name"]', "ada")
    browser.type_into('input[type="password"]', PASSWORDS["ada"], enter=True)
    browser.wait_for("document.body.innerText.includes('Logged in as')", "the logged-in sidebar")
    browser.wait_for("[...document.querySelectorAll('a')].some(a => a.innerText.includes('Request detail'))", "nav")
    browser.js("[...document.querySelectorAll('a')].find(a => a.innerText.includes('Request detail')).click()")
    request_id = site.ids["reasoning"][0]
    browser.type_into('input[aria-label="Request id"]', request_id, enter=True)
    browser.wait_for("document.body.innerText.includes('Step timeline')", "the step timeline")
    browser.wait_for("document.querySelectorAll('mark').length > 0", "highlighted spans")
    browser.wait_for(
        "document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] canvas, svg.marks').length > 0",
        "the timeline chart",
    )
    browser.wait_for("document.querySelectorAll('[data-testid=\"stDataFrame\"] canvas').length > 0", "the step table")
    browser.wait_for("document.body.innerText.includes('False positive')", "the ruling form")
    browser.js("document.activeElement && document.activeElement.blur()")
    page = browser.text()
    assert request_id in page
    assert "First wrong step" in page and "200 × 0.8 = 150" in page
    assert "Traceback" not in page and "unreachable" not in page
    png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    if os.environ.get("WARDEN_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(png)
