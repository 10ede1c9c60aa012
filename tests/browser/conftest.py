"""Fixtures for real-browser tests: a local Dash server and a headless Chromium driven by Playwright.

Usage in a test module under ``tests/browser``::

    pytestmark = pytest.mark.browser

    def test_something(live_server, page, screenshot_dir):
        url = live_server(make_my_dash_app())
        page.goto_dash(url)
        page.page.get_by_role("option", name="beta").click()
        page.page.screenshot(path=screenshot_dir / "something.png")
        page.assert_no_errors()

Chromium comes from Debian (``apt-get install chromium``); Playwright's own browser download is not used.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from dash import Dash
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHROMIUM = "/usr/bin/chromium"
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1400, 900
# Playwright adds its own default switches on top, among them --disable-dev-shm-usage and
# --user-data-dir=<fresh mkdtemp dir, deleted on close>; it refuses a --user-data-dir in ``args``.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
)
SERVER_START_TIMEOUT_S = 15.0

# True once the Dash renderer exists and has no callback requested, queued, executing or unapplied
# (the same check dash.testing uses: every list in store.callbacks except "stored"/"completed" empty).
_DASH_IDLE_JS = """() => {
    const state = window.store && window.store.getState();
    if (!state || !state.callbacks || state.isLoading) return false;
    const pending = Object.assign({}, state.callbacks);
    delete pending.stored;
    delete pending.completed;
    return Object.values(pending).every((queue) => queue.length === 0);
}"""

# Console errors that say nothing about the app under test.
IGNORED_ERROR_SUBSTRINGS: tuple[str, ...] = ("favicon.ico",)


# --------------------------------------------------------------------------- browser binary


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Path of the Chromium executable (``$REPGEOM_CHROMIUM``, default ``/usr/bin/chromium``).

    Skips the test when it is missing; fails instead when ``$CI`` is set.
    """
    path = os.environ.get("REPGEOM_CHROMIUM") or DEFAULT_CHROMIUM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide Chromium at {path} (apt-get install chromium, or set REPGEOM_CHROMIUM)")
        pytest.skip(f"Chromium not found at {path}; install Debian's chromium")
    return path


# --------------------------------------------------------------------------- local Dash server


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug request handler that logs only failed requests (status >= 400)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code).isdigit() and int(code) >= 400:
            super().log_request(code, size)


def _wait_until_serving(url: str, timeout_s: float) -> None:
    """Poll ``url`` until it answers HTTP 200 (no proxies), or raise ``RuntimeError``."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with opener.open(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"Dash server at {url} did not answer within {timeout_s:.0f}s: {last!r}")


@pytest.fixture
def live_server() -> Iterator[Callable[[Dash], str]]:
    """Factory: ``live_server(app)`` serves ``app.server`` on 127.0.0.1 and returns its base URL.

    Each call starts a threaded werkzeug server on a free port (port 0, so no race) in a daemon
    thread and waits until ``GET /`` answers 200. The URL ends with ``/``. All servers started by a
    test are shut down at its teardown.
    """
    started: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(app: Dash) -> str:
        server = make_server("127.0.0.1", 0, app.server, threaded=True, request_handler=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name=f"dash-{server.server_port}", daemon=True)
        thread.start()
        started.append((server, thread))
        url = f"http://127.0.0.1:{server.server_port}/"
        _wait_until_serving(url, SERVER_START_TIMEOUT_S)
        return url

    yield start

    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- Playwright


@pytest.fixture(scope="session")
def _playwright() -> Iterator[Playwright]:
    """The Playwright driver for the whole session (skips when not installed; fails in CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI must provide the playwright package (requirements-dev.txt)")
        pytest.skip("playwright not installed; pip install -r requirements-dev.txt")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(_playwright: Playwright, chromium_path: str) -> Iterator[Browser]:
    """One headless Chromium for the session, with the project's switches and a temporary profile."""
    browser = _playwright.chromium.launch(
        executable_path=chromium_path,
        headless=True,
        args=list(CHROMIUM_ARGS),
        timeout=60_000,
    )
    yield browser
    browser.close()


@dataclass
class BrowserPage:
    """A Playwright page plus every console error and uncaught page error seen so far.

    ``page``: the ``playwright.sync_api.Page`` (1400x900 viewport, fresh context per test).
    ``errors``: strings, one per console message of type ``error`` and per ``pageerror``;
    messages containing any of ``IGNORED_ERROR_SUBSTRINGS`` are left out.
    """

    page: Page
    errors: list[str] = field(default_factory=list)

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error" and not any(s in msg.text for s in IGNORED_ERROR_SUBSTRINGS):
            loc = msg.location
            where = f" ({loc.get('url')}:{loc.get('lineNumber')})" if loc and loc.get("url") else ""
            self.errors.append(f"console.error: {msg.text}{where}")

    def _on_pageerror(self, exc: Exception) -> None:
        self.errors.append(f"pageerror: {exc}")

    def goto_dash(self, url: str, timeout_ms: float = 30_000) -> None:
        """Open a Dash app; return once its layout is rendered and the initial callbacks are done."""
        self.page.goto(url)
        self.page.wait_for_selector("#react-entry-point > *", timeout=timeout_ms)
        self.page.wait_for_selector("._dash-loading", state="detached", timeout=timeout_ms)
        self.wait_for_dash_idle(timeout_ms)

    def wait_for_dash_idle(self, timeout_ms: float = 30_000) -> None:
        """Wait until Dash has no pending callbacks (Plotly may still be drawing: wait for selectors too)."""
        self.page.wait_for_function(_DASH_IDLE_JS, timeout=timeout_ms, polling=50)

    def assert_no_errors(self) -> None:
        """Fail with the full list if any console or page error was recorded."""
        assert not self.errors, "browser reported errors:\n" + "\n".join(self.errors)


@pytest.fixture
def page(browser: Browser) -> Iterator[BrowserPage]:
    """A fresh page (own context, 1400x900) that records console errors and page errors.

    Use ``page.page`` for the Playwright API, ``page.errors`` for the recorded errors,
    ``page.goto_dash(url)`` to open a Dash app, ``page.wait_for_dash_idle()`` after an interaction
    and ``page.assert_no_errors()`` at the end.
    """
    context = browser.new_context(viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT})
    context.set_default_timeout(15_000)
    wrapped = BrowserPage(page=context.new_page())
    wrapped.page.on("console", wrapped._on_console)
    wrapped.page.on("pageerror", wrapped._on_pageerror)
    yield wrapped
    context.close()


# --------------------------------------------------------------------------- artifacts


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """``artifacts/screenshots`` under the repo root (git-ignored), created if missing."""
    path = ROOT / "artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
