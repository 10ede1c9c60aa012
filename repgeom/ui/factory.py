"""The app factory: settings in, a ready Dash app out (models loaded, callbacks wired)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from dash import Dash
from flask import jsonify

from ..core.errors import RepgeomError
from ..pipeline import Engine
from ..settings import Settings
from . import views
from .callbacks import register_callbacks
from .layout import build_layout
from .response_cache import install_response_cache
from .state import View

__all__ = ["ASSETS", "create_app"]

log = logging.getLogger(__name__)
#: The repository's ``assets/`` folder: CSS served locally, no CDN.
ASSETS = Path(__file__).resolve().parents[2] / "assets"


def _warm(engine: Engine, view: View) -> None:
    """Compute the first page's views so the first visitor does not wait for them."""
    try:
        views.rdm_views(engine, view, [])
        views.path_view(engine, view)
        views.embedding_views(engine, view, [])
        log.info("default views ready (%s)", engine.cache_info())
    except Exception:  # warming is an optimisation; never take the server down
        log.exception("warming the default views failed")


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Dash:
    """Build the dashboard.

    Args:
        settings: server settings (default: from ``REPGEOM_*`` variables).
        engine: a ready engine (default: built from ``settings``; tests pass their own).

    Returns:
        A :class:`dash.Dash` app; ``app.server`` is the Flask WSGI app, with ``/healthz``.

    Raises:
        RepgeomError: when no model at all can be loaded.
    """
    settings = settings or Settings.from_env()
    engine = engine or Engine(settings.models_dir, settings.data_root, settings.device)
    for model_id, reason in engine.load_errors.items():
        log.warning("model %s refused: %s", model_id, reason)
    if not engine.model_ids:
        raise RepgeomError("no model could be loaded: " + "; ".join(engine.load_errors.values()))
    view = View.default(engine)
    app = Dash(
        __name__,
        title="repgeom",
        update_title=None,
        assets_folder=str(ASSETS),
        serve_locally=True,
    )
    app.layout = build_layout(engine, view)
    register_callbacks(app, engine)
    if settings.response_cache_bytes > 0:
        install_response_cache(app.server, settings.response_cache_bytes, settings.cache_dir)

    @app.server.route("/healthz")
    def healthz():  # noqa: ANN202 - Flask view
        return jsonify(status="ok", models=len(engine.model_ids))

    if settings.warm:
        threading.Thread(target=_warm, args=(engine, view), name="repgeom-warm", daemon=True).start()
    return app
