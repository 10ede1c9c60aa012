"""Explanations and the smaller defects of issue 13, in a real Chromium: the ⓘ notes, the glossary, the toolbar."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dash import Dash

from repgeom.settings import Settings
from repgeom.ui import create_app
from repgeom.ui.explanations import FIGURE_NOTES

if TYPE_CHECKING:
    from .conftest import BrowserPage

pytestmark = pytest.mark.browser

TIMEOUT = 120_000  # ms: computing a view from a cold cache on a busy 2-core machine


@pytest.fixture(scope="module")
def dashboard(engine) -> Dash:
    return create_app(Settings(warm=False), engine=engine)


def test_an_info_note_opens_beside_its_figure_and_the_glossary_tab_explains_the_terms(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    page.goto_dash(live_server(dashboard) + "?n_rdm=5", timeout_ms=TIMEOUT)
    note = page.page.locator("#rdm-grid").locator("xpath=ancestor::div[contains(@class, 'figure-block')]").locator("details.figure-note")
    body = note.locator("dl")
    expect(body).to_be_hidden()  # closed until asked
    note.locator("summary").click()
    expect(body).to_be_visible()
    expect(body).to_contain_text(FIGURE_NOTES["rdm-grid"].careful[:60])
    expect(body).to_contain_text("How to read it")
    page.page.screenshot(path=screenshot_dir / "explain_rdm_note.png", full_page=True)
    note.locator("summary").click()
    expect(body).to_be_hidden()

    # the node selector says what each node is
    page.page.click("#nodes")
    option = page.page.get_by_role("dialog").get_by_role("option", name="add_3", exact=False).first
    expect(option).to_contain_text("step 4: input drive + recurrent drive")
    page.page.screenshot(path=screenshot_dir / "explain_node_selector.png")
    page.page.keyboard.press("Escape")

    page.page.locator("#tab").get_by_text("Glossary", exact=True).click()
    glossary = page.page.locator(".glossary")
    expect(glossary).to_be_visible()
    expect(glossary).to_contain_text("trustworthiness")
    expect(glossary).to_contain_text("Kruskal stress-1")
    assert "tab=glossary" in page.page.url
    page.page.screenshot(path=screenshot_dir / "explain_glossary.png", full_page=True)
    page.assert_no_errors()


def test_the_image_format_switch_acts_at_once_and_downloads_are_named_after_the_view(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash
) -> None:
    from playwright.sync_api import expect

    page.goto_dash(live_server(dashboard) + "?n_rdm=5", timeout_ms=TIMEOUT)
    plot = page.page.locator("#rdm-grid .js-plotly-plot")
    expect(plot.locator(".gtitle")).to_contain_text("RDMs of recurrent", timeout=TIMEOUT)
    plot.hover()
    titles = plot.locator(".modebar-btn").evaluate_all("bs => bs.map(b => b.getAttribute('data-title'))")
    assert titles and not any("Share" in t or "Cloud" in t or "Chart Studio" in t for t in titles), titles

    with page.page.expect_download() as first:
        plot.locator(".modebar-btn[data-title^='Download plot']").click()
    assert first.value.suggested_filename == "repgeom_rdms_recurrent_conv2-to-conv2_4-5nodes_correlation.png"

    page.page.locator("#image-format").get_by_text("SVG").click()  # no figure is redrawn by this
    page.wait_for_dash_idle(TIMEOUT)
    plot.hover()
    expect(plot.locator(".modebar-btn[data-title='Download plot as a SVG']")).to_have_count(1)
    with page.page.expect_download() as second:
        plot.locator(".modebar-btn[data-title^='Download plot']").click()
    assert second.value.suggested_filename == "repgeom_rdms_recurrent_conv2-to-conv2_4-5nodes_correlation.svg"
    page.assert_no_errors()


def test_the_smaller_controls_behave(live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, engine) -> None:
    from playwright.sync_api import expect

    from repgeom.ui.state import per_class_limit

    limit = per_class_limit(engine, engine.defaults.model)
    page.goto_dash(live_server(dashboard) + "?n_rdm=5", timeout_ms=TIMEOUT)
    # one image more than the dataset has: the message names the range and the box shows the value used
    box = page.page.locator("#n-rdm")
    box.fill(str(limit + 1))
    box.press("Enter")
    expect(page.page.locator("#global-message")).to_contain_text(f"from 1 to {limit}; got {limit + 1}, using {limit}", timeout=TIMEOUT)
    expect(box).to_have_value(str(limit))
    assert "None" not in page.page.locator("#global-message").inner_text()
    box.fill("3")
    box.press("Enter")
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#global-message")).to_have_text("")

    # the FGSM controls are off under "clean" and on under "FGSM"
    attack = page.page.locator("#attack-model")
    epsilon = page.page.locator("#epsilon .dash-slider-root")
    expect(attack).to_be_disabled()
    expect(epsilon).to_have_attribute("aria-disabled", "true")
    page.page.locator("#condition").get_by_text("FGSM").click()
    page.wait_for_dash_idle(TIMEOUT)
    expect(attack).to_be_enabled()
    expect(epsilon).not_to_have_attribute("aria-disabled", "true")
    page.page.locator("#condition").get_by_text("clean").click()
    expect(attack).to_be_disabled()

    # the recurrent steps hint shows for the recurrent model only
    expect(page.page.locator("#nodes-hint")).to_be_visible()
    page.page.goto(page.page.url.split("?")[0] + "?model=feedforward")
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#nodes-hint")).to_be_hidden()
    page.assert_no_errors()


def test_the_selected_pair_is_kept_in_the_link_and_restored_from_it(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, engine, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    stim = engine.stimuli(engine.spec(5))
    a, b = int(stim.indices[0]), int(stim.indices[-1])
    base = live_server(dashboard)
    page.goto_dash(base + f"?n_rdm=5&pair={a}%2C{b}", timeout_ms=TIMEOUT)
    title = page.page.locator("#pair-graph .js-plotly-plot .gtitle")
    expect(title).to_contain_text(f"stimulus {a} ", timeout=TIMEOUT)
    expect(title).to_contain_text(f"vs {b} ")

    # click another RDM cell: the link follows the new pair
    grid = page.page.locator("#rdm-grid .js-plotly-plot")
    box = grid.locator(".nsewdrag").first.bounding_box()
    assert box is not None
    page.page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.7)
    page.wait_for_dash_idle(TIMEOUT)
    expect(title).not_to_contain_text(f"stimulus {a} vs {b}", timeout=TIMEOUT)
    page.page.wait_for_function("() => /pair=\\d+%2C\\d+/.test(location.search)", timeout=TIMEOUT)
    shared = page.page.url
    assert f"pair={a}%2C{b}" not in shared and "n_rdm=5" in shared
    chosen = title.text_content()

    # the link opened in a fresh page shows the same pair
    page.page.goto(shared)
    page.wait_for_dash_idle(TIMEOUT)
    expect(title).to_have_text(chosen, timeout=TIMEOUT)
    page.page.screenshot(path=screenshot_dir / "explain_pair_from_link.png", full_page=True)

    # clearing the selection takes the pair out of the link
    page.page.locator("#clear-selection").click()
    page.page.wait_for_function("() => !location.search.includes('pair=')", timeout=TIMEOUT)
    page.assert_no_errors()
