"""Long views in a real Chromium: a path computed as a background job shows progress, can be cancelled, and computed again."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

    # Cancel at once: the job's process is still starting (it loads the models), so the job is
    # cancelled before it could finish however fast the machine is.
    busy.get_by_role("button", name="Cancel").click()
    expect(busy).to_be_hidden(timeout=30_000)
    notice = page.page.locator("#path-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Cancelled: the path computation stopped before it finished.")
    expect(page.page.locator("#path-graph .gtitle")).to_have_count(0)  # the cancelled job drew nothing
    page.page.screenshot(path=screenshot_dir / "path-cancelled.png", full_page=True)

    again = time.monotonic()
    notice.get_by_role("button", name="Compute again").click()
    expect(notice).to_be_hidden(timeout=15_000)
    expect(busy).to_be_visible(timeout=TIMEOUT)
    # Any step's text will do: which steps a 500 ms poll catches depends on the machine (a fast one
    # computes the features between two polls), but the path's seven steps take several polls.
    expect(text).to_have_text(re.compile(r"[1-7]/7 · \S"), timeout=TIMEOUT)
    progress_s = time.monotonic() - again
    page.page.screenshot(path=screenshot_dir / "path-progress.png", full_page=True)
    expect(page.page.locator("#path-graph .gtitle")).to_contain_text("path", timeout=TIMEOUT)
    computed_s = time.monotonic() - again
    expect(busy).to_be_hidden(timeout=15_000)
    expect(page.page.locator("#survive-graph .js-plotly-plot")).to_have_count(1)
    page.page.screenshot(path=screenshot_dir / "path-computed-again.png", full_page=True)
    page.wait_for_dash_idle(TIMEOUT)
    page.assert_no_errors()
    print(f"\npath job: progress panel after {shown_s:.1f} s; computed again: first progress text after {progress_s:.1f} s, "
          f"the path after {computed_s:.1f} s")


def test_a_download_too_large_is_refused_with_the_command_line_and_a_small_one_arrives_after_its_progress(
    live_server: Callable[[Dash], str], page: BrowserPage, engine, tmp_path, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    app = create_app(Settings(warm=False, cache_dir=str(tmp_path), max_answer_bytes=4 << 20), engine=engine)
    try:
        base = live_server(app)
        page.goto_dash(base + "?n_rdm=60", timeout_ms=TIMEOUT)
        button = page.page.get_by_role("button", name="Download this view (.npz)")
        button.click()
        message = page.page.locator("#download-message")
        expect(message).to_contain_text("above the server's 4 MiB limit", timeout=30_000)
        expect(message).to_contain_text("python -m repgeom export --out repgeom-recurrent-60pc-clean.npz --models recurrent")
        page.page.screenshot(path=screenshot_dir / "download-refused.png", full_page=True)

        page.goto_dash(base + "?n_rdm=3", timeout_ms=TIMEOUT)
        started = time.monotonic()
        with page.page.expect_download(timeout=TIMEOUT) as arrived:
            button.click()
            expect(page.page.locator("#download-busy")).to_be_visible(timeout=30_000)
            busy_s = time.monotonic() - started
        download = arrived.value
        took_s = time.monotonic() - started
        assert download.suggested_filename == "repgeom-recurrent-3pc-clean.npz"
        import numpy as np

        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        assert np.load(saved)["rdm/recurrent/conv2"].shape == (30, 30)
        expect(page.page.locator("#download-busy")).to_be_hidden(timeout=15_000)
        expect(message).to_have_text("")
        page.assert_no_errors()
        print(f"\ndownload job: progress panel after {busy_s:.1f} s, file after {took_s:.1f} s")
    finally:
        app.server.extensions["repgeom.background"].manager.close()


def test_a_large_rdm_grid_is_a_job_with_progress_node_by_node(
    live_server: Callable[[Dash], str], page: BrowserPage, jobs_app: Dash, engine, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    nodes = [n for n in engine.nodes("recurrent") if n != "input"][:8]  # 8 RDMs of 1,000 stimuli: above the gate's direct bound
    steps: list[tuple[str, str, str]] = []  # (value, max, text) of every progress update the page was sent

    def progress_of(response: Any) -> None:
        if "_dash-update-component" not in response.url:
            return
        try:
            sent = response.json().get("progress") or {}
        except Exception:  # noqa: BLE001 - a response the page navigated away from has no body
            return
        if "rdm-progress-text.children" in sent:
            steps.append((sent["rdm-progress.value"], sent["rdm-progress.max"], sent["rdm-progress-text.children"]))

    page.page.on("response", progress_of)
    started = time.monotonic()
    page.page.goto(live_server(jobs_app) + f"?n_rdm=100&nodes={','.join(nodes)}")
    busy = page.page.locator("#rdm-busy")
    expect(busy).to_be_visible(timeout=TIMEOUT)
    shown_s = time.monotonic() - started
    page.page.screenshot(path=screenshot_dir / "rdm-progress.png")
    expect(page.page.locator("#rdm-grid .js-plotly-plot .gtitle")).to_contain_text("100 per class", timeout=TIMEOUT)
    drawn_s = time.monotonic() - started
    expect(busy).to_be_hidden(timeout=15_000)
    page.wait_for_dash_idle(TIMEOUT)
    page.assert_no_errors()
    # Which steps a 500 ms poll catches depends on the machine (once the job's process has
    # started, a fast one computes all eight RDMs between two polls), but the page is sent
    # at least the last step before the figures, and every step it is sent is one of the nine.
    assert steps, "no progress update reached the page before the grid"
    allowed = {"drawing", f"features of {len(nodes)} nodes", *(f"RDM of {n}" for n in nodes)}
    for value, top, text in steps:
        assert top == "9" and 0 <= int(value) <= 9 and text.split(" · ")[-1] in allowed, (value, top, text)
        assert text == "drawing" if value == "9" else text.startswith(f"{value}/9 · "), text
    print(f"\nRDM job: progress panel after {shown_s:.1f} s, grid drawn after {drawn_s:.1f} s; steps the page was sent: {[t for _, _, t in steps]}")
