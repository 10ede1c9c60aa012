"""Where background callbacks run: a disk-cache folder on one machine, Celery + Redis when scaled out.

Design notes:
    Long computations (t-SNE of many stimuli, FGSM at large N, exports) run as Dash
    background callbacks, so a request thread never blocks on them and the browser
    shows progress and a cancel button. Dash needs a *manager* for them:

    * one machine (no ``REDIS_URL``): :class:`dash.DiskcacheManager`. Each job runs in a
      forked process (the models are already loaded, copy-on-write) and writes its
      result to a folder every gunicorn worker of the machine shares, so a poll may land
      on any worker. Values are stored as JSON (``_JSONDisk``), never pickled.
    * scaled out (``REDIS_URL``): :class:`dash.CeleryManager` on a Celery app whose
      broker and result backend are that Redis. Workers start with
      ``celery -A repgeom.worker:celery_app worker``; they build the same Dash app, which
      registers the same callback functions as Celery tasks. Celery is told to accept
      JSON only, so no message can make a worker unpickle anything.

    Handles given to the browser are signed by Dash with a secret every process must
    share: from Redis when scaled out, else from a ``secret`` file (mode 0600) in the
    shared folder, created once by whichever process gets there first.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _plotly_utils.utils import PlotlyJSONEncoder
from dash import CeleryManager, DiskcacheManager

from ..core.errors import RepgeomError

__all__ = ["Background", "default_cache_dir", "make_background", "make_celery"]

#: Seconds a job's result or progress stays stored when nobody reads it.
RESULT_TTL_S = 3600


def _json_disk() -> type:
    """diskcache's JSON disk, taught to encode Plotly figures and numpy arrays."""
    from diskcache import UNKNOWN, JSONDisk  # noqa: PLC0415 - optional until the manager is built

    class _JSONDisk(JSONDisk):
        def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> Any:
            if not read:
                value = zlib.compress(json.dumps(value, cls=PlotlyJSONEncoder).encode("utf-8"), self.compress_level)
                return super(JSONDisk, self).store(value, read, key=key)
            return super().store(value, read, key=key)

    return _JSONDisk


def default_cache_dir() -> Path:
    """``$TMPDIR/repgeom-<uid>``, private to this user (mode 0700), shared by the user's processes.

    Raises:
        RepgeomError: when that folder exists but belongs to someone else or is open to
            others (another user could plant answers there).
    """
    uid = os.getuid()
    path = Path(tempfile.gettempdir()) / f"repgeom-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        raise RepgeomError(f"cannot create the cache folder {path}: {exc.strerror}; set REPGEOM_CACHE_DIR") from None
    if path.is_symlink() or st.st_uid != uid or st.st_mode & 0o077:
        raise RepgeomError(f"the cache folder {path} is not private to this user; set REPGEOM_CACHE_DIR to a folder of your own")
    return path


def _shared_secret(folder: Path) -> str:
    """A random secret kept in ``folder/secret``; the first process to arrive writes it."""
    path = folder / "secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    for _ in range(50):  # a racing writer may not have finished its 64 characters yet
        text = path.read_text().strip()
        if len(text) == 64:
            return text
        import time  # noqa: PLC0415

        time.sleep(0.01)
    raise RepgeomError(f"the secret file {path} is unreadable or corrupt; delete it and restart")


def make_celery(redis_url: str) -> Any:
    """A Celery app with ``redis_url`` as broker and result backend, JSON messages only.

    Args:
        redis_url: ``redis://host:port/db``.

    Returns:
        A configured :class:`celery.Celery`.
    """
    from celery import Celery  # noqa: PLC0415 - only needed when scaled out

    app = Celery("repgeom", broker=redis_url, backend=redis_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=RESULT_TTL_S,
        worker_prefetch_multiplier=1,
        task_acks_late=False,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


@dataclass(frozen=True)
class Background:
    """The background-callback manager of one app, and what it runs on.

    Attributes:
        manager: the Dash manager to pass as ``background_callback_manager``.
        kind: ``"celery"`` or ``"diskcache"``.
        celery: the Celery app (scaled out), else ``None``.
        secret: the signing secret every process shares (``None``: kept in Redis by Dash).
    """

    manager: Any
    kind: str
    celery: Any = None
    secret: str | None = None


def make_background(redis_url: str | None, cache_dir: Path, fingerprint: str) -> Background:
    """Build the background-callback manager.

    Args:
        redis_url: scale out on Celery + Redis when set.
        cache_dir: this machine's shared cache folder (jobs go in a subfolder).
        fingerprint: the app build's fingerprint; jobs of another build are not reused.

    Returns:
        A :class:`Background`.
    """
    if redis_url:
        celery = make_celery(redis_url)
        return Background(CeleryManager(celery, expire=RESULT_TTL_S), "celery", celery)
    from diskcache import Cache  # noqa: PLC0415

    folder = cache_dir / f"jobs-{fingerprint[:16]}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache = Cache(str(folder), disk=_json_disk(), size_limit=256 << 20)
    return Background(DiskcacheManager(cache, expire=RESULT_TTL_S), "diskcache", secret=_shared_secret(cache_dir))
