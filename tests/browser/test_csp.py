"""The Content-Security-Policy in a real Chromium: the dashboard runs and draws under it, and WebGL needs 'unsafe-eval'.

Violations are caught twice: the page's ``securitypolicyviolation`` events (recorded by a
script added before any page script runs) and Chromium's console ("Refused to ...").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
import pytest
from dash import Dash, dcc, html

from repgeom.settings import Settings
from repgeom.ui import create_app
from repgeom.ui.security import content_security_policy, install_security

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
_WEBGL_DRAWN_JS = """(id) => {
    const gd = document.querySelector(`#${id} .js-plotly-plot`);
    const glcanvas = gd && gd._fullLayout && gd._fullLayout._glcanvas;
    return Boolean(glcanvas && glcanvas.data().some((c) => c.regl));
}"""


def _recording(page: BrowserPage) -> list[str]:
    """Record CSP violations on every document the page loads; returns the console's CSP messages (live list)."""
    page.page.add_init_script(_RECORD_VIOLATIONS)
    console: list[str] = []
    page.page.on("console", lambda m: console.append(m.text) if "Refused to" in m.text or "Content Security Policy" in m.text else None)
    return console


def _violations(page: BrowserPage) -> list[str]:
    return page.page.evaluate("window.__cspViolations || []")


def _gl_app(unsafe_eval: bool) -> Dash:
    """One WebGL scatter (``go.Scattergl``, as the embeddings draw large sets) behind the installed hardening."""
    app = Dash(__name__, serve_locally=True)
    rng = np.random.default_rng(0)
    fig = go.Figure(go.Scattergl(x=rng.normal(size=3000), y=rng.normal(size=3000), mode="markers"))
    app.layout = html.Div([dcc.Graph(id="gl", figure=fig)])
    install_security(app, Settings())
    if not unsafe_eval:
        policy = content_security_policy(app.csp_hashes(), unsafe_eval=False)

        def without_eval(response: Any) -> Any:
            response.headers["Content-Security-Policy"] = policy
            return response

        app.server.after_request_funcs[None].insert(0, without_eval)  # after-request hooks run last-first
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
    assert grid.locator(".scatterlayer .point").count() > 0 or page.page.evaluate(_WEBGL_DRAWN_JS, "embed-grid")
    expect(page.page.locator("#embed-anim .js-plotly-plot .slider-container")).to_have_count(1, timeout=TIMEOUT)

    page.page.locator("#tab").get_by_text("Representational paths", exact=True).click()
    page.wait_for_dash_idle(TIMEOUT)
    path = page.page.locator("#path-graph .js-plotly-plot")
    expect(path.locator(".legendtext").first).to_be_visible(timeout=TIMEOUT)
    assert path.locator(".main-svg").count() > 0

    assert _violations(page) == [] and console == []
    page.assert_no_errors()


def test_webgl_scatter_draws_under_the_policy(live_server: Callable[[Dash], str], page: BrowserPage) -> None:
    console = _recording(page)
    page.goto_dash(live_server(_gl_app(unsafe_eval=True)))
    assert page.page.evaluate("Boolean(document.createElement('canvas').getContext('webgl'))"), "this Chromium has no WebGL"
    page.page.wait_for_function(_WEBGL_DRAWN_JS, arg="gl", timeout=30_000)
    assert page.page.get_by_text("WebGL is not supported").count() == 0
    assert _violations(page) == [] and console == []
    page.assert_no_errors()


def test_webgl_scatter_needs_unsafe_eval(live_server: Callable[[Dash], str], page: BrowserPage) -> None:
    """The same page without 'unsafe-eval': Plotly's WebGL code is blocked and nothing is drawn."""
    _recording(page)
    page.goto_dash(live_server(_gl_app(unsafe_eval=False)))
    # a function, not an expression: Playwright evals expressions in the page, which this policy forbids
    page.page.wait_for_function("() => window.__cspViolations.length > 0", timeout=30_000)
    assert any(v.startswith("script-src") and "eval" in v for v in _violations(page)), _violations(page)
    page.page.get_by_text("WebGL is not supported").wait_for(timeout=30_000)
    assert not page.page.evaluate(_WEBGL_DRAWN_JS, "gl")
