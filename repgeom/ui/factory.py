"""The app factory: settings in, a ready Dash app out (models loaded, callbacks wired)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import shutil
import threading
import time
from pathlib import Path

from dash import Dash
from flask import jsonify

from ..core.errors import RepgeomError
from ..pipeline import Engine
from ..settings import Settings, check_runtime
from ..shared_cache import CircuitBreaker, open_store
from . import views
from .background import Background, PoolManager, default_cache_dir, make_background
from .callbacks import register
from .layout import build_layout
from .response_cache import install_response_cache
from .security import install_security
from .state import View

__all__ = ["ASSETS", "build_fingerprint", "create_app"]

log = logging.getLogger(__name__)
#: The repository's ``assets/`` folder: CSS served locally, no CDN.
ASSETS = Path(__file__).resolve().parents[2] / "assets"


def build_fingerprint(models_manifest: Path | None = None) -> str:
    """A hash of this build: the package's code, the assets and the models' manifest.

    Cached answers and background jobs are stored under it, so a changed build never
    replays what an older one computed.
    """
    h = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    files = sorted(package.rglob("*.py")) + sorted(ASSETS.rglob("*"))
    if models_manifest is not None and models_manifest.is_file():
        files.append(models_manifest)
    for f in files:
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


#: A folder another build left in the cache folder is deleted once unused this long.
STALE_BUILD_S = 24 * 3600


def _prune_stale_builds(cache_dir: Path, fingerprint: str) -> None:
    """Delete other builds' ``jobs-``/``arrays-``/``responses-`` folders untouched for a day."""
    now = time.time()
    for folder in cache_dir.glob("*-" + "?" * 16):
        if folder.name.split("-")[0] not in ("jobs", "arrays", "responses") or folder.name.endswith(fingerprint[:16]):
            continue
        try:
            if folder.is_dir() and not folder.is_symlink() and now - folder.stat().st_mtime > STALE_BUILD_S:
                shutil.rmtree(folder, ignore_errors=True)
                log.info("removed %s, left by another build", folder.name)
        except OSError:
            continue


def _warm(engine: Engine, view: View, background: Background) -> None:
    """Compute the first page's views, start a background job process, then the models tab's, so the first visitor waits for none."""
    try:
        views.rdm_views(engine, view, [])
        views.path_view(engine, view)
        views.survive_view(engine, view)
        views.embedding_views(engine, view, [])
        log.info("default views ready (%s)", engine.cache_info())
        if isinstance(background.manager, PoolManager):
            background.manager.start()
        views.metrics_view(engine, view)  # every model's nodes: seconds cold, so not on a visitor's first click of the models tab
        views.side_by_side_view(engine, view)
        log.info("models tab ready (%s)", engine.cache_info())
    except Exception:  # warming is an optimisation; never take the server down
        log.exception("warming the default views failed")


def _import_serialisation_modules() -> None:
    """Import, once and before serving, the optional modules plotly's JSON encoder looks up in ``sys.modules``.

    The encoder takes ``sys.modules.get("pandas")`` as it is; a module that another request
    thread is importing at that moment is only partly initialised, and encoding a figure
    then fails (seen under the load test when some library imported pandas lazily).
    """
    for name in ("pandas",):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Dash:
    """Build the dashboard.

    Args:
        settings: server settings (default: from ``REPGEOM_*`` variables).
        engine: a ready engine (default: built from ``settings``; tests pass their own).

    Returns:
        A :class:`dash.Dash` app; ``app.server`` is the Flask WSGI app, with ``/healthz``.

    Raises:
        RepgeomError: when no model at all can be loaded, torch is older than 2.10, or
            unsafe checkpoint loading is forced by the environment.
    """
    settings = settings or Settings.from_env()
    check_runtime()
    _import_serialisation_modules()
    cache_dir = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
    fingerprint = build_fingerprint(Path(settings.models_dir or ASSETS.parent / "models") / "manifest.json")
    _prune_stale_builds(cache_dir, fingerprint)
    breaker = CircuitBreaker() if settings.redis_url else None  # one per process: the caches and the job queue
    if engine is None:
        arrays = f"arrays-{fingerprint[:16]}"
        engine = Engine(
            settings.models_dir, settings.data_root, settings.device, cache_bytes=settings.cache_bytes,
            shared=open_store(settings.redis_url, cache_dir / arrays, arrays, breaker=breaker),
        )
    for model_id, reason in engine.load_errors.items():
        log.warning("model %s refused: %s", model_id, reason)
    if not engine.model_ids:
        raise RepgeomError("no model could be loaded: " + "; ".join(engine.load_errors.values()))
    view = View.default(engine)
    background = make_background(settings, cache_dir, fingerprint, breaker=breaker)
    app = Dash(
        __name__,
        title="repgeom",
        update_title=None,
        assets_folder=str(ASSETS),
        serve_locally=True,
        compress=True,  # zstd, brotli or gzip, as the browser accepts (flask-compress): scripts and figures shrink 3-4 times
        background_callback_manager=background.manager,
    )
    if background.secret is not None:
        app.server.secret_key = background.secret
    app.server.extensions["repgeom.background"] = background
    app.layout = build_layout(engine, view)
    register(app, engine, max_answer_bytes=settings.max_answer_bytes)
    if settings.response_cache_bytes > 0:
        responses = f"responses-{fingerprint[:16]}"  # shared only where asked: --cache-dir or Redis
        shared = (open_store(settings.redis_url, cache_dir / responses, responses, breaker=breaker)
                  if settings.cache_dir or settings.redis_url else None)
        install_response_cache(app.server, settings.response_cache_bytes, shared)

    @app.server.route("/healthz")
    def healthz():  # noqa: ANN202 - Flask view
        return jsonify(status="ok", models=len(engine.model_ids))

    install_security(app, settings)
    if settings.warm:
        threading.Thread(target=_warm, args=(engine, view, background), name="repgeom-warm", daemon=True).start()
    return app
