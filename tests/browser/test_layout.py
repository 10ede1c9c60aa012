"""Layouts that scale, the path animation and presentation mode, measured in a real Chromium.

Every check reads the boxes Chromium drew (panels, titles, colour bars, buttons, sliders)
and fails on any overlap; screenshots land in ``artifacts/screenshots/layout-*.png``.
"""

from __future__ import annotations

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

TIMEOUT = 180_000  # ms: a cold cache on a busy 2-core machine
VIEWPORTS = {"1366x768": (1366, 768), "1920x1080": (1920, 1080)}
#: The smallest side a grid panel may have, in CSS pixels.
MIN_PANEL_PX = 180
#: Columns of a grid of every node, by window: the main column holds three readable panels at 1366 px, four at 1920 px.
GRID_COLS = {"1366x768": 3, "1920x1080": 4}

# Boxes (x, y, width, height) of what a Plotly graph drew: each subplot's plot area, each
# annotation (subplot titles, row labels) and the figure's title, the colour bars and the legend (with its
# visible and full heights: Plotly scrolls a legend whose items do not fit).
_BOXES_JS = """(sel) => {
    const gd = document.querySelector(sel + ' .js-plotly-plot');
    if (!gd) return null;
    const box = (el) => { const r = el.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; };
    const texts = (q) => Array.from(gd.querySelectorAll(q)).filter((el) => el.textContent.trim() !== '');
    const legend = gd._fullLayout.legend;
    return {
        panels: Array.from(gd.querySelectorAll('.nsewdrag')).map(box).filter((b) => b[2] > 1 && b[3] > 1),
        visiblePanels: Object.keys(gd._fullLayout._plots).filter((k) => {
            const p = gd._fullLayout._plots[k];
            return p.xaxis.visible !== false || (gd._fullData.some((t) => (t.xaxis || 'x') === p.xaxis._id && (t.yaxis || 'y') === p.yaxis._id));
        }).map((k) => {
            const p = gd._fullLayout._plots[k];
            const r = gd.getBoundingClientRect();
            return [r.x + p.xaxis._offset, r.y + p.yaxis._offset, p.xaxis._length, p.yaxis._length];
        }),
        annotations: texts('.annotation, .g-gtitle').map(box),
        ytick: texts('.ytick text').map(box),
        yticksizes: texts('.ytick text').map((el) => parseFloat(getComputedStyle(el).fontSize)),
        colorbars: Array.from(gd.querySelectorAll('.colorbar')).map(box),
        axistitles: Array.from(gd.querySelectorAll('.g-xtitle, .g-ytitle, .g-x2title, .g-y2title')).filter((el) => el.textContent.trim()).map(box),
        subplotaxistitles: Array.from(gd.querySelectorAll('.infolayer g')).filter((el) => /^g-[xy]\\d*title$/.test(el.getAttribute('class') || ''))
            .filter((el) => el.textContent.trim()).map(box),
        buttons: Array.from(gd.querySelectorAll('.updatemenu-button')).map(box),
        sliders: Array.from(gd.querySelectorAll('.slider-group')).map(box),
        legend: legend && legend._height ? { box: box(gd.querySelector('.legend')), full: legend._height, shown: legend._effHeight } : null,
    };
}"""


