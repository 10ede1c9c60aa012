"""Production hardening of the dashboard's Flask server.

Design notes:
    Everything here is installed by one call, :func:`install_security`, at the end of
    :func:`repgeom.ui.factory.create_app` (after every callback and route exists).

    * *Request guard first.* One ``before_request`` hook is put right after Dash's
      set-up hook (which completes the callback map on a worker's first request and
      reads no body) and ahead of every other hook, the response cache's
      (:mod:`repgeom.ui.response_cache`) included, which reads the whole body. The guard
      answers 404 to any path outside an allow-list, 413 to a body over
      ``settings.max_body_bytes`` (Flask's ``MAX_CONTENT_LENGTH``: a declared
      ``Content-Length`` is refused before anything is read; a chunked body, which
      Werkzeug silently cuts off at the limit, is refused when it reaches the limit),
      and 400 to a callback request that is not a Dash envelope (not a JSON object,
      nested too deeply to parse, an unknown callback, outputs other than the
      callback's, the wrong number of inputs or states: Dash itself would answer
      those with a 500). Only then does anything else read the body; a refusal
      raised while reading stays an HTTP error, never a 500.
    * *Allow-list, not deny-list.* Dash registers a catch-all ``<path:path>`` that
      answers every GET with the page (for multi-page apps) and Flask a ``/static``
      folder; this app is one page. Allowed are Dash's own routes under
      ``app.config.routes_pathname_prefix`` (the index, ``_dash-layout``,
      ``_dash-dependencies``, ``_dash-update-component``, ``_reload-hash``,
      ``_favicon.ico``, ``_dash-component-suites/...``, ``assets/...``), Dash's health
      endpoint when configured, and the app's ``/healthz``. Anything else, ``/console``
      included, is 404, and so is any path with a ``..`` segment or one that only the
      catch-all would answer (a GET of the callback path).
    * *Errors say little.* Unless ``settings.debug``, Flask's debug flag is forced off
      (``FLASK_DEBUG`` cannot turn it on), exceptions do not propagate to the WSGI
      server, and an unexpected exception becomes a one-line generic 500 (the traceback
      goes to the log). HTTP errors (404, 405, 413, ...) are one line of text too.
      With ``settings.debug`` the generic handler is left out, so Dash's dev tools show
      the traceback to the developer. Each distinct unexpected error (its type and the
      line that raised it) logs its traceback once, then one line with a count, so a
      client repeating a request that hits a bug cannot flood the log.
    * *A client's mistake is a 4xx, never a 500*: a malformed chunked body (400), a
      component-suite file Dash has not registered (404, no traceback), a background
      job polled with handles signed for another page load (400, where Dash would fail
      reading a job key ``None``). A job that ends without a result (cancelled, or its
      process killed) is answered as Dash's protocol defines it: 204 No Content, which
      the renderer takes as "nothing to update"; Dash's poll answer has no place for a
      message other than the callback's own outputs.
    * *Redis unreachable* (scaled out: a job cannot be queued or read) is a 503 with
      ``Retry-After`` and one line saying so, not a generic 500; the shared caches
      themselves treat an unreachable Redis as a miss (:class:`repgeom.shared_cache.RedisStore`).
    * *Headers on every response*, assets and replayed answers included: a
      Content-Security-Policy whose ``script-src`` is ``'self'`` plus the SHA-256 of
      each inline script Dash writes into the page (``app.csp_hashes()``: the renderer
      start-up line and any clientside callbacks; the ``_dash-config`` block is JSON,
      not a script), and nothing that evaluates text as code: no ``'unsafe-eval'``
      (the figures draw with plotly.js's cartesian bundle, which has no WebGL traces,
      the only part of plotly.js that compiles code with ``new Function``;
      ``tests/browser/test_csp.py`` shows ``eval`` refused), inline styles (Plotly writes ``<style>`` elements),
      ``data:``/``blob:`` images (digit thumbnails, PNG export), no framing, no
      plugins, no ``<base>``; plus ``X-Frame-Options: DENY``,
      ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``.
      Scripts and styles are served by the app itself (``serve_locally=True``), so
      ``'self'`` is enough and no CDN is ever contacted. The ``Server`` header is the
      WSGI server's (gunicorn sends no version).
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from dash import Dash, Output
from dash._callback import _read_request_handles
from dash.exceptions import DependencyException
from flask import Response, abort, request
from werkzeug.exceptions import HTTPException

from ..settings import Settings

__all__ = [
    "BAD_CHUNKS",
    "CROSS_ORIGIN",
    "GENERIC_ERROR",
    "REDIS_DOWN",
    "SECURITY_HEADERS",
    "allowed_paths",
    "content_security_policy",
    "install_security",
    "same_origin",
]

log = logging.getLogger(__name__)

#: The whole body of an unexpected server error.
GENERIC_ERROR = "internal server error; the server log has the details"
#: The whole body of a refused cross-site POST.
CROSS_ORIGIN = "403 Forbidden: cross-origin request refused (POSTs must come from this server's own pages)"
#: Why a malformed request body is refused.
BAD_CHUNKS = "the request body could not be read (malformed chunked encoding)"
#: The whole body of an answer that needed Redis (scaled out) while it was unreachable.
REDIS_DOWN = "503 Service Unavailable: the shared job queue (Redis) is unreachable; try again shortly"
_REDIS_ERRORS = frozenset({
    "redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError", "kombu.exceptions.OperationalError",
    "celery.exceptions.TimeoutError",
})
#: Headers set on every response besides the Content-Security-Policy.
SECURITY_HEADERS: Mapping[str, str] = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Dash's fixed routes, relative to routes_pathname_prefix ("" is the page itself).
_DASH_ROUTES = ("", "_dash-layout", "_dash-dependencies", "_dash-update-component", "_reload-hash", "_favicon.ico")
_DASH_FOLDERS = ("_dash-component-suites/",)
_APP_ROUTES = ("/healthz",)
_CALLBACK = "_dash-update-component"


def content_security_policy(script_hashes: Sequence[str]) -> str:
    """The Content-Security-Policy header value.

    Args:
        script_hashes: CSP source expressions for the page's inline scripts, such as
            ``"'sha256-...'"`` (what :meth:`dash.Dash.csp_hashes` returns).

    Returns:
        The policy, directives separated by ``"; "``.
    """
    script = ["'self'", *script_hashes]
    directives = {
        "default-src": ["'self'"],
        "script-src": script,
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{k} {' '.join(v)}" for k, v in directives.items())


def allowed_paths(app: Dash) -> tuple[frozenset[str], tuple[str, ...]]:
    """The paths the server answers: exact paths and folder prefixes.

    Args:
        app: the Dash app (its ``routes_pathname_prefix``, ``assets_url_path`` and
            health endpoint decide the paths).

    Returns:
        ``(exact, prefixes)``: a request path is allowed when it is in ``exact`` or
        starts with one of ``prefixes``.
    """
    prefix = app.config.routes_pathname_prefix or "/"
    exact = {prefix + name for name in _DASH_ROUTES} | set(_APP_ROUTES)
    health = app.config.get("health_endpoint")
    if health:
        exact.add(prefix + str(health).lstrip("/"))
    assets = prefix + str(app.config.assets_url_path).strip("/") + "/"
    return frozenset(exact), (*(prefix + f for f in _DASH_FOLDERS), assets)


_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url``, lower-case, without the scheme's default port; ``None`` if it has none."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port that is not a number
        return None
    if not scheme or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port is not None and str(port) != _DEFAULT_PORTS.get(scheme) else "")


def same_origin(headers: Mapping[str, str], scheme: str, host: str, mimetype: str) -> bool:
    """Whether a POST comes from this server's own pages.

    Args:
        headers: the request's headers (``Origin``, ``Referer``).
        scheme: the request's own scheme (``http`` or ``https``, after any trusted proxy's word).
        host: the request's ``Host`` (``name[:port]``).
        mimetype: the request's content type without parameters.

    Returns:
        ``True`` when ``Origin`` (or, without it, ``Referer``) names ``scheme://host``,
        or when neither is sent and the body is ``application/json``.
    """
    own = _origin_of(f"{scheme}://{host}")
    origin = headers.get("Origin")
    if origin is not None:
        return own is not None and _origin_of(origin) == own
    referer = headers.get("Referer")
    if referer:
        return own is not None and _origin_of(referer) == own
    return mimetype == "application/json"


def _text(message: str, status: int) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain")


def _envelope_error(body: Any, callback_map: Mapping[str, Any]) -> str | None:
    """Why ``body`` is not a Dash callback request for one of ``callback_map``'s callbacks, or ``None``."""
    if not isinstance(body, dict):
        return "a callback request must be a JSON object"
    output = body.get("output")
    if not isinstance(output, str) or output not in callback_map:
        return "unknown callback output"
    spec = callback_map[output]
    if "callback" not in spec:  # a clientside callback: Dash would fail looking for its Python function (a 500)
        return f"{output[:80]} is computed in the browser, not by the server"
    if not _outputs_match(spec.get("output"), body.get("outputs")):
        return f"the outputs do not match the callback {output[:80]}"
    for key in ("inputs", "state"):
        items = body.get(key, [])
        if not isinstance(items, list) or len(items) != len(spec.get(key, [])):
            return f"a callback request for {output[:80]} needs {len(spec.get(key, []))} {key}"
        for item in items:
            group = item if isinstance(item, list) else [item]
            if not all(isinstance(i, dict) and "id" in i and isinstance(i.get("property"), str) for i in group):
                return f"each of the {key} must be an object with an id and a property"
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        return "changedPropIds must be a list of strings"
    return None


