"""The first view in a real Chromium: compressed and within a byte budget; the time to draw it is reported.

The default views are computed first (as the server's start-up warm-up does), so what is
measured is what a visitor waits for: the page, its scripts, the layout and the first
callbacks, over HTTP on loopback.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dash import Dash

from repgeom.settings import Settings
from repgeom.ui import create_app, views
from repgeom.ui.state import View

if TYPE_CHECKING:
    from .conftest import BrowserPage

pytestmark = pytest.mark.browser

#: Bytes on the wire for the whole first view (page, scripts, styles, layout, callbacks).
FIRST_LOAD_BUDGET = 2_000_000
#: Bytes on the wire for the RDM tab's figures (the first figures a visitor sees).
FIGURES_BUDGET = 1_000_000


def test_the_first_view_is_compressed_within_its_byte_budget(
    live_server: Callable[[Dash], str], page: BrowserPage, engine, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    app = create_app(Settings(warm=False), engine=engine)
    views.rdm_views(engine, View.default(engine), [])  # what the start-up warm-up computes first
    url = live_server(app)
    responses = []
    page.page.on("response", lambda r: responses.append(r))
    started, started_epoch = time.monotonic(), time.time()
    page.page.goto(url)
    expect(page.page.locator("#rdm-grid .js-plotly-plot .gtitle")).to_contain_text("RDMs of", timeout=60_000)
    expect(page.page.locator("#rdm-slider .js-plotly-plot .slider-container")).to_have_count(1, timeout=60_000)
    drawn_s = time.monotonic() - started
    page.wait_for_dash_idle(60_000)
    page.page.screenshot(path=screenshot_dir / "first-view.png")

    rows = []
    for r in responses:
        sizes = r.request.sizes()
        body = r.body() if r.status == 200 else b""
        timing = r.request.timing
        rows.append((r.url.replace(url, "/"), r.status, r.headers.get("content-encoding", ""), sizes["responseBodySize"], len(body), body,
                     round(timing["startTime"] / 1000 - started_epoch, 2), round(timing["responseEnd"] / 1000, 2)))
    # The page draws with the cartesian bundle from assets/; the full plotly.min.js (4.8 MB) is never fetched.
    assert any("/assets/plotly-cartesian.min.js" in r[0] for r in rows)
    assert not any("plotly.min.js" in r[0] and "cartesian" not in r[0] for r in rows), [r[0] for r in rows if "plotly" in r[0]]
    from plotly.offline import get_plotlyjs_version

    assert page.page.evaluate("window.Plotly.version") == get_plotlyjs_version()
    sent, unpacked = sum(r[3] for r in rows), sum(r[4] for r in rows)
    big = [r for r in rows if r[4] > 4096]
    assert big and all(r[2] in ("br", "gzip", "zstd") for r in big), [(r[0], r[2]) for r in big if r[2] not in ("br", "gzip", "zstd")]
    figures = [r for r in rows if "_dash-update-component" in r[0] and b'"rdm-grid":{"figure"' in r[5]]
    assert len(figures) == 1, [r[0] for r in rows]
    figure_bytes = figures[0][3]
    report = {
        "first_view_s": round(drawn_s, 2), "sent_bytes": sent, "uncompressed_bytes": unpacked,
        "rdm_figures_sent_bytes": figure_bytes, "rdm_figures_uncompressed_bytes": figures[0][4],
        "requests": [(r[0][:60], r[2], r[3], r[4], r[6], r[7]) for r in rows if r[4] > 4096],
    }
    report["load_per_core"] = round(os.getloadavg()[0] / len(os.sched_getaffinity(0)), 2)
    # The time is reported, not asserted: speed is measured by the benchmarks, and a shared
    # CI machine's load would decide a timed assertion. The bytes are the budget.
    print("\nfirst view:", json.dumps(report))
    assert figure_bytes <= FIGURES_BUDGET, report
    assert sent <= FIRST_LOAD_BUDGET, report
    page.assert_no_errors()