# Every text Plotly drew in the graphs under ``sel`` that pokes out of its graph's box, and
# every element of the tab that reaches past the tab's right edge (what a narrow window clips).
_OUTSIDE_JS = """(sel) => {
    const root = document.querySelector(sel);
    const edge = root.getBoundingClientRect().right;
    const out = [];
    const at = (r) => [r.left, r.right, r.top].map(Math.round);
    for (const gd of root.querySelectorAll('.js-plotly-plot')) {
        const g = gd.getBoundingClientRect();
        for (const el of gd.querySelectorAll('.g-gtitle text, .annotation-text, .xtitle, .ytitle, .legendtext, .cbtitle text')) {
            const r = el.getBoundingClientRect();
            const poking = r.left < g.left - 1 || r.right > g.right + 1 || r.top < g.top - 1;
            if (el.textContent.trim() && poking) out.push([gd.parentElement.id, el.textContent.slice(0, 60), at(r), at(g)]);
        }
    }
    for (const el of root.querySelectorAll('.table-scroll, table, .js-plotly-plot, details')) {
        if (el.tagName === 'TABLE' && el.closest('.table-scroll')) continue;  // scrolls inside its box
        const past = el.getBoundingClientRect().right - edge;
        if (past > 1) out.push([el.className, 'past the tab by ' + Math.round(past) + ' px']);
    }
    return out;
}"""


def _outside(page: BrowserPage, sel: str = ".tab-content") -> list[list[Any]]:
    """What pokes out under ``sel``: plot text outside its graph, boxes past the tab's right edge (``[]``: none)."""
    return page.page.evaluate(_OUTSIDE_JS, sel)


def _overlap(a: list[float], b: list[float]) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def _clashes(boxes: list[list[float]], others: list[list[float]] | None = None, slack: float = 2.0) -> list[tuple[Any, Any]]:
    """Pairs of boxes that overlap by more than ``slack`` px² (within one list, or between two)."""
    if others is None:
        return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if _overlap(a, b) > slack]
    return [(a, b) for a in boxes for b in others if _overlap(a, b) > slack]


@pytest.fixture(scope="module")
def dashboard(engine) -> Dash:
    return create_app(Settings(warm=False), engine=engine)


