"""How long each dashboard page takes to answer with 100,000 stored requests, in headless Chromium.

Question: does every page answer in under a second on the 2-core reference machine with
100,000 requests in the audit database (issue #18, item 6)?

The benchmark fills a fresh SQLite database through the real ``AuditWriter`` (20-step records,
spread over the last 24 hours so the default filters see all of them; one in ten blocked, one in
ten flagged, so the review queue is long), starts the real dashboard (``dashboard.launch``),
logs in once in headless Chromium and opens each page by its URL twice: *first* (the page's
queries run) and *again* (what a reviewer sees coming back: cached per filter). A page counts as
answered when Streamlit's script has finished (``stApp`` reports ``notRunning``) and the page's
title is shown, polled every 20 ms (the browser tests' 250 ms poll would add ~0.15 s on average
to every figure). The Overview opens on its numbers; its chart views are timed by their URLs
too (``overview?view=Latency``). Chromium and the server run on the same machine, which is
shared: figures are noisy, so each page is timed ``--repeat`` times and the median is printed
with the range.

    python -m benchmarks.dashboard_pages [--requests 100000] [--repeat 3] [--database FILE] [--pages a,b]
                                         [--baseline DIR]

``--baseline DIR`` serves another checkout of Warden (``git worktree add DIR main``) beside
this one on the same database and opens each page by URL on the two in turn, so both see the
same load: on a shared machine, runs minutes apart differ more than the versions do.

``--database FILE`` keeps the filled SQLite file (filled on the first run, reused and upgraded
to the current schema after), so a change to queries or indexes can be timed again without
waiting for the fill.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text
from websockets.sync.client import connect

from audit.db import make_engine, upgrade
from audit.record import Verdict
from audit.write.writer import AuditWriter
from dashboard.auth import UserError, add_user
from gateway.pipeline.session import new_request_id
from tests.audit_db import make_record
from tests.dashboard.test_dashboard_browser import BASE_FLAGS, CHROMIUM, Browser
from tests.gateway_harness import free_port, write_config

REPO = Path(__file__).resolve().parents[1]
PAGES = {
    "overview": "Overview",
    "overview?view=Volume": "Overview",
    "overview?view=Latency": "Overview",
    "overview?view=Tokens": "Overview",
    "requests": "Requests",
    "review": "Review queue",
    "quality": "Check quality",
    "policies": "Policies",
    "integrity": "Audit integrity",
    "live": "Live",
    "request": "Request detail",
}
PASSWORD = "bench-pass-1"  # noqa: S105 - a throwaway login in a temporary database
GOAL_S = 1.0
#: how often the page is asked whether it has answered, seconds
POLL_S = 0.02


def fill(url: str, n: int) -> str:
    """``n`` records through the writer, newest last; returns one blocked request's id."""
    upgrade(url)
    now = datetime.now(UTC)
    blocked = ""
    with tempfile.TemporaryDirectory() as spool:
        writer = AuditWriter(url, spool_dir=Path(spool), queue_size=10_000)
        writer.start()
        for i in range(n):
            r = make_record(i, request_id=new_request_id())
            r.started_at = now - timedelta(seconds=(n - i) * 80_000 / n)
            r.finished_at = r.started_at + timedelta(seconds=1)
            r.verdict = Verdict.block if i % 10 == 0 else Verdict.flag if i % 10 == 1 else Verdict.passed
            r.input_text = f"Request {i}: please email <EMAIL_ADDRESS> the quarterly numbers"
            if i % 10 == 0:
                blocked = r.request_id
            writer.submit(r)
        if not writer.flush(900):
            raise RuntimeError("the writer did not finish")
        writer.close()
    return blocked


