"""The dashboard in a real headless Chromium: load, switch model and node, hover, play the path, share a link."""

from __future__ import annotations

import re
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

TIMEOUT = 120_000  # ms: computing a view from a cold cache on a busy 2-core machine


@pytest.fixture(scope="module")
def dashboard(engine) -> Dash:
    return create_app(Settings(warm=False), engine=engine)


def _choose(page: BrowserPage, dropdown_id: str, option: str) -> None:
    page.page.click(f"#{dropdown_id}")
    # an option is named by its value, maybe followed by " · " and its description (the node selector)
    page.page.get_by_role("dialog").get_by_role("option", name=re.compile(rf"^{re.escape(option)}( ·|$)")).click()


def _heatmaps(page: BrowserPage, graph: str) -> int:
    return page.page.locator(f"#{graph} .js-plotly-plot .heatmaplayer image, #{graph} .js-plotly-plot .hm").count()


def _titles(page: BrowserPage, graph: str) -> list[str]:
    return page.page.locator(f"#{graph} .js-plotly-plot .annotation-text").all_text_contents()


def test_first_page_shows_the_seeds_rdms_then_model_switch(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    page.goto_dash(live_server(dashboard), timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    grid = page.page.locator("#rdm-grid .js-plotly-plot")
    expect(grid.locator(".gtitle")).to_contain_text("RDMs of recurrent", timeout=TIMEOUT)
    assert _titles(page, "rdm-grid")[:5] == ["conv2", "conv2_1", "conv2_2", "conv2_3", "conv2_4"]
    expect(page.page.locator("#rdm-slider .js-plotly-plot .slider-container")).to_have_count(1)
    page.page.screenshot(path=screenshot_dir / "rdms_default.png", full_page=True)

    expect(page.page.locator("#nodes-hint")).to_have_text("recurrent steps: conv2, conv2_1, conv2_2, conv2_3, conv2_4")

    # hover a heat-map cell: the inspector shows both stimulus images, captioned with their class
    box = grid.locator(".nsewdrag").first.bounding_box()
    assert box is not None
    page.page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.8)
    expect(page.page.locator("#hover-panel img.stimulus-image")).to_have_count(2, timeout=TIMEOUT)
    expect(page.page.locator("#hover-panel .caption").first).to_contain_text("class ")
    expect(page.page.locator("#hover-panel .hover-summary")).to_contain_text("correlation dissimilarity")

    # switch the model: the nodes reset to the feedforward layers and the RDMs follow
    _choose(page, "model", "feedforward")
    page.wait_for_dash_idle(TIMEOUT)
    expect(grid.locator(".gtitle")).to_contain_text("RDMs of feedforward", timeout=TIMEOUT)
    assert _titles(page, "rdm-grid")[:4] == ["conv1", "conv2", "fc1", "fc2"]
    assert "model=feedforward" in page.page.url
    expect(page.page.locator("#nodes-hint")).to_have_text("")  # a feedforward net has no recurrent steps

    # switch a node off: one panel fewer
    _choose(page, "nodes", "fc1")  # toggles fc1 off in the multi-select
    page.page.keyboard.press("Escape")
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#rdm-grid .js-plotly-plot .annotation-text").nth(2)).to_have_text("fc2", timeout=TIMEOUT)
    page.assert_no_errors()


def test_path_animation_plays_and_the_link_restores_the_view(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    base = live_server(dashboard)
    page.goto_dash(base + "?tab=paths&n_embed=10", timeout_ms=TIMEOUT)
    page.page.get_by_role("button", name="feedforward vs recurrent", exact=True).click()  # the manifest's preset
    page.wait_for_dash_idle(TIMEOUT)
    fig = page.page.locator("#path-graph .js-plotly-plot")
    expect(fig.locator(".legendtext")).to_contain_text(["feedforward", "recurrent", "input", "labels"], timeout=TIMEOUT)
    assert "path_models=feedforward%2Crecurrent" in page.page.url
    # play: the slider starts at the last step; after play it runs from the start again
    current = fig.locator(".slider-container .slider-label").first
    before = current.text_content()
    fig.locator(".updatemenu-button").first.click()
    page.page.wait_for_timeout(1500)
    assert current.text_content() != before
    page.page.screenshot(path=screenshot_dir / "path_ff_vs_rec.png", full_page=True)
    page.assert_no_errors()

    # a shared link rebuilds the same view in a fresh page
    shared = page.page.url
    page.page.goto(shared)
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#path-graph .js-plotly-plot .legendtext")).to_contain_text(["feedforward", "recurrent"], timeout=TIMEOUT)
    expect(page.page.locator("#tab .tab--selected, #tab [aria-selected='true']").first).to_contain_text("paths")
    page.assert_no_errors()


def test_embeddings_and_models_views(live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path) -> None:
    from playwright.sync_api import expect

    page.goto_dash(live_server(dashboard) + "?tab=embeddings&n_embed=12", timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    grid = page.page.locator("#embed-grid .js-plotly-plot")
    expect(grid.locator(".gtitle")).to_contain_text("Embeddings of recurrent", timeout=TIMEOUT)
    texts = grid.locator(".annotation-text").all_text_contents()
    assert {"PCA", "MDS", "t-SNE"} <= set(texts) and any("trust" in t and "stress" in t for t in texts)
    expect(page.page.locator("#embed-anim .js-plotly-plot .slider-container")).to_have_count(1)
    page.page.screenshot(path=screenshot_dir / "embeddings.png", full_page=True)

    page.page.locator("#tab").get_by_text("Models", exact=True).click()
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#models-table table")).to_contain_text("2,650", timeout=TIMEOUT)
    expect(page.page.locator("#metrics-graph .js-plotly-plot .gtitle")).to_contain_text("Geometry across nodes")
    page.page.screenshot(path=screenshot_dir / "models.png", full_page=True)
    page.assert_no_errors()


def test_out_of_range_input_shows_a_message(live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash) -> None:
    from playwright.sync_api import expect

    page.goto_dash(live_server(dashboard) + "?n_rdm=5", timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    box = page.page.locator("#n-rdm")
    box.fill("5000")
    box.press("Enter")
    expect(page.page.locator("#global-message")).to_contain_text("from 1 to 100", timeout=TIMEOUT)
    page.page.goto(page.page.url.split("?")[0] + "?model=alexnet")
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#global-message")).to_contain_text("unknown model 'alexnet'", timeout=TIMEOUT)
    expect(page.page.locator("#rdm-grid .js-plotly-plot .gtitle")).to_contain_text("RDMs of", timeout=TIMEOUT)


def test_long_embeddings_show_progress_and_can_be_cancelled(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    # 1,000 stimuli × 5 nodes × PCA, MDS, t-SNE: long enough to watch and to cancel
    page.page.goto(live_server(dashboard) + "?tab=embeddings&n_embed=100")  # not idle until the job ends
    page.page.wait_for_selector("#react-entry-point > *", timeout=TIMEOUT)
    busy = page.page.locator("#embed-busy")
    expect(busy).to_be_visible(timeout=TIMEOUT)
    expect(page.page.locator("#embed-progress-text")).to_contain_text("/15 · ", timeout=TIMEOUT)
    page.page.screenshot(path=screenshot_dir / "embeddings-progress.png", full_page=True)
    page.page.get_by_role("button", name="Cancel").click()
    expect(busy).to_be_hidden(timeout=10_000)
    page.page.wait_for_timeout(2_000)
    expect(page.page.locator("#embed-grid .gtitle")).to_have_count(0)  # the cancelled job never drew
    expect(page.page.locator("#embed-notice")).to_contain_text("Cancelled: the embeddings computation stopped")
    expect(page.page.locator("#embed-again")).to_be_visible()
    page.assert_no_errors()