@pytest.fixture(scope="module")
def node_sets(engine) -> dict[int, list[str]]:
    """1, 5 and every ("Select All") node of the default model, in graph order."""
    every = list(engine.nodes(engine.defaults.model))
    return {1: every[-1:], 5: every[1 : len(every) : len(every) // 5][:5], len(every): every}


def _open(page: BrowserPage, url: str, size: tuple[int, int]) -> None:
    page.page.set_viewport_size({"width": size[0], "height": size[1]})
    page.goto_dash(url, timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)


def _measure(page: BrowserPage, graph: str) -> dict[str, Any]:
    from playwright.sync_api import expect

    expect(page.page.locator(f"#{graph} .js-plotly-plot .gtitle")).to_have_count(1, timeout=TIMEOUT)
    page.page.wait_for_timeout(300)  # Plotly's autosize after the last callback
    out = page.page.evaluate(_BOXES_JS, f"#{graph}")
    assert out is not None, f"#{graph} drew no figure"
    return out


def _columns(m: dict[str, Any]) -> int:
    """How many columns a grid's panels stand in (left edges more than 20 px apart start a new one)."""
    lefts = sorted(p[0] for p in m["visiblePanels"])
    return 1 + sum(b - a > 20 for a, b in zip(lefts, lefts[1:], strict=False))


def _assert_grid_reads(m: dict[str, Any], n_panels: int, what: str, min_side: float = MIN_PANEL_PX) -> None:
    panels = m["visiblePanels"]
    assert len(panels) == n_panels, f"{what}: {len(panels)} panels drawn, {n_panels} expected"
    small = [p for p in panels if min(p[2], p[3]) < min_side]
    assert not small, f"{what}: panels under {min_side} px: {small[:3]}"
    assert not _clashes(panels), f"{what}: panels overlap: {_clashes(panels)[:3]}"
    assert not _clashes(m["annotations"]), f"{what}: titles overlap: {_clashes(m['annotations'])[:3]}"
    assert not _clashes(m["annotations"], panels), f"{what}: titles run into panels: {_clashes(m['annotations'], panels)[:3]}"
    axes = m["subplotaxistitles"]
    assert not _clashes(axes), f"{what}: axis titles overlap: {_clashes(axes)[:3]}"
    assert not _clashes(axes, m["annotations"]), f"{what}: axis titles run into titles: {_clashes(axes, m['annotations'])[:3]}"
    assert not _clashes(axes, panels), f"{what}: axis titles run into panels: {_clashes(axes, panels)[:3]}"
    if m["legend"] is not None:
        assert m["legend"]["shown"] >= m["legend"]["full"] - 1, f"{what}: the legend scrolls ({m['legend']})"
        assert not _clashes([m["legend"]["box"]], panels), f"{what}: the legend covers a panel"


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("count", ["1", "5", "all"])
def test_rdm_and_embedding_grids_wrap_into_readable_panels(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path, node_sets: dict[int, list[str]], count: str, viewport: str
) -> None:
    nodes = node_sets[max(node_sets)] if count == "all" else node_sets[int(count)]
    query = f"?nodes={','.join(nodes)}&n_rdm=5&n_embed=3"
    base = live_server(dashboard)
    size = VIEWPORTS[viewport]
    name = f"{len(nodes)}nodes-{viewport}"

    _open(page, base + query, size)
    grid = _measure(page, "rdm-grid")
    page.page.screenshot(path=screenshot_dir / f"layout-rdms-{name}.png", full_page=True)
    _assert_grid_reads(grid, len(nodes), f"RDM grid, {name}")
    assert not _outside(page), f"RDM tab, {name}: {_outside(page)[:3]}"
    if count == "all":  # as many columns as the window's width allows at a readable side
        assert _columns(grid) == GRID_COLS[viewport], f"RDM grid, {name}: {_columns(grid)} columns"

    _assert_controls_apart(_measure(page, "rdm-slider"), f"RDM slider, {name}")

    _open(page, base + query + "&tab=embeddings", size)
    emb = _measure(page, "embed-grid")
    page.page.screenshot(path=screenshot_dir / f"layout-embeddings-{name}.png", full_page=True)
    _assert_grid_reads(emb, 3 * len(nodes), f"embedding grid, {name}")
    assert not _outside(page), f"embeddings tab, {name}: {_outside(page)[:3]}"
    if count == "all":
        assert _columns(emb) == GRID_COLS[viewport], f"embedding grid, {name}: {_columns(emb)} columns"
    _assert_controls_apart(_measure(page, "embed-anim"), f"embedding animation, {name}")
    page.assert_no_errors()


def test_a_grid_takes_the_columns_of_a_window_resized_and_fits_one_screen_in_presentation_mode(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path, node_sets: dict[int, list[str]]
) -> None:
    from playwright.sync_api import expect

    nodes = node_sets[max(node_sets)]
    base = live_server(dashboard) + f"?nodes={','.join(nodes)}&n_rdm=5"
    _open(page, base, VIEWPORTS["1366x768"])
    narrow = _measure(page, "rdm-grid")
    assert _columns(narrow) == GRID_COLS["1366x768"], _columns(narrow)
    # a wider window: the page reports it and the grid is laid out again, with more columns
    page.page.set_viewport_size({"width": 1920, "height": 1080})
    deadline = time.monotonic() + TIMEOUT / 1000
    wide = narrow
    while _columns(wide) == _columns(narrow) and time.monotonic() < deadline:
        page.page.wait_for_timeout(500)
        page.wait_for_dash_idle(TIMEOUT)
        wide = _measure(page, "rdm-grid")
    assert _columns(wide) == GRID_COLS["1920x1080"] > _columns(narrow), (_columns(narrow), _columns(wide))
    _assert_grid_reads(wide, len(nodes), "RDM grid after a resize to 1920x1080")

    # presentation mode at 1920 × 1080: every panel of the grid on one screen, type at 18 px or more
    size = VIEWPORTS["1920x1080"]
    _open(page, base + "&mode=present", size)
    expect(page.page.locator(".sidebar")).to_be_hidden()
    shown = _measure(page, "rdm-grid")
    page.page.screenshot(path=screenshot_dir / f"layout-present-rdms-{len(nodes)}nodes-1920x1080.png")
    box = page.page.locator("#rdm-grid .js-plotly-plot").bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size[1], f"the grid runs past the screen's bottom edge: {box}"
    assert box["width"] >= 0.9 * size[0], box
    _assert_grid_reads(shown, len(nodes), "RDM grid, presentation mode at 1920x1080", min_side=120)
    assert all(p[1] + p[3] <= size[1] for p in shown["visiblePanels"])
    fonts = page.page.evaluate(_FONTS_JS, "#rdm-grid")
    assert fonts and all(px >= 18 for _, px in fonts), [f for f in fonts if f[1] < 18][:5]
    page.assert_no_errors()


def _assert_controls_apart(m: dict[str, Any], what: str) -> None:
    """Play/pause in a row of their own above the slider, neither on the plot; the legend does not scroll."""
    assert len(m["buttons"]) == 2 and len(m["sliders"]) <= 1, what  # Plotly draws no slider for a single frame
    assert not _clashes(m["buttons"], m["sliders"]), f"{what}: the buttons cover the slider: {m['buttons']}, {m['sliders']}"
    assert not _clashes(m["buttons"] + m["sliders"], m["visiblePanels"] or m["panels"]), f"{what}: the controls cover the plot"
    if m["legend"] is not None:
        assert m["legend"]["shown"] >= m["legend"]["full"] - 1, f"{what}: the legend scrolls ({m['legend']})"


# The heat map's drawn image (Plotly paints a heat map as one <image>) and its data, now.
_HEAT_JS = """() => {
    const gd = document.querySelector('#path-graph .js-plotly-plot');
    const img = gd.querySelector('.hm image, .heatmaplayer image');
    const z = gd._fullData[0].z;
    return [gd._fullData[0].type, img ? (img.getAttribute('href') || '').length : 0, z ? z.length : 0];
}"""


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_path_animation_keeps_its_matrix_and_readable_controls(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path, viewport: str
) -> None:
    _open(page, live_server(dashboard) + "?tab=paths&n_embed=5&survive=", VIEWPORTS[viewport])
    m = _measure(page, "path-graph")
    page.page.screenshot(path=screenshot_dir / f"layout-path-{viewport}.png", full_page=True)
    # node names of the matrix: at least 12 px, none over another; the colour bar clear of every axis title
    assert not _outside(page), f"paths tab: {_outside(page)[:3]}"
    assert m["yticksizes"] and min(m["yticksizes"]) >= 12, m["yticksizes"]
    assert not _clashes(m["ytick"]), f"node names overlap: {_clashes(m['ytick'])[:3]}"
    assert len(m["colorbars"]) == 1 and not _clashes(m["colorbars"], m["axistitles"]), (m["colorbars"], m["axistitles"])
    assert not _clashes(m["annotations"]), f"titles overlap: {_clashes(m['annotations'])}"
    # play and pause sit apart from the slider
    assert len(m["buttons"]) == 2 and len(m["sliders"]) == 1
    assert not _clashes(m["buttons"], m["sliders"]), (m["buttons"], m["sliders"])
    assert m["legend"] is not None and m["legend"]["shown"] >= m["legend"]["full"] - 1

    # step every frame as the slider does (its own steps' arguments): the matrix beside the path keeps its data and its image
    frames = page.page.evaluate("() => document.querySelector('#path-graph .js-plotly-plot').layout.sliders[0].steps.length")
    assert frames > 3
    for step in range(frames):
        page.page.evaluate(
            """(k) => { const gd = document.querySelector('#path-graph .js-plotly-plot');
                        return Plotly.animate(gd, ...gd.layout.sliders[0].steps[k].args); }""",
            step,
        )
        page.page.wait_for_timeout(60)
        name = step
        kind, href, rows = page.page.evaluate(_HEAT_JS)
        assert kind == "heatmap" and href > 0 and rows > 0, f"frame {name}: the matrix is blank ({kind}, {href}, {rows})"
    # and while Play runs: after every frame is drawn (Plotly's redraw event), the matrix has its image
    page.page.evaluate(
        """() => { const gd = document.querySelector('#path-graph .js-plotly-plot'); window.__frames = [];
                   gd.on('plotly_redraw', () => { const im = gd.querySelector('.hm image');
                       window.__frames.push(im ? (im.getAttribute('href') || '').length : 0); }); }"""
    )
    page.page.locator("#path-graph .updatemenu-button").first.click()
    page.page.wait_for_function("(n) => window.__frames.length >= n", arg=frames - 1, timeout=60_000)
    drawn = page.page.evaluate("() => window.__frames")
    assert all(h > 0 for h in drawn), f"the matrix was blank after {sum(h == 0 for h in drawn)} of {len(drawn)} frames while playing"
    page.assert_no_errors()


@pytest.mark.parametrize("viewport", ["1366x768"])
def test_the_pair_plot_title_and_the_tab_labels_are_not_cut_off(live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, viewport: str) -> None:
    from playwright.sync_api import expect

    _open(page, live_server(dashboard) + "?n_rdm=5", VIEWPORTS[viewport])
    # the tab labels stay inside their tabs (six tabs share the main column)
    spill = page.page.evaluate(
        """() => Array.from(document.querySelectorAll('#tab .tab')).filter((t) => t.scrollWidth > t.clientWidth + 1).map((t) => t.textContent)"""
    )
    assert not spill, f"tab labels run past their tab: {spill}"
    box = page.page.locator("#rdm-grid .nsewdrag").first.bounding_box()
    assert box is not None
    page.page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.75)
    title = page.page.locator("#pair-graph .js-plotly-plot .gtitle")
    expect(title).to_contain_text("vs", timeout=TIMEOUT)
    svg = page.page.locator("#pair-graph .js-plotly-plot .main-svg").first.bounding_box()
    inside = page.page.evaluate(
        """() => Array.from(document.querySelectorAll('#pair-graph .gtitle tspan, #pair-graph .gtitle')).map((el) => {
               const r = el.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; })"""
    )
    assert svg is not None and inside
    for left, right, top, _bottom in inside:
        assert left >= svg["x"] - 1 and right <= svg["x"] + svg["width"] + 1 and top >= svg["y"] - 1, (inside, svg)
    page.page.screenshot(path=Path(__file__).resolve().parents[2] / "artifacts" / "screenshots" / f"layout-pair-{viewport}.png")
    page.assert_no_errors()


# Font sizes (px) of every drawn, non-empty text of a graph.
_FONTS_JS = """(sel) => Array.from(document.querySelectorAll(sel + ' .js-plotly-plot text')).filter((el) => {
    const r = el.getBoundingClientRect(); return el.textContent.trim() !== '' && r.width > 0 && r.height > 0;
}).map((el) => [el.textContent.trim().slice(0, 30), Math.min(...[el, ...el.querySelectorAll('tspan')].map((t) => parseFloat(getComputedStyle(t).fontSize)))])"""


def test_presentation_mode_fills_the_screen_with_large_type_keys_and_keeps_the_mode_in_the_url(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    size = VIEWPORTS["1920x1080"]
    _open(page, live_server(dashboard) + "?tab=paths&n_embed=5&survive=&mode=present", size)
    _measure(page, "path-graph")
    page.page.screenshot(path=screenshot_dir / "layout-present-path-1920x1080.png")
    expect(page.page.locator(".sidebar")).to_be_hidden()
    expect(page.page.locator(".inspector")).to_be_hidden()
    expect(page.page.locator("#shortcuts")).to_be_visible()
    expect(page.page.locator("#shortcuts")).to_contain_text("next tab")
    # one figure across the screen
    box = page.page.locator("#path-graph .js-plotly-plot").bounding_box()
    assert box is not None and box["width"] >= 0.9 * size[0] and box["height"] >= 0.75 * size[1], box
    # every text of the figure at 18 px or more
    fonts = page.page.evaluate(_FONTS_JS, "#path-graph")
    assert fonts and all(px >= 18 for _, px in fonts), [f for f in fonts if f[1] < 18][:5]

    # keys: ← steps the slider back, Space plays, T goes to the next tab; the URL keeps the mode
    label = page.page.locator("#path-graph .slider-container .slider-label").first
    before = label.text_content()
    page.page.locator("body").press("ArrowLeft")
    expect(label).not_to_have_text(before or "", timeout=5_000)
    stepped = label.text_content()
    page.page.locator("body").press(" ")
    expect(label).not_to_have_text(stepped or "", timeout=10_000)
    page.page.locator("body").press(" ")
    page.page.locator("body").press("t")
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#tab .tab--selected")).to_contain_text("Models", timeout=TIMEOUT)
    assert "mode=present" in page.page.url and "tab=models" in page.page.url
    # a reload (or a shared link) keeps presentation mode
    page.page.reload()
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#mode input[value='present']")).to_be_checked()
    expect(page.page.locator(".sidebar")).to_be_hidden()
    # Esc goes back to exploring
    page.page.locator("body").press("Escape")
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator(".sidebar")).to_be_visible()
    assert "mode=present" not in page.page.url
    page.assert_no_errors()


# Each graph's drawn height (its SVG) against the height its box takes on the page: a larger one runs over what follows.
_OVERFLOW_JS = """(sel) => Array.from(document.querySelectorAll(sel + ' .js-plotly-plot')).map((gd) => {
    const svg = gd.querySelector('.main-svg');
    return [gd.parentElement.id, svg ? svg.getBoundingClientRect().height : 0, gd.parentElement.getBoundingClientRect().height];
}).filter((g) => g[1] > g[2] + 1)"""


@pytest.mark.parametrize("tab", ["embeddings", "paths"])
def test_presentation_mode_on_a_1366_screen_keeps_every_title_apart_and_every_figure_in_its_box(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path, tab: str
) -> None:
    from playwright.sync_api import expect

    query = f"?tab={tab}&n_embed=5&survive=cosine,corr_cov&mode=present"
    _open(page, live_server(dashboard) + query, VIEWPORTS["1366x768"])
    first = "embed-shepard" if tab == "embeddings" else "survive-graph"
    expect(page.page.locator(f"#{first} .js-plotly-plot .gtitle")).to_have_count(1, timeout=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    page.page.wait_for_timeout(300)  # Plotly's autosize after the last callback
    page.page.screenshot(path=screenshot_dir / f"layout-present-{tab}-1366x768.png", full_page=True)
    graphs = page.page.evaluate("() => Array.from(document.querySelectorAll('.tab-content .js-plotly-plot')).map((g) => g.parentElement.id)")
    assert len(graphs) >= 3, graphs
    for graph in graphs:
        m = page.page.evaluate(_BOXES_JS, f"#{graph}")
        notes = [a for a in m["annotations"] if not any(_overlap(a, p) > 2 for p in m["panels"])]  # a note figure writes inside its panel
        assert not _clashes(m["annotations"]), f"{graph}: titles overlap: {_clashes(m['annotations'])[:3]}"
        assert not _clashes(m["subplotaxistitles"], notes), f"{graph}: axis titles run into titles: {_clashes(m['subplotaxistitles'], notes)[:3]}"
        if m["legend"] is not None:
            assert m["legend"]["shown"] >= m["legend"]["full"] - 1, f"{graph}: the legend scrolls ({m['legend']})"
            assert not _clashes([m["legend"]["box"]], m["annotations"] + m["panels"]), f"{graph}: the legend covers a title or a panel"
    assert not page.page.evaluate(_OVERFLOW_JS, ".tab-content"), "a figure runs over the next"
    assert not _outside(page), _outside(page)[:3]
    page.assert_no_errors()
