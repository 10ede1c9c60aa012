"""Real embedding points in Chromium: hover, click a pair, neighbours, search and box isolation.

Each step reads what Plotly itself shows (its tooltip, its traces) and checks that the
server's panels follow: a point whose ids do not reach the server fails here.
"""

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

TIMEOUT = 120_000  # ms: a cold t-SNE on a busy 2-core machine
GRID = "#embed-grid .js-plotly-plot"

# The traces of a graph as Plotly drew them: name, point count, selected points, and the points' ids.
_TRACES_JS = """(sel) => {
    const gd = document.querySelector(sel);
    return gd._fullData.map((t) => ({
        name: t.name,
        n: t._length || 0,
        selected: t.selectedpoints === undefined || t.selectedpoints === null ? null : Array.from(t.selectedpoints),
        ids: Array.isArray(t.customdata) ? t.customdata.map((c) => Array.isArray(c) ? c[0] : null) : [],
    }));
}"""


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Dash:
    """The app as deployed: its own engine, sharing computed embeddings with the job processes through the cache folder."""
    return create_app(Settings(warm=False, device="cpu", cache_dir=str(tmp_path_factory.mktemp("points-cache"))))


def _traces(page: BrowserPage, sel: str = GRID) -> list[dict]:
    return page.page.evaluate(_TRACES_JS, sel)


def _point_box(page: BrowserPage, trace: int, point: int, graph: str = GRID) -> dict:
    """The on-screen box of point ``point`` of the ``trace``-th trace in ``graph``'s first panel."""
    loc = page.page.locator(f"{graph} .subplot.xy .scatterlayer .trace").nth(trace).locator("path.point").nth(point)
    loc.scroll_into_view_if_needed()
    box = loc.bounding_box()
    assert box is not None
    return box


def _hover(page: BrowserPage, box: dict, graph: str = GRID) -> str:
    """Move onto a point (or cell); return Plotly's own tooltip text for it."""
    tips = page.page.locator(f"{graph} .hoverlayer .hovertext")
    page.page.mouse.move(1, 1)  # off every plot: the last tooltip goes, and no other point is passed on the way
    tips.first.wait_for(state="detached", timeout=10_000)
    page.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tip = tips.first
    tip.wait_for(timeout=10_000)
    # one line of the tooltip a line of text (the SVG's text runs them together)
    return tip.evaluate("(el) => Array.from(el.querySelectorAll('tspan.line')).map((t) => t.textContent).join('\\n') || el.textContent")


