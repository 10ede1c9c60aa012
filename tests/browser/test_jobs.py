"""Long views in a real Chromium: a path computed as a background job shows progress, can be cancelled, and computed again."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dash import Dash

from repgeom.settings import Settings
from repgeom.ui import create_app

if TYPE_CHECKING:
    from .conftest import BrowserPage

pytestmark = pytest.mark.browser

TIMEOUT = 180_000  # ms: a job process starts (it loads the models) and computes on a busy 2-core machine


@pytest.fixture
def jobs_app(engine, tmp_path):
    """An app whose job results are kept in a folder of this test's own (nothing stored from an earlier run)."""
    app = create_app(Settings(warm=False, cache_dir=str(tmp_path)), engine=engine)
    yield app
    app.server.extensions["repgeom.background"].manager.close()


def test_a_path_shows_progress_can_be_cancelled_and_computed_again(
    live_server: Callable[[Dash], str], page: BrowserPage, jobs_app: Dash, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    url = live_server(jobs_app) + "?tab=paths&n_embed=30&path_models=feedforward,recurrent"
    started = time.monotonic()
    page.page.goto(url)  # not idle until the job ends
    busy, text = page.page.locator("#path-busy"), page.page.locator("#path-progress-text")
    expect(busy).to_be_visible(timeout=TIMEOUT)
    shown_s = time.monotonic() - started
    expect(text).to_contain_text("· features of feedforward", timeout=TIMEOUT)
    progress_s = time.monotonic() - started
    page.page.screenshot(path=screenshot_dir / "path-progress.png", full_page=True)

    busy.get_by_role("button", name="Cancel").click()
    expect(busy).to_be_hidden(timeout=15_000)
    notice = page.page.locator("#path-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Cancelled: the path computation stopped before it finished.")
    expect(page.page.locator("#path-graph .gtitle")).to_have_count(0)  # the cancelled job drew nothing
    page.page.screenshot(path=screenshot_dir / "path-cancelled.png", full_page=True)

    again = time.monotonic()
    notice.get_by_role("button", name="Compute again").click()
    expect(notice).to_be_hidden(timeout=15_000)
    expect(busy).to_be_visible(timeout=TIMEOUT)
    expect(page.page.locator("#path-graph .gtitle")).to_contain_text("path", timeout=TIMEOUT)
    computed_s = time.monotonic() - again
    expect(busy).to_be_hidden(timeout=15_000)
    expect(page.page.locator("#survive-graph .js-plotly-plot")).to_have_count(1)
    page.page.screenshot(path=screenshot_dir / "path-computed-again.png", full_page=True)
    page.wait_for_dash_idle(TIMEOUT)
    page.assert_no_errors()
    print(f"\npath job: progress panel after {shown_s:.1f} s, first progress text after {progress_s:.1f} s; "
          f"computed again in {computed_s:.1f} s")
