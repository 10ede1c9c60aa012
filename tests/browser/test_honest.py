"""In a real Chromium: the path tab's landmarks, hypothesis editor, bootstrap and side-by-side view,
the difference RDM, paths over training, and a Fashion-MNIST model whose legend names its classes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dash import Dash

from repgeom.settings import Settings
from repgeom.ui import create_app

from .test_layout import _outside

if TYPE_CHECKING:
    from .conftest import BrowserPage

pytestmark = pytest.mark.browser

TIMEOUT = 180_000  # ms: a cold path with its bootstrap on a busy 2-core machine


@pytest.fixture(scope="module")
def dashboard(engine) -> Dash:
    return create_app(Settings(warm=False), engine=engine)


def test_path_with_landmarks_a_hypothesis_bootstrap_and_side_by_side(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    url = live_server(dashboard) + "?tab=paths&n_embed=10&path_models=feedforward,recurrent&landmarks=noise,shuffled"
    t0 = time.perf_counter()
    page.goto_dash(url, timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    fig = page.page.locator("#path-graph .js-plotly-plot")
    expect(fig.locator(".legendtext")).to_contain_text(["feedforward", "recurrent", "input", "noise", "shuffled", "labels"], timeout=TIMEOUT)
    print(f"\npath tab with bootstrap, first paint: {time.perf_counter() - t0:.1f} s")
    expect(fig.locator(".gtitle")).to_contain_text("cosine angle (rad)")
    expect(fig.locator(".gtitle")).to_contain_text("Kruskal stress-1")
    expect(fig.locator(".gtitle")).to_contain_text("bootstrap samples")
    expect(page.page.locator("#path-note")).to_contain_text("20 bootstrap samples")
    expect(page.page.locator("#path-note")).to_contain_text("feedforward_seed2")
    labels = page.page.locator("#path-labels-graph .js-plotly-plot")
    expect(labels.locator(".legendtext")).to_contain_text(["feedforward ± seed variability"], timeout=TIMEOUT)
    expect(page.page.locator("#survive-graph .js-plotly-plot .gtitle")).to_contain_text("Do the conclusions survive?", timeout=TIMEOUT)
    expect(page.page.locator("#path-shepard-graph .js-plotly-plot .gtitle")).to_contain_text("Shepard diagram")

    # add a class-group hypothesis through the editor: it becomes a landmark of the path
    page.page.locator("#hypothesis-name").fill("odd")
    page.page.locator("#hypothesis-groups").fill("1,3,5,7,9 | 0,2,4,6,8")
    page.page.locator("#hypothesis-add").click()
    page.wait_for_dash_idle(TIMEOUT)
    expect(fig.locator(".legendtext")).to_contain_text(["group:odd"], timeout=TIMEOUT)
    assert "hypotheses=odd" in page.page.url
    # a group naming no class of the dataset is refused by the server with what is allowed
    page.page.locator("#hypothesis-name").fill("pants")
    page.page.locator("#hypothesis-groups").fill("Trouser | 1")
    page.page.locator("#hypothesis-add").click()
    expect(page.page.locator("#global-message")).to_contain_text("unknown class 'Trouser'", timeout=TIMEOUT)

    # another comparison, its definition written beside it
    choice = page.page.locator("#compare label").filter(has_text="whitened-correlation angle")
    expect(choice).to_contain_text("mean-removed, doubly centred")
    choice.click()
    page.wait_for_dash_idle(TIMEOUT)
    expect(fig.locator(".gtitle")).to_contain_text("whitened-correlation angle (rad)", timeout=TIMEOUT)
    assert not _outside(page), f"path_landmarks_bootstrap: {_outside(page)[:3]}"
    page.page.screenshot(path=screenshot_dir / "path_landmarks_bootstrap.png", full_page=True)

    # what the camera button saves (Plotly.toImage, here as SVG) carries the titles
    svg = page.page.evaluate(
        """async () => {
            const gd = document.querySelector('#path-graph .js-plotly-plot');
            const url = await Plotly.toImage(gd, {format: 'svg', width: 1400, height: 700});
            return decodeURIComponent(url.slice(url.indexOf(',') + 1));
        }"""
    )
    for words in ("Representational path", "whitened-correlation angle (rad)", "Kruskal stress-1", "squared Euclidean distance / D"):
        assert words in svg, words
    page.assert_no_errors()


def test_difference_rdm_and_paths_over_training(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    base = live_server(dashboard)
    page.goto_dash(base + "?model=feedforward&n_rdm=5&diff_a=feedforward%2Ffc1&diff_b=feedforward_seed2%2Ffc1", timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    diff = page.page.locator("#diff-graph .js-plotly-plot")
    expect(diff.locator(".gtitle")).to_contain_text("A = feedforward/fc1 minus B = feedforward_seed2/fc1", timeout=TIMEOUT)
    expect(diff.locator(".gtitle")).to_contain_text("bootstrap samples")
    expect(diff.locator(".colorbar")).to_have_count(1)
    page.page.locator("#diff-graph").scroll_into_view_if_needed()
    assert not _outside(page), f"difference_rdm: {_outside(page)[:3]}"
    page.page.screenshot(path=screenshot_dir / "difference_rdm.png", full_page=True)

    page.page.goto(base + "?tab=paths&n_embed=5&path_mode=training")
    page.wait_for_dash_idle(TIMEOUT)
    fig = page.page.locator("#path-graph .js-plotly-plot")
    expect(fig.locator(".gtitle")).to_contain_text("Paths over training · recurrent, epoch 10", timeout=TIMEOUT)
    expect(fig.locator(".legendtext")).to_contain_text(["epoch 0", "epoch 10"])
    current = fig.locator(".slider-container .slider-label").first
    before = current.text_content()
    fig.locator(".updatemenu-button").first.click()
    page.page.wait_for_timeout(1500)
    assert current.text_content() != before
    assert not _outside(page), f"path_over_training: {_outside(page)[:3]}"
    page.page.screenshot(path=screenshot_dir / "path_over_training.png", full_page=True)
    page.assert_no_errors()


def test_a_fashion_mnist_model_shows_its_class_names(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, engine, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    fashion = [m for m in engine.model_ids if engine.dataset_of(m).id == "fashion-mnist"]
    if not fashion:
        message = "no Fashion-MNIST model in models/manifest.json"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    page.goto_dash(live_server(dashboard) + "?tab=embeddings&n_embed=5&embed_methods=pca", timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    page.page.click("#model")
    dialog = page.page.get_by_role("dialog")
    expect(dialog.get_by_role("option", name="— Fashion-MNIST —")).to_be_visible()
    dialog.get_by_role("option", name=fashion[0], exact=True).click()
    page.wait_for_dash_idle(TIMEOUT)
    grid = page.page.locator("#embed-grid .js-plotly-plot")
    expect(grid.locator(".gtitle")).to_contain_text(f"Embeddings of {fashion[0]}", timeout=TIMEOUT)
    expect(grid.locator(".legendtext")).to_contain_text(["T-shirt/top", "Trouser", "Ankle boot"], timeout=TIMEOUT)
    assert f"model={fashion[0]}" in page.page.url
    page.page.screenshot(path=screenshot_dir / "fashion_mnist_embeddings.png", full_page=True)

    # a path mixing the two datasets is refused with the engine's message
    page.page.goto(page.page.url.replace("tab=embeddings", "tab=paths") + "&path_models=recurrent," + fashion[0])
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#path-message")).to_contain_text("different datasets", timeout=TIMEOUT)
    page.assert_no_errors()
