"""The Content-Security-Policy in a real Chromium: the dashboard runs and draws under it, and ``eval`` is refused.

Violations are caught twice: the page's ``securitypolicyviolation`` events (recorded by a
script added before any page script runs) and Chromium's console ("Refused to ...").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from dash import Dash, Input, Output, html

from repgeom.settings import Settings
from repgeom.ui import create_app
from repgeom.ui.security import install_security

if TYPE_CHECKING:
    from .conftest import BrowserPage

pytestmark = pytest.mark.browser

TIMEOUT = 120_000  # ms: computing a view from a cold cache on a busy 2-core machine
_RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
    window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`);
});
"""
def _recording(page: BrowserPage) -> list[str]:
    """Record CSP violations on every document the page loads; returns the console's CSP messages (live list)."""
    page.page.add_init_script(_RECORD_VIOLATIONS)
    console: list[str] = []
    page.page.on("console", lambda m: console.append(m.text) if "Refused to" in m.text or "Content Security Policy" in m.text else None)
    return console


def _violations(page: BrowserPage) -> list[str]:
    return page.page.evaluate("window.__cspViolations || []")


def _eval_app() -> Dash:
    """A clientside callback that tries ``eval``, behind the installed hardening (the shipped policy)."""
    app = Dash(__name__, serve_locally=True)
    app.layout = html.Div([html.Button("run", id="run"), html.Div(id="out")])
    app.clientside_callback(
        "function (n) { if (!n) { return 'idle'; } try { return 'evaluated ' + eval('6 * 7'); } catch (e) { return 'refused: ' + e.name; } }",
        Output("out", "children"),
        Input("run", "n_clicks"),
    )
    install_security(app, Settings())
    return app


@pytest.fixture(scope="module")
def dashboard(engine) -> Dash:
    return create_app(Settings(warm=False), engine=engine)


def test_dashboard_runs_and_draws_under_the_policy(live_server: Callable[[Dash], str], page: BrowserPage, dashboard: Dash) -> None:
    from playwright.sync_api import expect

    console = _recording(page)
    response = page.page.goto(live_server(dashboard) + "?n_rdm=10&n_embed=10")
    assert response is not None and "script-src 'self' 'sha256-" in response.headers["content-security-policy"]
    page.page.wait_for_selector("._dash-loading", state="detached", timeout=TIMEOUT)
    page.wait_for_dash_idle(TIMEOUT)
    # RDMs: heat maps are drawn to a canvas and placed in the SVG as data: images
    expect(page.page.locator("#rdm-grid .js-plotly-plot .gtitle")).to_contain_text("RDMs of", timeout=TIMEOUT)
    assert page.page.locator("#rdm-grid .js-plotly-plot .heatmaplayer image").count() > 0

    page.page.locator("#tab").get_by_text("Embeddings", exact=True).click()
    page.wait_for_dash_idle(TIMEOUT)
    grid = page.page.locator("#embed-grid .js-plotly-plot")
    expect(grid.locator(".gtitle")).to_contain_text("Embeddings of", timeout=TIMEOUT)
    assert grid.count() == 1 and grid.locator(".main-svg").count() > 0
    assert grid.locator(".scatterlayer .point").count() > 0  # SVG points: no WebGL, which would need 'unsafe-eval'
    assert grid.locator("canvas.gl-canvas").count() == 0
    expect(page.page.locator("#embed-anim .js-plotly-plot .slider-container")).to_have_count(1, timeout=TIMEOUT)

    page.page.locator("#tab").get_by_text("Representational paths", exact=True).click()
    page.wait_for_dash_idle(TIMEOUT)
    path = page.page.locator("#path-graph .js-plotly-plot")
    expect(path.locator(".legendtext").first).to_be_visible(timeout=TIMEOUT)
    assert path.locator(".main-svg").count() > 0

    assert _violations(page) == [] and console == []
    page.assert_no_errors()


def test_eval_is_refused_by_the_policy(live_server: Callable[[Dash], str], page: BrowserPage) -> None:
    """A page script that evaluates text as code is stopped, and the violation is reported as script-src eval."""
    from playwright.sync_api import expect

    _recording(page)
    response = page.page.goto(live_server(_eval_app()))
    assert response is not None and "'unsafe-eval'" not in response.headers["content-security-policy"]
    expect(page.page.locator("#out")).to_have_text("idle", timeout=30_000)
    page.page.locator("#run").click()
    expect(page.page.locator("#out")).to_have_text("refused: EvalError", timeout=30_000)
    violations = _violations(page)
    assert any(v.startswith("script-src") and "eval" in v for v in violations), violations
