"""The Celery worker of the scaled-out mode: ``celery -A repgeom.worker:celery_app worker``.

Design notes:
    Dash turns each background callback into a Celery task when the app is built, so a
    worker builds the same app (same settings, ``REDIS_URL`` set) and hands Celery the
    app it registered its tasks on. Like ``app:server``, ``celery_app`` is built lazily
    (PEP 562) on first access, not at import: importing this module does no work.
    With the default prefork pool the models load once in the parent and each child
    shares them copy-on-write; a cancelled job's child is terminated and replaced. The
    parent computes nothing (no warm-up, no kernels), so a child inherits no thread pool
    and no lock in use.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from .core.errors import RepgeomError
from .settings import Settings

__all__ = ["build_worker_app"]


def build_worker_app(settings: Settings | None = None) -> Any:
    """Build the dashboard (registering its background tasks) and return its Celery app.

    Raises:
        RepgeomError: when ``REDIS_URL`` is not set (the worker would have nothing to serve).
    """
    from .ui.factory import create_app  # noqa: PLC0415 - keep `import repgeom.worker` cheap

    settings = settings or Settings.from_env()
    if not settings.redis_url:
        raise RepgeomError("the Celery worker needs REDIS_URL (redis://host:port/db), the same as the web servers'")
    app = create_app(replace(settings, warm=False))  # a worker computes only what it is sent
    return app.server.extensions["repgeom.background"].celery


@functools.cache
def _celery_app() -> Any:
    return build_worker_app(Settings.from_env())


def __getattr__(name: str) -> Any:  # PEP 562: `celery_app` is built on first use
    if name == "celery_app":
        return _celery_app()
    raise AttributeError(name)