def test_hover_click_pair_neighbours_search_and_box_isolation_on_real_points(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    page.goto_dash(live_server(dashboard) + "?tab=embeddings&n_embed=5&nodes=conv2,conv2_4", timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator(f"{GRID} .gtitle")).to_contain_text("Embeddings of recurrent", timeout=TIMEOUT)
    names = [t["name"] for t in _traces(page)][:10]
    assert len(names) == 10

    # hover: the panel shows the image, class, index and node that Plotly's tooltip names
    tip = _hover(page, _point_box(page, 2, 1))
    m = re.search(r"class (\S+)\s*image #(\d+) · (\S+)", tip)
    assert m, tip
    cls, idx, node = m.groups()
    panel = page.page.locator("#hover-panel")
    expect(panel.locator(".caption")).to_have_text(f"class {cls} · image #{idx}", timeout=TIMEOUT)
    expect(panel.locator("img.stimulus-image")).to_have_count(1)
    expect(panel.locator(".hover-summary")).to_contain_text(f"PCA of recurrent · node {node}")
    # another point, in another class: the panel follows
    tip2 = _hover(page, _point_box(page, 7, 0))
    m2 = re.search(r"class (\S+)\s*image #(\d+)", tip2)
    assert m2 and m2.group(2) != idx, tip2
    expect(panel.locator(".caption")).to_have_text(f"class {m2.group(1)} · image #{m2.group(2)}", timeout=TIMEOUT)

    # the animated panel too, and its node follows the frame shown
    anim = "#embed-anim .js-plotly-plot"
    tip3 = _hover(page, _point_box(page, 4, 0, anim), anim)
    m3 = re.search(r"class (\S+)\s*image #(\d+) · (\S+)", tip3)
    assert m3 and m3.group(3) == "conv2", tip3
    expect(panel.locator(".caption")).to_have_text(f"class {m3.group(1)} · image #{m3.group(2)}", timeout=TIMEOUT)
    expect(panel.locator(".hover-summary")).to_contain_text("PCA of recurrent · node conv2", timeout=TIMEOUT)
    page.page.evaluate(  # what the slider does when its last step is chosen
        "(sel) => Plotly.animate(document.querySelector(sel), ['conv2_4'], {frame: {duration: 0, redraw: false}, mode: 'immediate'})",
        anim,
    )
    page.page.wait_for_timeout(300)
    tip4 = _hover(page, _point_box(page, 4, 1, anim), anim)
    m4 = re.search(r"class (\S+)\s*image #(\d+) · (\S+)", tip4)
    assert m4 and m4.group(3) == "conv2_4", tip4
    expect(panel.locator(".caption")).to_have_text(f"class {m4.group(1)} · image #{m4.group(2)}", timeout=TIMEOUT)
    expect(panel.locator(".hover-summary")).to_contain_text("PCA of recurrent · node conv2_4", timeout=TIMEOUT)

    # click two points: a pair, as an RDM cell click gives; the first click lists neighbours
    a, b = _point_box(page, 2, 1), _point_box(page, 7, 0)
    page.page.mouse.click(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.wait_for_dash_idle(TIMEOUT)
    neighbours = page.page.locator("#neighbours-panel")
    expect(neighbours.locator(".neighbour-query .caption")).to_contain_text(f"image #{idx} (class {cls}) · PCA of {node}", timeout=TIMEOUT)
    expect(neighbours.locator(".neighbour-list img")).to_have_count(12)
    lost = neighbours.locator(".stimulus-card.lost").count()
    summary = neighbours.locator(".hover-summary").text_content() or ""
    kept = int(re.search(r"keeps (\d+) of its 6", summary).group(1))
    assert lost == 2 * (6 - kept)  # each lost feature neighbour, and the point the plot puts in its place
    page.page.mouse.click(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator("#pair-graph .gtitle")).to_have_text(
        re.compile(rf"stimulus {idx} \(class {cls}\)\s*vs {m2.group(2)} \(class {m2.group(1)}\)"), timeout=TIMEOUT
    )
    page.page.screenshot(path=screenshot_dir / "points-pair-neighbours.png", full_page=True)

    # search by class: that class's points are ringed in every panel, and the legend says so
    box = page.page.locator("#point-search")
    box.fill(names[3])
    box.press("Enter")
    expect(page.page.locator("#point-search-message")).to_contain_text(f"class {names[3]}: 5 points", timeout=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator(f"{GRID} .legendtext", has_text="search matches")).to_have_count(1, timeout=TIMEOUT)
    rings = [t for t in _traces(page) if t["name"] == "search matches"]
    assert len(rings) == 6 and all(t["n"] == 5 for t in rings)  # 3 methods × 2 nodes
    anim_rings = [t for t in _traces(page, "#embed-anim .js-plotly-plot") if t["name"] == "search matches"]
    assert [t["n"] for t in anim_rings] == [5]
    page.page.screenshot(path=screenshot_dir / "points-search.png", full_page=True)

    # box select on the first panel: its points are isolated in every panel, the others dimmed
    page.page.locator(f"{GRID} .modebar-btn[data-title='Box Select']").click()
    drag = page.page.locator(f"{GRID} .draglayer .xy .nsewdrag").first.bounding_box()
    assert drag is not None
    x0, y0 = drag["x"] + drag["width"] * 0.05, drag["y"] + drag["height"] * 0.05
    page.page.mouse.move(x0, y0)
    page.page.mouse.down()
    page.page.mouse.move(x0 + drag["width"] * 0.3, y0 + drag["height"] * 0.3, steps=5)
    page.page.mouse.move(x0 + drag["width"] * 0.55, y0 + drag["height"] * 0.6, steps=5)
    page.page.mouse.up()
    message = page.page.locator("#group-message")
    expect(message).to_contain_text("points isolated on the PCA of conv2", timeout=TIMEOUT)
    count = int(re.search(r"(\d+) points isolated", message.text_content() or "").group(1))
    assert 0 < count < 50
    page.wait_for_dash_idle(TIMEOUT)

    def isolated(sel: str) -> list[int]:
        traces = [t for t in _traces(page, sel) if t["name"] not in ("selected", "search matches")]
        return sorted(t["ids"][k] for t in traces if t["selected"] is not None for k in t["selected"])

    def panels_agree() -> bool:
        traces = [t for t in _traces(page) if t["name"] not in ("selected", "search matches")]
        return all(t["selected"] is not None for t in traces)

    expect(page.page.locator(f"{GRID} .gtitle")).to_contain_text("Embeddings of recurrent", timeout=TIMEOUT)
    assert panels_agree()
    per_panel = [t for t in _traces(page) if t["name"] not in ("selected", "search matches")]
    group = sorted(per_panel[k]["ids"][j] for k in range(10) for j in per_panel[k]["selected"])
    assert len(group) == count
    assert isolated(GRID) == sorted(group * 6) and isolated("#embed-anim .js-plotly-plot") == group
    expect(message).to_contain_text(f"{count} points isolated")  # the redraw's own selection event changed nothing
    page.page.screenshot(path=screenshot_dir / "points-isolated.png", full_page=True)

    # reset: every point shown again
    page.page.get_by_role("button", name="show all points").click()
    page.wait_for_dash_idle(TIMEOUT)
    expect(message).to_have_text("", timeout=TIMEOUT)
    page.page.wait_for_function(
        "(sel) => document.querySelector(sel)._fullData.every((t) => t.selectedpoints === undefined || t.selectedpoints === null)",
        arg=GRID,
        timeout=TIMEOUT,
    )
    page.assert_no_errors()


def test_a_block_mean_cell_and_the_hover_panel_agree(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path
) -> None:
    """At 100 per class the RDMs show block means: the panel names the block and gives the value the tooltip shows."""
    from playwright.sync_api import expect

    page.goto_dash(live_server(dashboard) + "?n_rdm=100", timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    grid = "#rdm-grid .js-plotly-plot"
    expect(page.page.locator(f"{grid} .gtitle")).to_contain_text("block means", timeout=TIMEOUT)
    expect(page.page.locator("#rdm-slider .js-plotly-plot .slider-container")).to_have_count(1, timeout=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)  # the page is laid out: the cell under the mouse stays put
    drag = page.page.locator(f"{grid} .nsewdrag").first
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    assert box is not None
    cell = {"x": box["x"] + box["width"] * 0.2, "y": box["y"] + box["height"] * 0.75, "width": 0, "height": 0}
    tip = _hover(page, cell, grid)
    m = re.search(r"block (\d+) × (\d+)\n([-\d.e+]+) of the max", tip)
    assert m, tip
    y, x, shown = m.groups()
    summary = page.page.locator("#hover-panel .hover-summary")
    expect(summary).to_contain_text(f"(shown as {shown} of the node's max)", timeout=TIMEOUT)
    expect(summary).to_contain_text(f"block {y} (rows: class")
    expect(summary).to_contain_text(f"× block {x} (columns: class")
    expect(summary).to_contain_text("block mean of the correlation dissimilarity")
    captions = page.page.locator("#hover-panel .caption")
    expect(captions).to_have_count(6)
    assert {c.split(" · ")[0] for c in captions.all_text_contents()} == {f"row block {y}", f"column block {x}"}
    page.page.screenshot(path=screenshot_dir / "rdm-block-hover.png", full_page=True)
    page.assert_no_errors()


# Every point of the first panel (the PCA of the first node) with its image index and its place on the screen.
_PANEL_POINTS_JS = """(sel) => {
    const gd = document.querySelector(sel);
    const box = gd.getBoundingClientRect();
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
    const out = [];
    for (const t of gd._fullData) {
        if (t.xaxis !== "x" || t.yaxis !== "y" || t.name === "selected" || t.name === "search matches" || !Array.isArray(t.customdata)) continue;
        for (let k = 0; k < t._length; k++) {
            out.push({id: t.customdata[k][0], x: box.left + xa._offset + xa.l2p(t.x[k]), y: box.top + ya._offset + ya.l2p(t.y[k])});
        }
    }
    return out;
}"""


def _inside(x: float, y: float, polygon: list[tuple[float, float]]) -> bool:
    """Whether (x, y) is inside ``polygon`` (ray casting)."""
    hit = False
    for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            hit = not hit
    return hit


def _edge_distance(x: float, y: float, polygon: list[tuple[float, float]]) -> float:
    """Distance in pixels from (x, y) to the nearest edge of ``polygon``."""
    best = float("inf")
    for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        dx, dy = x1 - x0, y1 - y0
        t = max(0.0, min(1.0, ((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy)))
        best = min(best, ((x - x0 - t * dx) ** 2 + (y - y0 - t * dy) ** 2) ** 0.5)
    return best


def test_lasso_selection_isolates_the_points_inside_the_path_in_every_panel(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path
) -> None:
    """Draw a closed lasso with the mouse around points of the first panel: exactly the points inside it become the group, in every panel."""
    from playwright.sync_api import expect

    page.goto_dash(live_server(dashboard) + "?tab=embeddings&n_embed=5&nodes=conv2,conv2_4", timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator(f"{GRID} .gtitle")).to_contain_text("Embeddings of recurrent", timeout=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    page.page.locator(f"{GRID} .modebar-btn[data-title='Lasso Select']").click()
    drag = page.page.locator(f"{GRID} .draglayer .xy .nsewdrag").first
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    assert box is not None
    points = page.page.evaluate(_PANEL_POINTS_JS, GRID)
    assert len(points) == 50  # 5 per class, 10 classes

    # a pentagon around the centre of the panel's points, about half as wide as their spread
    xs, ys = sorted(p["x"] for p in points), sorted(p["y"] for p in points)
    cx, cy = xs[len(xs) // 2], ys[len(ys) // 2]
    rx, ry = (xs[-1] - xs[0]) * 0.3, (ys[-1] - ys[0]) * 0.3
    polygon = [(cx, cy - ry), (cx + rx, cy - 0.2 * ry), (cx + 0.6 * rx, cy + ry), (cx - 0.6 * rx, cy + ry), (cx - rx, cy - 0.2 * ry)]
    assert all(box["x"] < x < box["x"] + box["width"] and box["y"] < y < box["y"] + box["height"] for x, y in polygon)
    inside = {p["id"] for p in points if _inside(p["x"], p["y"], polygon) and _edge_distance(p["x"], p["y"], polygon) > 4}
    outside = {p["id"] for p in points if not _inside(p["x"], p["y"], polygon) and _edge_distance(p["x"], p["y"], polygon) > 4}
    assert inside and outside
    page.page.mouse.move(*polygon[0])
    page.page.mouse.down()
    for corner in [*polygon[1:], polygon[0]]:  # round the path and back to its start: a closed lasso
        page.page.mouse.move(*corner, steps=6)
    page.page.mouse.up()

    message = page.page.locator("#group-message")
    expect(message).to_contain_text("points isolated on the PCA of conv2", timeout=TIMEOUT)
    count = int(re.search(r"(\d+) points isolated", message.text_content() or "").group(1))
    page.wait_for_dash_idle(TIMEOUT)
    expect(page.page.locator(f"{GRID} .gtitle")).to_contain_text("Embeddings of recurrent", timeout=TIMEOUT)

    def isolated(sel: str) -> list[int]:
        traces = [t for t in _traces(page, sel) if t["name"] not in ("selected", "search matches")]
        assert all(t["selected"] is not None for t in traces), sel  # every panel dims its other points
        return sorted(t["ids"][k] for t in traces for k in t["selected"])

    page.page.wait_for_function(
        "(sel) => document.querySelector(sel)._fullData.every((t) => t.name === 'selected' || t.name === 'search matches' || Array.isArray(t.selectedpoints))",
        arg=GRID,
        timeout=TIMEOUT,
    )
    group = sorted(set(isolated(GRID)))
    assert len(group) == count
    assert inside <= set(group) and not outside & set(group)  # the lasso's inside, nothing outside it
    assert isolated(GRID) == sorted(group * 6)  # 3 methods × 2 nodes
    assert isolated("#embed-anim .js-plotly-plot") == group
    page.page.screenshot(path=screenshot_dir / "points-lasso.png", full_page=True)
    page.assert_no_errors()


def test_clicking_a_block_mean_cell_selects_the_block_with_the_tooltips_mean(
    live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash, screenshot_dir: Path
) -> None:
    """At 100 per class a click on a cell selects its block: the pair panel says so and gives the mean the tooltip showed."""
    from playwright.sync_api import expect

    page.goto_dash(live_server(dashboard) + "?n_rdm=100&pair=1%2C2", timeout_ms=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    grid = "#rdm-grid .js-plotly-plot"
    expect(page.page.locator(f"{grid} .gtitle")).to_contain_text("block means", timeout=TIMEOUT)
    expect(page.page.locator("#rdm-slider .js-plotly-plot .slider-container")).to_have_count(1, timeout=TIMEOUT)
    expect(page.page.locator("#pair-graph .gtitle")).to_contain_text("stimulus 1", timeout=TIMEOUT)  # the link's pair
    page.wait_for_dash_idle(TIMEOUT)
    drag = page.page.locator(f"{grid} .nsewdrag").first
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    assert box is not None
    spot = {"x": box["x"] + box["width"] * 0.2, "y": box["y"] + box["height"] * 0.75, "width": 0, "height": 0}
    tip = _hover(page, spot, grid)
    m = re.search(r"block (\d+) × (\d+)\n([-\d.e+]+) of the max", tip)
    assert m, tip
    shown = m.group(3)
    hovered = page.page.locator("#hover-panel .hover-summary")
    expect(hovered).to_contain_text(f"(shown as {shown} of the node's max)", timeout=TIMEOUT)
    mean = re.search(r"(\S+): block mean of the correlation dissimilarity (\S+) over (\d+) × (\d+) stimuli", hovered.text_content() or "")
    assert mean, hovered.text_content()
    node, value, n_rows, n_cols = mean.groups()

    page.page.mouse.click(spot["x"], spot["y"])
    page.wait_for_dash_idle(TIMEOUT)
    panel = page.page.locator("#pair-block .block-summary")
    expect(panel).to_contain_text(f"A block of {n_rows} × {n_cols} stimuli", timeout=TIMEOUT)
    expect(panel).to_contain_text(f"At {node}: block mean of the correlation dissimilarity {value} (shown as {shown} of the node's max)")
    text = panel.text_content() or ""
    sd = re.search(r"SD over the pairs (\S+); min (\S+), max (\S+)\.", text)
    assert sd, text
    low, high = float(sd.group(2)), float(sd.group(3))
    assert float(sd.group(1)) > 0 and low <= float(value) <= high
    expect(page.page.locator("#pair-block .block-hint")).to_contain_text("To pick single pairs, set the RDMs' images per class to")
    captions = page.page.locator("#pair-block .caption").all_text_contents()
    assert len(captions) == 6 and {c.split(" · ")[0] for c in captions} == {"row", "column"}
    expect(page.page.locator("#pair-graph .gtitle")).to_contain_text(f"block of {n_rows} × {n_cols} stimuli")
    svg = page.page.locator("#pair-graph .js-plotly-plot .main-svg").first.bounding_box()
    lines = page.page.evaluate(
        """() => Array.from(document.querySelectorAll('#pair-graph .gtitle tspan, #pair-graph .gtitle')).map((el) => {
               const r = el.getBoundingClientRect(); return [r.left, r.right, r.top]; })"""
    )
    assert svg is not None and lines
    for left, right, top in lines:  # the narrow inspector shows the whole title
        assert left >= svg["x"] - 1 and right <= svg["x"] + svg["width"] + 1 and top >= svg["y"] - 1, (lines, svg)
    assert "pair=" not in page.page.url  # a block is not kept in the link; the link's pair is gone with it
    # the heat maps mark the block: a ring at the clicked cell (and its mirror) in the first panel
    y, x = int(m.group(1)), int(m.group(2))
    page.page.wait_for_function(
        "([sel, x, y]) => (document.querySelector(sel).layout.shapes || []).some((s) => s.type === 'rect' && s.x0 === x - 0.5 && s.y0 === y - 0.5)",
        arg=[grid, x, y],
        timeout=TIMEOUT,
    )
    page.page.locator("#pair-block").scroll_into_view_if_needed()
    page.page.screenshot(path=screenshot_dir / "rdm-block-click.png", full_page=True)
    page.assert_no_errors()
