"""The live probe in a real Chromium: a stroke drawn with the mouse lands in the embeddings, with the model's probabilities."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from dash import Dash
from PIL import Image

from repgeom.figures.probe import PROBE_NAME
from repgeom.settings import Settings
from repgeom.ui import create_app

from .test_layout import _outside

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


# Whether the canvas holds any ink (a bright pixel).
_INK_JS = """() => {
    const c = document.getElementById('probe-canvas');
    if (!c) return false;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4) { if (d[i] > 128) return true; }
    return false;
}"""


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Dash:
    """The app as a server builds it (its own engine and shared store), so the embeddings job's results reach the probe."""
    return create_app(Settings(warm=False, cache_dir=str(tmp_path_factory.mktemp("probe-cache"))))


def test_a_stroke_drawn_with_the_mouse_lands_in_the_embeddings(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path, engine
) -> None:
    from playwright.sync_api import expect

    n_classes = engine.dataset.n_classes  # the same shipped models as the app's own engine
    url = live_server(dashboard) + "?tab=probe&n_embed=10&embed_methods=pca,tsne&nodes=conv2,conv2_4"
    page.goto_dash(url, timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#probe-probs .js-plotly-plot")).to_contain_text("Draw a digit", timeout=TIMEOUT)
    assert page.page.evaluate(_STARS_JS, PROBE_NAME) == []
    expect(page.page.locator("#probe-seen")).to_be_hidden()  # no image yet: no broken-image sign with its alt text

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

    title = page.page.locator("#probe-probs .js-plotly-plot .gtitle")
    expect(title).to_contain_text("predicts", timeout=TIMEOUT)
    expect(page.page.locator("#probe-probs .js-plotly-plot .bars path")).to_have_count(n_classes, timeout=TIMEOUT)
    assert "predicts 1" in (title.text_content() or ""), title.text_content()
    # PCA at once (two nodes, one star each); t-SNE waits for the embeddings tab, and the note says so
    page.page.wait_for_function(f"() => ({_STARS_JS})({PROBE_NAME!r}).length === 2", timeout=TIMEOUT)
    stars = page.page.evaluate(_STARS_JS, PROBE_NAME)
    assert all(s is not None and s["w"] > 5 and s["inside"] for s in stars), stars
    expect(page.page.locator("#probe-embed .js-plotly-plot")).to_contain_text("projected onto the stimuli's principal axes")
    expect(page.page.locator("#probe-note")).to_contain_text("t-SNE: not computed yet")
    expect(page.page.locator("#probe-rows .js-plotly-plot .gtitle")).to_contain_text("dissimilarity to each stimulus")
    src = page.page.locator("#probe-seen").get_attribute("src") or ""
    assert src.startswith("data:image/png;base64,")
    expect(page.page.locator("#probe-seen")).to_be_visible()

    # the embeddings tab computes t-SNE (its background job); back on the probe, the drawing is placed there too
    page.page.locator("#tab").get_by_text("Embeddings", exact=True).click()
    expect(page.page.locator("#embed-grid .js-plotly-plot .gtitle")).to_contain_text("Embeddings of recurrent", timeout=TIMEOUT)
    page.page.locator("#tab").get_by_text("Live probe", exact=True).click()
    page.wait_for_dash_idle(TIMEOUT)
    page.page.wait_for_function(f"() => ({_STARS_JS})({PROBE_NAME!r}).length === 4", timeout=TIMEOUT)
    stars = page.page.evaluate(_STARS_JS, PROBE_NAME)
    assert len(stars) == 4 and all(s is not None and s["w"] > 5 and s["inside"] for s in stars), stars
    expect(page.page.locator("#probe-embed .js-plotly-plot")).to_contain_text("at the mean of its 5 nearest stimuli")
    expect(page.page.locator("#probe-note")).not_to_contain_text("not computed yet")
    page.page.wait_for_function(_INK_JS, timeout=TIMEOUT)  # the re-created canvas shows the drawing again
    assert not _outside(page), f"probe_drawn: {_outside(page)[:3]}"
    page.page.screenshot(path=screenshot_dir / "probe_drawn.png", full_page=True)

    # clear: the panels go back to the hint and the stars are gone
    page.page.click("#probe-clear")
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#probe-probs .js-plotly-plot")).to_contain_text("Draw a digit", timeout=TIMEOUT)
    assert page.page.evaluate(_STARS_JS, PROBE_NAME) == []
    assert not page.page.evaluate(_INK_JS)

    # upload: a probe-set digit photographed as dark ink on white paper, 10× larger
    row = int(np.flatnonzero(engine.source.labels == 7)[0]) if engine.dataset.n_classes > 7 else 0
    label = engine.dataset.class_names[int(engine.source.labels[row])]
    sheet = Image.new("L", (360, 330), 255)
    sheet.paste(Image.fromarray(255 - engine.source.images[row, 0]).resize((280, 280), Image.BILINEAR), (50, 20))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    page.page.set_input_files("#probe-upload input[type=file]", files=[{"name": "digit.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    page.wait_for_dash_idle(TIMEOUT)
    expect(title).to_contain_text(f"predicts {label}", timeout=TIMEOUT)
    page.page.wait_for_function(f"() => ({_STARS_JS})({PROBE_NAME!r}).length === 4", timeout=TIMEOUT)
    page.assert_no_errors()