def _a_blocked_request(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT request_id FROM audit_requests WHERE verdict = 'block' LIMIT 1")).scalar()
    finally:
        engine.dispose()
    if not isinstance(found, str):
        raise RuntimeError("the reused database has no blocked request")
    return found


@contextmanager
def dashboard(config: Path, repo: Path = REPO) -> Iterator[str]:
    """The dashboard of the checkout at ``repo``, serving ``config``."""
    port = free_port()
    code = f"import dashboard; dashboard.launch({str(config)!r}, {port}, '127.0.0.1')"
    env = {**os.environ, "PYTHONPATH": str(repo)}  # that checkout's packages, not the installed ones
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the dashboard did not come up")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def chromium(profile: Path) -> Iterator[Browser]:
    proc = subprocess.Popen(
        [CHROMIUM, *BASE_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,1700",
         "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().splitlines()[0]
        target = next(p for p in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if p.get("type") == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None) as ws:
            yield Browser(ws, itertools.count(1))  # type: ignore[arg-type]
    finally:
        proc.terminate()
        proc.wait(10)


DONE = (
    "(() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
    " return !!app && app.getAttribute('data-test-script-state') === 'notRunning'"
    " && !!document.querySelector('h1'); })()"
)


def _done(title: str) -> str:
    return (
        "(() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " const h = document.querySelector('h1');"
        " return !!app && app.getAttribute('data-test-script-state') === 'notRunning'"
        f" && !!h && h.innerText.trim() === {title!r}; }})()"
    )


def _wait(b: Browser, expression: str, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not b.js(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"page never showed {what}; it shows:\n{b.text()[:3000]}")
        time.sleep(POLL_S)


def open_page(b: Browser, url: str, title: str) -> float:
    """A full page load from the URL (a shared link, a reload)."""
    started = time.perf_counter()
    b.call("Page.navigate", url=url)
    time.sleep(0.05)  # let the old document go before polling the new one
    _wait(b, _done(title), url)
    return time.perf_counter() - started


def click_page(b: Browser, page: str, title: str) -> float:
    """Opening the page from the sidebar menu: the app stays loaded, only the page runs."""
    menu = "Integrity" if page == "integrity" else title
    link = f"[...document.querySelectorAll('a')].find(a => a.innerText.trim().split('\\n').pop() === {menu!r})"
    _wait(b, f"!!{link}", f"the menu link to {page}")
    started = time.perf_counter()
    b.js(f"{link}.click()")
    _wait(b, _done(title), page)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", type=Path, help="a SQLite file to fill once and reuse")
    parser.add_argument("--pages", help=f"comma-separated, of: {', '.join(PAGES)} (default: all)")
    parser.add_argument("--baseline", type=Path, help="another checkout to time side by side with this one")
    args = parser.parse_args()
    pages = {p: PAGES[p] for p in args.pages.split(",")} if args.pages else PAGES
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        db = args.database.resolve() if args.database else folder / "warden.db"
        url = f"sqlite:///{db}"
        shutil.copy(REPO / "policies" / "default.yaml", folder / "policy.yaml")
        config = write_config(folder, "http://127.0.0.1:9/v1", policy="policy.yaml", database_url=url,
                              extra="audit: {spool_dir: ./spool}\n")  # fmt: skip
        if db.exists():
            upgrade(url)
            blocked = _a_blocked_request(url)
            print(f"reusing {db}")
        else:
            t = time.perf_counter()
            blocked = fill(url, args.requests)
            print(f"filled {args.requests:,} requests in {time.perf_counter() - t:.1f} s")
        with suppress(UserError):  # a reused file has the user already
            add_user(url, "bench", "admin", PASSWORD)
        if args.baseline:
            side_by_side(config, folder / "profile", args.baseline.resolve(), pages, blocked, args.repeat)
        else:
            one_version(config, folder / "profile", pages, blocked, args.repeat)


def _login(b: Browser, server: str) -> None:
    b.call("Page.navigate", url=server)
    b.type_into('input[aria-label="User name"]', "bench")
    b.type_into('input[type="password"]', PASSWORD, enter=True)
    b.wait_for("document.body.innerText.includes('Logged in as')", "the login")


def _link(server: str, page: str, blocked: str) -> str:
    return f"{server}/{page}" + (f"?id={blocked}" if page == "request" else "")


def _cell(v: list[float]) -> str:
    return f"{statistics.median(v):>6.2f} ({min(v):.2f}-{max(v):.2f})" if v else f"{'-':>18}"


def one_version(config: Path, profile: Path, pages: dict[str, str], blocked: str, repeat: int) -> None:
    with dashboard(config) as server, chromium(profile) as b:
        _login(b, server)
        first: dict[str, list[float]] = {p: [] for p in pages}
        again: dict[str, list[float]] = {p: [] for p in pages}
        menu: dict[str, list[float]] = {p: [] for p in pages}
        for _ in range(repeat):
            for page, title in pages.items():
                first[page].append(open_page(b, _link(server, page, blocked), title))
                again[page].append(open_page(b, _link(server, page, blocked), title))
            open_page(b, f"{server}/integrity", "Audit integrity")
            for page, title in pages.items():
                if page != "integrity" and "?" not in page:
                    menu[page].append(click_page(b, page, title))
                    click_page(b, "integrity", "Audit integrity")
    print(f"\n{'page':<22} {'by URL (s)':>20} {'by URL again':>20} {'from the menu':>20}")
    for page in pages:
        print(f"{page:<22} {_cell(first[page]):>20} {_cell(again[page]):>20} {_cell(menu[page]):>20}")


def side_by_side(config: Path, profile: Path, baseline: Path, pages: dict[str, str], blocked: str, repeat: int) -> None:
    """Each page by URL, twice in a row, on the baseline and on this checkout in turn (which goes
    first alternates); the medians' ratio is this checkout's time over the baseline's."""
    times: dict[tuple[str, str], list[float]] = {}
    with dashboard(config, baseline) as base, dashboard(config) as this, chromium(profile) as b:
        # One login serves both: same database, same session key, and cookies ignore the port.
        _login(b, this)
        for round_ in range(repeat):
            for page, title in pages.items():
                arms = [("baseline", base), ("this", this)]
                for arm, server in arms if round_ % 2 == 0 else arms[::-1]:
                    for _ in range(2):
                        times.setdefault((page, arm), []).append(open_page(b, _link(server, page, blocked), title))
    print(f"\n{'page, by URL (s)':<22} {'baseline':>20} {'this checkout':>20} {'ratio':>6} {'under 1 s':>10}")
    for page in pages:
        t0, t1 = times[(page, "baseline")], times[(page, "this")]
        ratio = statistics.median(t1) / statistics.median(t0)
        under = sum(t < GOAL_S for t in t1)
        print(f"{page:<22} {_cell(t0):>20} {_cell(t1):>20} {ratio:>6.2f} {f'{under}/{len(t1)}':>10}")


if __name__ == "__main__":
    main()
