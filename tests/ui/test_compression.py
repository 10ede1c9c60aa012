"""Responses are compressed (brotli or gzip, as the browser accepts) and keep the security headers."""

from __future__ import annotations

import gzip
import json
import re

import brotli
import pytest

from repgeom.settings import Settings
from repgeom.ui import create_app
from repgeom.ui.response_cache import CACHE_HEADER
from repgeom.ui.state import View
from tests.dash_client import DashClient


@pytest.fixture(scope="module")
def app(engine):
    return create_app(Settings(warm=False), engine=engine)


def _decode(response) -> bytes:
    data = response.get_data()
    encoding = response.headers.get("Content-Encoding")
    return brotli.decompress(data) if encoding == "br" else gzip.decompress(data) if encoding == "gzip" else data


def test_the_page_and_its_scripts_are_compressed_with_the_security_headers_kept(app):
    client = app.server.test_client()
    page = client.get("/", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert page.status_code == 200 and page.headers["Content-Encoding"] == "br"
    assert "Accept-Encoding" in page.headers["Vary"]
    assert "script-src" in page.headers["Content-Security-Policy"] and page.headers["X-Content-Type-Options"] == "nosniff"
    html = _decode(page).decode()
    assert "_dash-config" in html

    script = next(s for s in re.findall(r'src="(/_dash-component-suites/[^"]+\.js[^"]*)"', html) if "dash_core_components." in s)
    plain = client.get(script, headers={"Accept-Encoding": "identity"})
    packed = client.get(script, headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in plain.headers and packed.headers["Content-Encoding"] == "gzip"
    assert _decode(packed) == plain.get_data() and len(packed.get_data()) < 0.4 * len(plain.get_data())

    layout = client.get("/_dash-layout", headers={"Accept-Encoding": "br"})
    assert layout.headers["Content-Encoding"] == "br" and json.loads(_decode(layout))["type"] == "Div"


def test_callback_answers_are_compressed_and_replayed_from_the_cache_the_same(app, engine):
    client = app.server.test_client()
    body = DashClient(app).graph.body("rdm-grid.figure", {"view.data": View.default(engine).controls(), "selection.data": []})
    answers = [client.post("/_dash-update-component", data=body, content_type="application/json", headers={"Accept-Encoding": "gzip, br"})
               for _ in range(2)]
    assert [a.headers[CACHE_HEADER] for a in answers] == ["miss", "hit"]
    first, second = (_decode(a) for a in answers)
    assert all(a.headers["Content-Encoding"] == "br" for a in answers) and first == second
    assert "rdm-grid" in json.loads(first)["response"]
    assert len(answers[0].get_data()) < 0.75 * len(first), "the figure compresses"
