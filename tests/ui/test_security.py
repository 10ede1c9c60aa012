"""Production hardening: headers, allowed paths, body limit, generic errors, start-up refusals, a planted pickle."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch
from dash import Dash, Input, Output, dcc, html

from repgeom.core.checkpoints import load_all
from repgeom.core.errors import RepgeomError
from repgeom.pipeline import Engine
from repgeom.settings import Settings, check_runtime
from repgeom.ui import create_app
from repgeom.ui.ids import ID
from repgeom.ui.security import BAD_CHUNKS, CROSS_ORIGIN, GENERIC_ERROR, SECURITY_HEADERS, allowed_paths, install_security, same_origin
from repgeom.ui.state import View, default_nodes
from tests.dash_client import DashClient

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "/_dash-update-component"
FIVE_MB = 5 << 20
UNSAFE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


# ---------------------------------------------------------------------------- helpers
class _Page(HTMLParser):
    """Scripts (src or inline text with type) and stylesheet links of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, Any]] = []
        self.links: list[str] = []
        self._open: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self._open = {"src": a.get("src"), "type": a.get("type"), "text": ""}
        elif tag == "link" and a.get("href"):
            self.links.append(str(a["href"]))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._open is not None:
            self.scripts.append(self._open)
            self._open = None


def _page(client) -> _Page:
    parser = _Page()
    parser.feed(client.get("/").get_data(as_text=True))
    return parser


def _csp(headers) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in headers["Content-Security-Policy"].split(";") if d.strip()}


