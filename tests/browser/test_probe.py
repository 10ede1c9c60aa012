"""The live probe in a real Chromium: a stroke drawn with the mouse lands in the embeddings, with the model's probabilities."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dash import Dash

from repgeom.figures.probe import PROBE_NAME
from repgeom.settings import Settings
from repgeom.ui import create_app

if TYPE_CHECKING:
    from .conftest import BrowserPage

pytestmark = pytest.mark.browser

TIMEOUT = 120_000  # ms: a cold cache on a busy 2-core machine

# Each star marker of the new image, as drawn: its box on the page and the box of the plot it is in.
_STARS_JS = """(name) => {
    const gd = document.querySelector('#probe-embed .js-plotly-plot');
    if (!gd || !gd.calcdata) return [];
    const plot = gd.getBoundingClientRect();
    return gd.calcdata.filter((cd) => cd[0].trace.name === name).map((cd) => {
        const group = cd[0].node3 && cd[0].node3.node();
        const point = group && group.querySelector('path.point');
        if (!point) return null;
        const r = point.getBoundingClientRect();
        const inside = r.x >= plot.x && r.right <= plot.right && r.y >= plot.y && r.bottom <= plot.bottom;
        return {x: r.x + r.width / 2, y: r.y + r.height / 2, w: r.width, inside: inside};
    });
}"""


@pytest.fixture(scope="module")
def dashboard(engine) -> Dash:
    return create_app(Settings(warm=False), engine=engine)


def test_a_stroke_drawn_with_the_mouse_lands_in_the_embeddings(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path, engine
) -> None:
    from playwright.sync_api import expect

    url = live_server(dashboard) + "?tab=probe&n_embed=10&embed_methods=pca,tsne&nodes=conv2,conv2_4"
    page.goto_dash(url, timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#probe-probs .js-plotly-plot")).to_contain_text("Draw a digit", timeout=TIMEOUT)
    assert page.page.evaluate(_STARS_JS, PROBE_NAME) == []

    canvas = page.page.locator("#probe-canvas")
    box = canvas.bounding_box()
    assert box is not None and box["width"] >= 200
    x = box["x"] + box["width"] * 0.5
    page.page.mouse.move(x, box["y"] + box["height"] * 0.15)
    page.page.mouse.down()
    for k in range(1, 21):  # a vertical stroke down the middle: a "1"
        page.page.mouse.move(x + k * 0.3, box["y"] + box["height"] * (0.15 + 0.035 * k))
    page.page.mouse.up()
    page.wait_for_dash_idle(TIMEOUT)

    expect(page.page.locator("#probe-probs .js-plotly-plot .gtitle")).to_contain_text("predicts", timeout=TIMEOUT)
    expect(page.page.locator("#probe-probs .js-plotly-plot .bars path")).to_have_count(engine.dataset.n_classes, timeout=TIMEOUT)
    title = page.page.locator("#probe-probs .js-plotly-plot .gtitle").text_content() or ""
    assert "predicts 1" in title, title
    page.page.wait_for_function(f"() => ({_STARS_JS})({PROBE_NAME!r}).length === 4", timeout=TIMEOUT)
    stars = page.page.evaluate(_STARS_JS, PROBE_NAME)
    assert len(stars) == 4 and all(s is not None and s["w"] > 5 and s["inside"] for s in stars), stars
    expect(page.page.locator("#probe-embed .js-plotly-plot")).to_contain_text("at the mean of its 5 nearest stimuli")
    expect(page.page.locator("#probe-embed .js-plotly-plot")).to_contain_text("projected onto the stimuli's principal axes")
    expect(page.page.locator("#probe-rows .js-plotly-plot .gtitle")).to_contain_text("dissimilarity to each stimulus")
    src = page.page.locator("#probe-seen").get_attribute("src") or ""
    assert src.startswith("data:image/png;base64,")
    page.page.screenshot(path=screenshot_dir / "probe_drawn.png", full_page=True)

    # clear: the panels go back to the hint and the stars are gone
    page.page.click("#probe-clear")
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#probe-probs .js-plotly-plot")).to_contain_text("Draw a digit", timeout=TIMEOUT)
    assert page.page.evaluate(_STARS_JS, PROBE_NAME) == []
    page.assert_no_errors()