def _outputs_match(expected: Any, given: Any) -> bool:
    """Whether a request's ``outputs`` name the callback's outputs (Dash's own check, which raises a 500)."""
    if not isinstance(expected, (list, tuple)):
        expected, given = [expected], [given]
    elif not isinstance(given, list) or len(given) != len(expected):
        return False
    for out, spec in zip(expected, given, strict=True):
        for item in spec if isinstance(spec, list) else [spec]:
            if not isinstance(item, dict) or not isinstance(item.get("property"), str) or "id" not in item:
                return False
            try:
                if Output(item["id"], item["property"].split("@")[0]) != out:
                    return False
            except Exception:  # an id Dash cannot even represent
                return False
    return True


def _redis_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says Redis or the Celery broker cannot be reached."""
    seen = 0
    while exc is not None and seen < 8:
        names = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
        if names & _REDIS_ERRORS or "Celery result store" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _unreadable_body(exc: BaseException) -> bool:
    """Whether ``exc`` is the WSGI server's word that the request body is malformed.

    Werkzeug's dev server raises :class:`OSError` for a bad chunk header; gunicorn raises
    the ``ParseException`` family of :mod:`gunicorn.http.errors` (``InvalidChunkSize``...).
    """
    if isinstance(exc, (OSError, ValueError)):
        return True
    return any(c.__module__.startswith("gunicorn.http") for c in type(exc).__mro__)


def _handle_error(body: Mapping[str, Any], callback_map: Mapping[str, Any]) -> str | None:
    """Why a poll of a background callback carries handles this page did not get, or ``None``.

    Dash signs a job's ``cacheKey`` and ``job`` for the page load that started it
    (``endId``); with another page's handles Dash reads them as missing and fails deep
    inside (a 500). Here they are a 400.
    """
    args = request.args
    if "cacheKey" not in args and "job" not in args:
        return None
    if not callback_map[body["output"]].get("background"):
        return None
    try:
        cache_key, job = _read_request_handles()
    except Exception:  # a handle Dash cannot even decode
        cache_key = job = None
    if ("cacheKey" in args and cache_key is None) or ("job" in args and job is None):
        return "the background job's handles do not belong to this page; reload the page"
    return None


class _ErrorTally:
    """Unexpected errors by kind and place: the first of each logged with its traceback, the rest counted.

    Args:
        max_kinds: distinct (type, place) pairs remembered; beyond them errors are counted together.
    """

    def __init__(self, max_kinds: int = 256) -> None:
        self.max_kinds = max_kinds
        self.counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def log(self, exc: BaseException, where: str) -> None:
        """Log ``exc`` (raised while serving ``where``): its traceback the first time, a count after."""
        frames = traceback.extract_tb(exc.__traceback__)
        place = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        key = (type(exc).__qualname__, place)
        with self._lock:
            if key not in self.counts and len(self.counts) >= self.max_kinds:
                key = ("other", "?")
            n = self.counts[key] = self.counts.get(key, 0) + 1
        if n == 1 and key != ("other", "?"):
            log.error("unhandled error on %s", where, exc_info=exc)
        else:
            log.error("unhandled error on %s: %s at %s (%d times; traceback logged the first time)", where, key[0], key[1], n)


def install_security(app: Dash, settings: Settings) -> None:
    """Harden ``app``'s Flask server for production (see the module notes).

    Call once, after every callback and route is registered (the CSP hashes the inline
    scripts that exist then).

    Args:
        app: the Dash app to harden (its ``server`` is modified in place).
        settings: ``debug`` keeps Flask's debug mode and leaves unexpected errors to
            Dash's dev tools; ``max_body_bytes`` bounds request bodies.
    """
    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = int(settings.max_body_bytes)
    if not settings.debug:
        server.debug = False
        server.config["PROPAGATE_EXCEPTIONS"] = False
    exact, prefixes = allowed_paths(app)
    callback_path = (app.config.routes_pathname_prefix or "/") + _CALLBACK
    catch_all = (app.config.routes_pathname_prefix or "/") + "<path:path>"
    policy = content_security_policy(app.csp_hashes())

    def guard() -> Response | None:
        path = request.path
        if ".." in path.split("/") or not (path in exact or path.startswith(prefixes)):
            abort(404)
        if request.url_rule is not None and request.url_rule.rule == catch_all:
            abort(404)  # an allowed path with a method only the catch-all answers (GET of the callback path)
        if request.content_length is not None and request.content_length > settings.max_body_bytes:
            abort(413)
        if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            # Werkzeug cuts a chunked body off at the limit without a word: a body that
            # reaches the limit may be longer, and is refused.
            try:
                size = len(request.get_data(cache=True))
            except Exception as exc:
                if not _unreadable_body(exc):
                    raise
                return _text(f"400 Bad Request: {BAD_CHUNKS}", 400)
            if size >= settings.max_body_bytes:
                abort(413)
        if request.method == "POST" and not same_origin(request.headers, request.scheme, request.host, request.mimetype):
            return _text(CROSS_ORIGIN, 403)
        if request.method != "POST" or path != callback_path:
            return None
        try:
            body = request.get_json(force=True, silent=True)
        except RecursionError:
            body = None
        reason = _envelope_error(body, app.callback_map) or _handle_error(body, app.callback_map)
        return None if reason is None else _text(f"400 Bad Request: {reason}", 400)

    hooks = server.before_request_funcs.setdefault(None, [])
    # Right after Dash's own set-up hook (it completes the callback map on the first request
    # and reads no body), before every other hook.
    hooks.insert(next((i + 1 for i, f in enumerate(hooks) if getattr(f, "__self__", None) is app), 0), guard)

    @server.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response | HTTPException:
        if exc.code is None:
            return exc
        if exc.code == 413:
            return _text(f"413 Content Too Large: request bodies are limited to {settings.max_body_bytes} bytes", 413)
        return _text(f"{exc.code} {exc.name}", exc.code)

    @server.errorhandler(DependencyException)
    def unregistered_file(exc: DependencyException) -> Response:
        # A component-suite path Dash has not registered (a package or a file): the client's mistake.
        return _text("404 Not Found", 404)

    if not settings.debug:
        seen = _ErrorTally()

        @server.errorhandler(Exception)
        def server_error(exc: Exception) -> Response:
            if isinstance(exc, HTTPException):
                return http_error(exc)
            seen.log(exc, f"{request.method} {request.path}")
            if _redis_unreachable(exc):
                response = _text(REDIS_DOWN, 503)
                response.headers["Retry-After"] = "30"
                return response
            return _text(GENERIC_ERROR, 500)

    @server.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = policy
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        return response