def _assert_hardened(response, what: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (what, name, response.headers.get(name))
    csp = _csp(response.headers)
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"], what
    assert "'unsafe-inline'" not in csp["script-src"], what


def _rdm_values(engine: Engine, **changes: Any) -> dict[str, Any]:
    view = View.parse(engine, {**View.default(engine).controls(), "tab": "rdms", "n_rdm": 5, **changes})
    return {"view.data": view.controls(), "selection.data": []}


def _chunks(total: int, size: int = 1 << 16):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


def _tiny_app(settings: Settings) -> Dash:
    """A one-callback app whose callback raises (a bug), hardened like the real one."""
    tiny = Dash(__name__)
    tiny.layout = html.Div([dcc.Input(id="x", value="a"), html.Div(id="y")])

    @tiny.callback(Output("y", "children"), Input("x", "value"))
    def boom(value: Any) -> str:
        raise RuntimeError(f"secret detail from {value} in /etc/shadow")

    install_security(tiny, settings)
    return tiny


def _tiny_call(client):
    body = {"output": "y.children", "outputs": {"id": "y", "property": "children"},
            "inputs": [{"id": "x", "property": "value", "value": "a"}], "state": [], "changedPropIds": ["x.value"]}
    return client.post(ENDPOINT, data=json.dumps(body), content_type="application/json")


# ---------------------------------------------------------------------------- headers and paths
def test_security_headers_on_every_response(app, dash, engine) -> None:
    c = dash.client
    page = _page(c)
    suite = next(s["src"] for s in page.scripts if s["src"] and "_dash-component-suites" in s["src"])
    responses = {
        "/": c.get("/"),
        "/assets/style.css": c.get("/assets/style.css"),
        suite: c.get(suite),
        "/healthz": c.get("/healthz"),
        "callback": dash.call(f"{ID.RDM_GRID}.figure", _rdm_values(engine)),
        "/console": c.get("/console"),
        "413": c.post(ENDPOINT, data=b"x" * FIVE_MB, content_type="application/json"),
    }
    assert [r.status_code for r in responses.values()] == [200, 200, 200, 200, 200, 404, 413]
    for what, r in responses.items():
        _assert_hardened(r, what)
    csp = _csp(responses["/"].headers)
    assert csp["style-src"] == ["'self'", "'unsafe-inline'"] and csp["img-src"] == ["'self'", "data:", "blob:"]


def test_csp_hashes_every_inline_script_and_everything_is_served_locally(app) -> None:
    c = app.server.test_client()
    r = c.get("/")
    page = _page(c)
    script_src = _csp(r.headers)["script-src"]
    inline = [s for s in page.scripts if not s["src"] and s["type"] != "application/json"]
    assert inline, "Dash's page starts its renderer with an inline script"
    for s in inline:
        digest = base64.b64encode(hashlib.sha256(s["text"].encode()).digest()).decode()
        assert f"'sha256-{digest}'" in script_src, s["text"][:80]
    assert script_src[0] == "'self'" and not any("http" in v or v == "*" for v in script_src)
    external = [u for u in [s["src"] for s in page.scripts if s["src"]] + page.links if not u.startswith("/") or u.startswith("//")]
    assert not external, f"served from elsewhere: {external}"
    for url in [s["src"] for s in page.scripts if s["src"]] + page.links:
        assert c.get(url).status_code == 200, url
    config = json.loads(next(s["text"] for s in page.scripts if s["type"] == "application/json"))
    assert config["serve_locally"] is True and config["ui"] is False and config["props_check"] is False


@pytest.mark.parametrize(
    "path",
    ["/console", "/admin", "/static/x", "/../etc/passwd", "/%2e%2e/etc/passwd", "/assets/../app.py",
     "/assets/%2e%2e/app.py", "/_dash-layout/../console", "/wp-login.php", "/_dash-component-suitesx", "/healthz/x"],
)
def test_paths_outside_the_single_page_are_404(app, path: str) -> None:
    r = app.server.test_client().get(path)
    assert r.status_code == 404
    assert r.get_data(as_text=True) == "404 Not Found\n"
    _assert_hardened(r, path)


def test_every_dash_route_is_allowed(app) -> None:
    c = app.server.test_client()
    exact, prefixes = allowed_paths(app)
    prefix = app.config.routes_pathname_prefix
    for route in app.routes:
        if route == prefix + "<path:path>":
            assert c.get(prefix + "anything-else").status_code == 404  # Dash's multi-page catch-all is closed
            continue
        concrete = route.split("<")[0]
        assert concrete in exact or concrete.startswith(prefixes), route
    assert c.get(ENDPOINT).status_code == 404  # a POST-only path: only Dash's (closed) catch-all answers a GET
    for path in sorted(exact - {ENDPOINT}):
        assert c.get(path).status_code == 200, path


def test_debug_and_dev_tools_are_off(app) -> None:
    assert app.server.debug is False and app.server.config["PROPAGATE_EXCEPTIONS"] is False
    assert app.server.config["MAX_CONTENT_LENGTH"] == Settings().max_body_bytes == 4 << 20


# ---------------------------------------------------------------------------- body limit
def test_bodies_over_the_limit_get_413_with_or_without_content_length(app, dash, engine) -> None:
    c = app.server.test_client()
    r = c.post(ENDPOINT, data=b"x" * FIVE_MB, content_type="application/json")
    assert r.status_code == 413 and r.get_data(as_text=True) == f"413 Content Too Large: request bodies are limited to {4 << 20} bytes\n"
    # chunked, as gunicorn passes it on (it terminates the stream and says so)
    chunked = {"wsgi.input_terminated": True}
    r = c.post(ENDPOINT, input_stream=io.BytesIO(b"x" * FIVE_MB), content_type="application/json",
               headers={"Transfer-Encoding": "chunked"}, environ_overrides=chunked)
    assert r.status_code == 413
    good = json.dumps(dash.payload(f"{ID.RDM_GRID}.figure", _rdm_values(engine))).encode()
    r = c.post(ENDPOINT, input_stream=io.BytesIO(good), content_type="application/json",
               headers={"Transfer-Encoding": "chunked"}, environ_overrides=chunked)
    assert r.status_code == 200 and "response" in r.get_json()
    for path in ("/", "/healthz"):
        assert c.post(path, data=b"x" * FIVE_MB).status_code == 413


def test_the_response_cache_reading_first_still_gives_413(engine, tmp_path) -> None:
    """Even with the guard moved behind the response cache's hook (which reads the body), a 413 stays a 413."""
    moved = create_app(Settings(warm=False, cache_dir=str(tmp_path)), engine=engine)
    hooks = moved.server.before_request_funcs[None]
    names = [getattr(f, "__name__", "") for f in hooks]
    assert names[:2] == ["_setup_server", "guard"], names  # Dash's set-up, then the guard, then the rest
    hooks.append(hooks.pop(1))
    r = moved.server.test_client().post(ENDPOINT, input_stream=io.BytesIO(b"x" * FIVE_MB), content_type="application/json",
                                        headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 413


def test_the_limit_follows_the_setting(engine, tmp_path) -> None:
    small = create_app(Settings(warm=False, cache_dir=str(tmp_path), max_body_bytes=100_000), engine=engine)
    c = small.server.test_client()
    assert c.post(ENDPOINT, data=b"x" * 100_001, content_type="application/json").status_code == 413
    assert c.post(ENDPOINT, data=b"x" * 99_999, content_type="application/json").status_code == 400


# ---------------------------------------------------------------------------- errors
def test_an_unexpected_error_is_a_generic_500_logged_server_side(monkeypatch, caplog) -> None:
    monkeypatch.setenv("FLASK_DEBUG", "1")  # Flask would turn its debug mode on from this
    tiny = _tiny_app(Settings())
    assert tiny.server.debug is False
    c = tiny.server.test_client()
    r = _tiny_call(c)
    text = r.get_data(as_text=True)
    assert r.status_code == 500 and text == GENERIC_ERROR + "\n"
    assert "secret" not in text and "Traceback" not in text and "RuntimeError" not in text
    _assert_hardened(r, "500")
    assert any(rec.exc_info and "secret detail" in str(rec.exc_info[1]) for rec in caplog.records)

    def raising_view() -> str:
        raise ValueError("another secret: /home/user/.ssh/id_rsa")

    tiny.server.view_functions["/_dash-layout"] = raising_view
    r = c.get("/_dash-layout")
    assert r.status_code == 500 and r.get_data(as_text=True) == GENERIC_ERROR + "\n"


def test_each_distinct_error_logs_its_traceback_once_then_a_count(caplog) -> None:
    tiny = _tiny_app(Settings())
    c = tiny.server.test_client()
    caplog.set_level("ERROR", logger="repgeom.ui.security")
    for _ in range(5):
        assert _tiny_call(c).status_code == 500

    def other() -> str:
        raise KeyError("elsewhere")

    tiny.server.view_functions["/_dash-layout"] = other
    for _ in range(3):
        assert c.get("/_dash-layout").status_code == 500
    records = [r for r in caplog.records if r.name == "repgeom.ui.security"]
    assert len(records) == 8
    with_traceback = [r for r in records if r.exc_info]
    assert [type(r.exc_info[1]).__name__ for r in with_traceback] == ["RuntimeError", "KeyError"]
    counted = [r.getMessage() for r in records if not r.exc_info]
    assert counted[-1].endswith("(3 times; traceback logged the first time)") and "KeyError at " in counted[-1]
    assert "RuntimeError at " in counted[3] and "(5 times;" in counted[3]


class _BadChunks(io.RawIOBase):
    """A request stream that fails as a WSGI server's chunk decoder does on ``zz\\r\\nabc\\r\\n0\\r\\n\\r\\n``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # noqa: ANN001
        raise self.exc


def test_a_malformed_chunked_body_is_400(app, caplog) -> None:
    from gunicorn.http.errors import InvalidChunkSize

    c = app.server.test_client()
    for exc in (OSError("Invalid chunk header"), InvalidChunkSize(b"zz")):  # Werkzeug's dev server, gunicorn
        r = c.post(ENDPOINT, content_type="application/json", headers={"Transfer-Encoding": "chunked"},
                   environ_overrides={"wsgi.input_terminated": True, "wsgi.input": _BadChunks(exc)})
        assert r.status_code == 400 and r.get_data(as_text=True).startswith("400 Bad Request"), exc
        if isinstance(exc, InvalidChunkSize):  # Werkzeug itself makes its OSError a 400 (a client that went away)
            assert r.get_data(as_text=True) == f"400 Bad Request: {BAD_CHUNKS}\n"
    assert not [r for r in caplog.records if r.exc_info]


def test_an_unregistered_component_suite_is_404_without_a_traceback(app, caplog) -> None:
    c = app.server.test_client()
    for path in ("/_dash-component-suites/flask/app.py", "/_dash-component-suites/dash/not-there.js",
                 "/_dash-component-suites/os/path.py"):
        r = c.get(path)
        assert r.status_code == 404 and r.get_data(as_text=True) == "404 Not Found\n", path
        _assert_hardened(r, path)
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]


def test_polling_a_job_with_another_pages_handles_is_400(app, dash, caplog) -> None:
    background = [k for k, spec in app.callback_map.items() if spec.get("background")]
    assert background, "the app has background callbacks"
    body = json.dumps(dash.payload(background[0].strip(".").split("...")[0], {}))
    c = app.server.test_client()
    for args in ({"cacheKey": "0" * 64, "job": "1"}, {"cacheKey": "forged.signature"}, {"job": "12"}):
        r = c.post(ENDPOINT, query_string=args, data=body, content_type="application/json")
        assert r.status_code == 400 and "do not belong to this page" in r.get_data(as_text=True), (args, r.get_data()[:300])
    assert not [r for r in caplog.records if r.exc_info]


def test_debug_setting_leaves_errors_to_dash_dev_tools() -> None:
    tiny = _tiny_app(Settings(debug=True))
    assert Exception not in tiny.server.error_handler_spec[None][None]


def test_a_workers_first_request_may_be_any_callback(engine, tmp_path) -> None:
    """Dash completes its callback map on a worker's first request: the guard must see the complete one."""
    fresh = create_app(Settings(warm=False, cache_dir=str(tmp_path)), engine=engine)
    before = set(fresh.callback_map)
    served = DashClient(create_app(Settings(warm=False, cache_dir=str(tmp_path)), engine=engine))
    served.client.get("/")  # Dash adds the cancel callbacks when it serves the page
    late = [k for k in served.app.callback_map if k not in before]
    assert late, "Dash adds callbacks (the embeddings' cancel) when it serves its first request"
    body = {**served.payload(late[0].strip("."), {}), "output": late[0]}
    first = fresh.server.test_client().post(ENDPOINT, data=json.dumps(body), content_type="application/json")
    assert first.status_code in (200, 204)


def test_malformed_callback_requests_are_400(app) -> None:
    c = app.server.test_client()
    for body in (b"not json", b"[]", b"{}", b"[" * 100_000 + b"]" * 100_000, json.dumps({"output": "../../etc/passwd"}).encode()):
        r = c.post(ENDPOINT, data=body, content_type="application/json")
        assert r.status_code == 400 and r.get_data(as_text=True).startswith("400 Bad Request: "), body[:40]


# ---------------------------------------------------------------------------- cross-site requests
def test_cross_origin_posts_are_403_and_same_origin_ones_run(app, dash, engine) -> None:
    c = app.server.test_client()  # its requests go to http://localhost
    body = json.dumps(dash.payload(f"{ID.RDM_GRID}.figure", _rdm_values(engine)))
    refused = {
        "text/plain from another site": ({"Origin": "https://evil.example"}, "text/plain"),
        "JSON from another site": ({"Origin": "https://evil.example"}, "application/json"),
        "another port": ({"Origin": "http://localhost:8050"}, "application/json"),
        "another scheme": ({"Origin": "https://localhost"}, "application/json"),
        "Origin: null": ({"Origin": "null"}, "text/plain"),
        "a look-alike host": ({"Origin": "http://localhost.evil.example"}, "application/json"),
        "Referer from another site": ({"Referer": "https://evil.example/page"}, "text/plain"),
        "a form with neither header": ({}, "application/x-www-form-urlencoded"),
        "text/plain with neither header": ({}, "text/plain"),
        "a same-site Referer overruled by Origin": ({"Origin": "https://evil.example", "Referer": "http://localhost/"}, "application/json"),
    }
    for what, (headers, ctype) in refused.items():
        r = c.post(ENDPOINT, data=body, content_type=ctype, headers=headers)
        assert r.status_code == 403 and r.get_data(as_text=True) == CROSS_ORIGIN + "\n", what
        _assert_hardened(r, what)
    assert c.post("/", data=b"x", content_type="text/plain", headers={"Origin": "https://evil.example"}).status_code == 403
    allowed = {
        "Origin": {"Origin": "http://localhost"},
        "Origin with the default port": {"Origin": "http://LOCALHOST:80"},
        "Referer only": {"Referer": "http://localhost/?tab=rdms"},
        "neither (JSON)": {},
    }
    for what, headers in allowed.items():
        r = c.post(ENDPOINT, data=body, content_type="application/json", headers=headers)
        assert r.status_code == 200 and "response" in r.get_json(), what
    assert SECURITY_HEADERS["Referrer-Policy"] == "same-origin"  # browsers send the real Origin on same-origin POSTs


def test_same_origin_rule() -> None:
    assert same_origin({"Origin": "https://h.example"}, "https", "h.example:443", "text/plain")
    assert same_origin({"Origin": "http://[::1]:8050"}, "http", "[::1]:8050", "text/plain")
    assert not same_origin({"Origin": "http://h.example:notaport"}, "http", "h.example", "application/json")
    assert not same_origin({"Origin": ""}, "http", "h.example", "application/json")
    assert not same_origin({"Referer": "/relative"}, "http", "h.example", "application/json")
    assert same_origin({}, "http", "h.example", "application/json")
    assert not same_origin({}, "http", "h.example", "multipart/form-data")


# ---------------------------------------------------------------------------- start-up refusals
def test_check_runtime_refuses_old_torch_and_forced_unsafe_loading() -> None:
    with pytest.raises(RepgeomError) as exc:
        check_runtime("2.9.1", env={})
    assert str(exc.value) == "repgeom needs torch >= 2.10 for safe checkpoint loading, found 2.9.1"
    for old in ("1.13.1", "2.0", "2.9.9+cu121", "not-a-version"):
        with pytest.raises(RepgeomError, match="needs torch >= 2.10"):
            check_runtime(old, env={})
    for ok in ("2.10.0", "2.10.0a0+git1234", "2.14.1+cpu", "3.0"):
        check_runtime(ok, env={})
    with pytest.raises(RepgeomError, match=UNSAFE):
        check_runtime("2.14.1", env={UNSAFE: "1"})
    check_runtime("2.14.1", env={UNSAFE: "0"})
    check_runtime()  # the torch installed here is new enough


def _main(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``app.main`` in a fresh interpreter after ``code`` (its exit status and output)."""
    script = f"{code}\nimport app\nraise SystemExit(app.main(['--no-warm']))"
    environ = {k: v for k, v in os.environ.items() if k != UNSAFE} | env
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)


def test_app_refuses_to_start_with_old_torch(monkeypatch) -> None:
    monkeypatch.delenv(UNSAFE, raising=False)
    monkeypatch.setattr(torch, "__version__", "2.9.1")
    with pytest.raises(RepgeomError, match="found 2.9.1"):
        create_app(Settings(warm=False))
    done = _main("import torch; torch.__version__ = '2.9.1'")
    assert done.returncode == 2
    assert done.stderr == "app.py: error: repgeom needs torch >= 2.10 for safe checkpoint loading, found 2.9.1\n"


def test_app_refuses_to_start_when_unsafe_loading_is_forced(monkeypatch) -> None:
    monkeypatch.setenv(UNSAFE, "true")
    with pytest.raises(RepgeomError, match=UNSAFE):
        create_app(Settings(warm=False))
    done = _main("", **{UNSAFE: "1"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"app.py: error: refusing to start while {UNSAFE} is set")


# ---------------------------------------------------------------------------- a planted pickle
class _Plant:
    """Pickles as a call of ``os.system(command)``: what a hostile checkpoint carries."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def _planted_bytes(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"conv1.weight": _Plant(f"touch {shlex.quote(str(marker))}")}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict[str, Any]:
    """A copy of ``models/`` where one checkpoint runs ``touch <marker>`` when fully unpickled (hash updated)."""
    root = tmp_path_factory.mktemp("planted")
    models = root / "models"
    shutil.copytree(ROOT / "models", models)
    manifest = json.loads((models / "manifest.json").read_text())
    victim = next(m for m in manifest["models"] if m["id"] not in ("recurrent", "feedforward"))
    # Control: the same construction, fully unpickled in another process, does run its command.
    control = root / "control-ran"
    probe = root / "control.pt"
    probe.write_bytes(_planted_bytes(control))
    assert zipfile.is_zipfile(probe)  # torch's own checkpoint format
    code = "import pickle, sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); pickle.loads(z.read(next(n for n in z.namelist() if n.endswith('data.pkl'))))"
    subprocess.run([sys.executable, "-c", code, str(probe)], check=True, timeout=60)
    assert control.exists(), "the planted pickle would not even run its command: the test would prove nothing"
    # The plant: only the weights-only unpickler stands between it and the command.
    marker = root / "pwned"
    data = _planted_bytes(marker)
    (models / victim["file"]).write_bytes(data)
    victim["sha256"] = hashlib.sha256(data).hexdigest()
    (models / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return {"root": root, "models": models, "victim": victim["id"], "marker": marker, "n": len(manifest["models"])}


def test_planted_pickle_is_refused_and_the_app_serves_the_others(planted) -> None:
    victim, marker = planted["victim"], planted["marker"]
    _, errors = load_all(planted["models"])
    assert list(errors) == [victim] and "not a plain weights-only checkpoint" in errors[victim]
    engine = Engine(str(planted["models"]), device="cpu")
    app = create_app(Settings(models_dir=str(planted["models"]), warm=False, cache_dir=str(planted["root"] / "cache")), engine=engine)
    assert not marker.exists(), "the planted command ran"
    assert victim in engine.load_errors and victim not in engine.model_ids
    c = app.server.test_client()
    health = c.get("/healthz")
    assert health.status_code == 200 and health.get_json()["models"] == planted["n"] - 1
    page = c.get("/")
    assert page.status_code == 200 and "_dash-renderer" in page.get_data(as_text=True)
    assert f"Model {victim} was not loaded" in c.get("/_dash-layout").get_data(as_text=True)
    dash = DashClient(app)
    other = next(m for m in engine.model_ids if m != victim)
    out = dash.outputs(f"{ID.RDM_GRID}.figure", _rdm_values(engine, model=other, nodes=list(default_nodes(engine, other))))
    assert out[f"{ID.RDM_GRID}.figure"]["data"] and out.get(f"{ID.RDM_MESSAGE}.children") == ""
    refused = _rdm_values(engine)
    refused["view.data"]["model"] = victim
    out = dash.outputs(f"{ID.RDM_GRID}.figure", refused)
    assert f"unknown model {victim!r}" in json.dumps(out[f"{ID.RDM_MESSAGE}.children"])
    assert not marker.exists()


# ---------------------------------------------------------------------------- under gunicorn
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _post(port: int, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{ENDPOINT}", data=body, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _raw_status(port: int, head: bytes, chunks) -> int:  # noqa: ANN001 - an iterable of bytes
    """Send a request as raw bytes (the body from another thread) and return the answer's status."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)

        def send() -> None:
            try:
                for chunk in chunks:
                    sock.sendall(chunk)
            except OSError:  # the server answered and closed before the whole body was sent
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        data = b""
        while b"\r\n" not in data:
            part = sock.recv(4096)
            if not part:
                break
            data += part
        sender.join(timeout=30)
    return int(data.split(b" ", 2)[1])


@pytest.mark.slow
@pytest.mark.load
def test_planted_pickle_under_gunicorn(planted, engine, dash) -> None:
    victim, marker = planted["victim"], planted["marker"]
    port = _free_port()
    env = {**os.environ, "REPGEOM_MODELS_DIR": str(planted["models"]), "REPGEOM_WARM": "0", "REPGEOM_DEVICE": "cpu",
           "REPGEOM_CACHE_DIR": str(planted["root"] / "gunicorn-cache"), "OMP_NUM_THREADS": "1"}
    env.pop(UNSAFE, None)
    log = planted["root"] / "gunicorn.log"
    cmd = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "2",
           "--timeout", "120", "--no-control-socket", "app:server"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if _get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not serve within 180 s:\n" + log.read_text()[-3000:]
            time.sleep(0.2)
        assert not marker.exists(), "the planted command ran under gunicorn"
        status, _, body = _get(port, "/healthz")
        assert status == 200 and json.loads(body)["models"] == planted["n"] - 1
        status, headers, body = _get(port, "/")
        assert status == 200 and b"_dash-renderer" in body
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name) == value
        assert "script-src 'self' 'sha256-" in headers["Content-Security-Policy"]
        assert not any(ch.isdigit() for ch in headers.get("Server", "")), headers.get("Server")
        assert _get(port, "/console")[0] == 404
        assert _get(port, "/../etc/passwd")[0] == 404
        values = _rdm_values(engine, model="feedforward", nodes=list(default_nodes(engine, "feedforward")))
        status, body = _post(port, json.dumps(dash.payload(f"{ID.RDM_GRID}.figure", values)).encode())
        assert status == 200 and json.loads(body)["response"][ID.RDM_GRID]["figure"]["data"]
        values["view.data"]["model"] = victim
        status, body = _post(port, json.dumps(dash.payload(f"{ID.RDM_GRID}.figure", values)).encode())
        assert status == 200 and f"unknown model {victim!r}".encode() in body
        head = (f"POST {ENDPOINT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {FIVE_MB}\r\n\r\n").encode()
        assert _raw_status(port, head, _chunks(FIVE_MB)) == 413
        head = (f"POST {ENDPOINT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n").encode()
        chunked = (b"%x\r\n%s\r\n" % (len(c), c) for c in _chunks(FIVE_MB))
        assert _raw_status(port, head, [*chunked, b"0\r\n\r\n"]) == 413
        assert _raw_status(port, head, [b"zz\r\nabc\r\n0\r\n\r\n"]) == 400  # a malformed chunk size
        assert _get(port, "/_dash-component-suites/flask/app.py")[0] == 404
        assert _get(port, "/healthz")[0] == 200  # still serving
        assert not marker.exists()
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(timeout=10)


def test_redis_unreachable_while_serving_is_a_503_that_says_so(caplog) -> None:
    import redis
    from kombu.exceptions import OperationalError

    from repgeom.ui.security import REDIS_DOWN

    tiny = _tiny_app(Settings())
    c = tiny.server.test_client()
    raised = [redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
              OperationalError("timed out"), RuntimeError("Retry limit exceeded ... the Celery result store backend")]
    for exc in raised:
        def view(exc=exc) -> str:
            try:
                raise exc
            except Exception as inner:
                raise ValueError("wrapped") from inner

        tiny.server.view_functions["/_dash-layout"] = view
        r = c.get("/_dash-layout")
        assert r.status_code == 503 and r.get_data(as_text=True) == REDIS_DOWN + "\n" and r.headers["Retry-After"] == "30"
    assert _tiny_call(c).status_code == 500  # any other error stays a generic 500
