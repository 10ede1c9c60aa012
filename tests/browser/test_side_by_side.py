"""Models side by side in Chromium: two models' RDM grids on one colour scale, and every model's per-node metrics in one plot.

What is checked is what Plotly drew: the heat maps' colour axis and the numbers it spans,
read from the plotted figure (``_fullLayout``, ``_fullData``), and the metric lines' models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dash import Dash

from repgeom.settings import Settings
from repgeom.ui import create_app, views
from repgeom.ui.state import View

from .test_layout import _BOXES_JS, _clashes, _outside

if TYPE_CHECKING:
    from .conftest import BrowserPage

pytestmark = pytest.mark.browser

TIMEOUT = 120_000  # ms: a busy 2-core machine
SIDE = "#side-graph .js-plotly-plot"
METRICS = "#metrics-graph .js-plotly-plot"

# Each heat map as Plotly drew it: its name, colour axis, and the smallest and largest value it holds;
# and each colour axis's range (cmin, cmax) with whether Plotly chose it itself (cauto).
_HEATMAPS_JS = """(sel) => {
    const gd = document.querySelector(sel);
    const values = (z) => {
        const out = [];
        for (const row of z) { for (const v of (typeof row === "number" ? [row] : row)) { if (Number.isFinite(v)) out.push(v); } }
        return out;
    };
    const maps = gd._fullData.filter((t) => t.type === "heatmap").map((t) => {
        const v = values(t.z);
        return {name: t.name, coloraxis: t.coloraxis || null, zmin: Math.min(...v), zmax: Math.max(...v),
                own: t.zmin === undefined ? null : [t.zmin, t.zmax]};
    });
    const axes = {};
    for (const key of Object.keys(gd._fullLayout)) {
        if (key.startsWith("coloraxis")) { const a = gd._fullLayout[key]; axes[key] = {cmin: a.cmin, cmax: a.cmax, cauto: a.cauto}; }
    }
    return {maps: maps, axes: axes, colorbars: gd.querySelectorAll(".colorbar").length};
}"""
_LINES_JS = """(sel) => document.querySelector(sel)._fullData.map((t) => ({name: t.name, type: t.type, n: t._length || 0, xaxis: t.xaxis}))"""


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Dash:
    return create_app(Settings(warm=False, device="cpu", cache_dir=str(tmp_path_factory.mktemp("side-cache"))))


def test_two_models_rdm_grids_share_one_colour_scale_and_the_metrics_plot_has_a_line_per_model(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path, engine
) -> None:
    from playwright.sync_api import expect

    query = "?tab=models&n_rdm=5&path_models=feedforward,recurrent"
    view = View.from_query(engine, query)
    models = views.side_models(engine, view)
    assert len(models) == 2  # the view's model and the other path model
    page.goto_dash(live_server(dashboard) + query, timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator(f"{SIDE} .gtitle")).to_contain_text(" vs ".join(models), timeout=TIMEOUT)
    expect(page.page.locator(f"{METRICS} .gtitle")).to_contain_text("Geometry across nodes", timeout=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)

    drawn = page.page.evaluate(_HEATMAPS_JS, SIDE)
    maps = drawn["maps"]
    by_model: dict[str, list[dict]] = {}
    for m in maps:
        by_model.setdefault(m["name"].split("/")[0], []).append(m)
    assert sorted(by_model) == sorted(models), [m["name"] for m in maps]
    for model in models:  # each model's whole grid: its nodes' panels
        assert len(by_model[model]) == len(views.side_nodes(engine, view, model)), model
    # one colour axis for every panel, its range fixed (not each panel's own) to the smallest and largest value over both models
    assert {m["coloraxis"] for m in maps} == {"coloraxis"} and all(m["own"] is None for m in maps)
    axis = drawn["axes"]["coloraxis"]
    assert axis["cauto"] is False
    lo, hi = min(m["zmin"] for m in maps), max(m["zmax"] for m in maps)
    assert axis["cmin"] == pytest.approx(lo, rel=1e-6) and axis["cmax"] == pytest.approx(hi, rel=1e-6)
    ranges = {model: (min(m["zmin"] for m in ms), max(m["zmax"] for m in ms)) for model, ms in by_model.items()}
    assert ranges[models[0]] != ranges[models[1]]  # the models differ, so a per-model scale would not be this one
    assert drawn["colorbars"] == 1  # one colour bar serves every panel

    # per-node metrics: every model of the dataset in one plot, a line per model in each of its two panels
    lines = [t for t in page.page.evaluate(_LINES_JS, METRICS) if t["type"] == "scatter"]
    expected = views.dataset_models(engine, view)
    assert len(expected) >= 2
    assert sorted({t["name"] for t in lines}) == sorted(expected)
    for panel in ("x", "x2"):
        assert sorted(t["name"] for t in lines if t["xaxis"] == panel) == sorted(expected), panel
    assert all(t["n"] > 1 for t in lines)  # a point per node
    expect(page.page.locator(f"{METRICS} .legendtext")).to_have_count(len(expected))

    # titles: a panel's node and the figure's title never run into each other, nor the rows' model names
    boxes = page.page.evaluate(_BOXES_JS, "#side-graph")
    assert len(boxes["annotations"]) >= sum(len(ms) for ms in by_model.values())
    assert not _clashes(boxes["annotations"]), f"titles overlap: {_clashes(boxes['annotations'])[:3]}"
    assert not _clashes(boxes["subplotaxistitles"]), f"axis titles overlap: {_clashes(boxes['subplotaxistitles'])[:3]}"

    page.page.locator("#side-graph").scroll_into_view_if_needed()
    page.page.screenshot(path=screenshot_dir / "side-by-side.png", full_page=True)
    page.assert_no_errors()


@pytest.mark.parametrize("size", [(1366, 768), (1100, 800)])
def test_the_models_tab_fits_its_window_with_four_models(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path, engine, size: tuple[int, int]
) -> None:
    from playwright.sync_api import expect

    query = "?tab=models&n_rdm=5&path_models=feedforward,recurrent,robust,feedforward_seed2"
    models = views.side_models(engine, View.from_query(engine, query))
    assert len(models) == 4
    page.page.set_viewport_size({"width": size[0], "height": size[1]})
    page.goto_dash(live_server(dashboard) + query, timeout_ms=TIMEOUT)
    expect(page.page.locator(f"{SIDE} .gtitle")).to_contain_text(" vs ".join(models), timeout=TIMEOUT)
    expect(page.page.locator("#models-table table")).to_contain_text("2,650", timeout=TIMEOUT)
    expect(page.page.locator(f"{METRICS} .gtitle")).to_contain_text("Geometry across nodes", timeout=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    table = page.page.evaluate("() => { const t = document.querySelector('#models-table .table-scroll'); return [t.scrollWidth, t.clientWidth]; }")
    outside = _outside(page)
    page.page.screenshot(path=screenshot_dir / f"models-tab-{size[0]}x{size[1]}.png", full_page=True)
    assert not outside, outside
    boxes = page.page.evaluate(_BOXES_JS, "#side-graph")  # the title's lines clear the panels' node titles
    assert not _clashes(boxes["annotations"]), f"titles overlap: {_clashes(boxes['annotations'])[:3]}"
    print(f"\nmodels tab at {size[0]}x{size[1]}: table {table[0]} px wide in a {table[1]} px box")
    page.assert_no_errors()
