"""Proof that the browser harness works: a throwaway two-component Dash app driven by real clicks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import plotly.graph_objects as go
import pytest
from dash import Dash, Input, Output, dcc, html

if TYPE_CHECKING:
    from .conftest import BrowserPage

pytestmark = pytest.mark.browser

GRAPH = "#graph .js-plotly-plot"
TITLE = f"{GRAPH} .gtitle"


def _toy_app(fail: bool = False) -> Dash:
    """A dropdown and a graph whose title and data follow the dropdown; ``fail`` makes the callback raise."""
    app = Dash(__name__)
    app.layout = html.Div(
        [
            dcc.Dropdown(id="series", options=["alpha", "beta"], value="alpha", clearable=False),
            dcc.Graph(id="graph"),
        ]
    )

    @app.callback(Output("graph", "figure"), Input("series", "value"))
    def draw(series: str) -> go.Figure:
        if fail and series == "beta":
            raise RuntimeError("deliberate callback failure")
        ys = [1, 3, 2] if series == "alpha" else [3, 1, 4]
        return go.Figure(go.Scatter(y=ys, mode="lines+markers"), layout={"title": {"text": f"Series {series}"}})

    return app


def _choose(page: BrowserPage, dropdown_id: str, option: str) -> None:
    """Open a Dash 4 ``dcc.Dropdown`` with a click and click one of its options."""
    page.page.click(f"#{dropdown_id}")
    page.page.get_by_role("option", name=option, exact=True).click()


def _wait_until(page: BrowserPage, condition: Callable[[], bool], timeout_ms: int = 5_000) -> None:
    """Let the page's events flow until ``condition()`` holds (Playwright delivers events while waiting)."""
    for _ in range(timeout_ms // 50):
        if condition():
            return
        page.page.wait_for_timeout(50)
    assert condition(), f"condition not met within {timeout_ms} ms; errors: {page.errors}"


def test_dropdown_updates_graph(live_server: Callable[[Dash], str], page: BrowserPage, screenshot_dir: Path) -> None:
    from playwright.sync_api import expect

    page.goto_dash(live_server(_toy_app()))
    expect(page.page.locator(TITLE)).to_have_text("Series alpha")

    _choose(page, "series", "beta")
    page.wait_for_dash_idle()
    expect(page.page.locator(TITLE)).to_have_text("Series beta")
    expect(page.page.locator("#series")).to_contain_text("beta")
    assert page.page.locator(f"{GRAPH} .scatterlayer .trace").count() == 1

    shot = screenshot_dir / "harness_dropdown_graph.png"
    page.page.screenshot(path=shot)
    assert shot.stat().st_size > 1000
    page.assert_no_errors()


def test_errors_are_recorded(live_server: Callable[[Dash], str], page: BrowserPage) -> None:
    """The harness must notice both a failing callback (HTTP 500) and an uncaught JS exception."""
    from playwright.sync_api import expect

    page.goto_dash(live_server(_toy_app(fail=True)))
    expect(page.page.locator(TITLE)).to_have_text("Series alpha")
    assert page.errors == []

    _choose(page, "series", "beta")
    page.wait_for_dash_idle()
    page.page.evaluate("setTimeout(() => { throw new Error('deliberate page error') }, 0)")
    _wait_until(page, lambda: any("deliberate page error" in e for e in page.errors))

    assert any(e.startswith("console.error:") and "500" in e for e in page.errors), page.errors
    assert any(e.startswith("pageerror:") for e in page.errors), page.errors
    expect(page.page.locator(TITLE)).to_have_text("Series alpha")  # the failed update changed nothing
    with pytest.raises(AssertionError, match="deliberate page error"):
        page.assert_no_errors()
