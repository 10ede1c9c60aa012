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

    Results are kept (``cache_by`` the build fingerprint, for an hour): Dash would
    otherwise delete a result on its first read, and a second browser that asked the
    same thing at the same moment would get nothing. On one machine at most
    :func:`default_job_slots` jobs compute at once (:class:`JobSlots`, file locks that
    every worker's jobs share, released by the kernel if a job is killed); the others
    wait, showing "waiting for a free slot". Scaled out, Celery's ``--concurrency`` is
    that bound.

    A job forked from a server worker inherits its listening socket; an orphaned job
    (its worker stopped or restarted) would keep the port open and block the next
    server from binding it. Every forked child therefore closes the listening sockets
    it inherited (:func:`_close_listening_sockets`, registered once per process).

    One race in Dash's polling is closed here (:class:`_Settled`): a poll reads the
    result, then asks whether the job still runs; a job that writes its result and
    exits between the two looks cancelled, and the browser stops waiting. The managers
    below read the result once more when the job is found gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import secrets
import socket
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _plotly_utils.utils import PlotlyJSONEncoder
from dash import CeleryManager, DiskcacheManager

from ..core.errors import RepgeomError

__all__ = ["Background", "JobSlots", "default_cache_dir", "default_job_slots", "make_background", "make_celery"]

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


def _close_listening_sockets() -> None:
    """Close every listening socket this (freshly forked) process inherited."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: nothing to do that is portable
        return
    for fd in fds:
        try:
            dup = os.dup(fd)
        except OSError:
            continue  # already closed (the listing's own descriptor)
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue  # not a socket
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        except OSError:
            listening = False
        finally:
            sock.close()  # closes only the duplicate
        if listening:
            with contextlib.suppress(OSError):
                os.close(fd)


@functools.cache
def _register_fork_hook() -> None:
    os.register_at_fork(after_in_child=_close_listening_sockets)


def default_job_slots() -> int:
    """How many background jobs may compute at once on this machine: its usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class JobSlots:
    """At most ``n`` holders at once across every process of the machine (one lock file per slot).

    Args:
        folder: where the lock files live (shared by the workers).
        n: number of slots.
    """

    def __init__(self, folder: Path, n: int) -> None:
        self.paths = [folder / f"slot-{i}.lock" for i in range(max(1, n))]

    @contextlib.contextmanager
    def hold(self, waiting: Callable[[], None] | None = None, poll_s: float = 0.1) -> Iterator[int]:
        """Block until a slot is free and hold it for the ``with`` block; yields the slot's number.

        Args:
            waiting: called once if the caller has to wait (to tell the user).
            poll_s: seconds between tries.
        """
        told = False
        while True:
            for i, path in enumerate(self.paths):
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    yield i
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                return
            if waiting is not None and not told:
                waiting()
                told = True
            time.sleep(poll_s)


class _Settled:
    """Mixin for a Dash manager: a job that ended just now is read again before it counts as cancelled."""

    def get_result(self, key: str, job: Any) -> Any:
        result = super().get_result(key, job)  # type: ignore[misc]
        if result is self.UNDEFINED and job is not None and not self.job_running(job):  # type: ignore[attr-defined]
            result = super().get_result(key, job)  # type: ignore[misc]
        return result


class _DiskcacheManager(_Settled, DiskcacheManager):
    """Dash's disk-cache manager without the finished-looks-cancelled race."""


class _CeleryManager(_Settled, CeleryManager):
    """Dash's Celery manager without the finished-looks-cancelled race."""


@dataclass(frozen=True)
class Background:
    """The background-callback manager of one app, and what it runs on.

    Attributes:
        manager: the Dash manager to pass as ``background_callback_manager``.
        kind: ``"celery"`` or ``"diskcache"``.
        celery: the Celery app (scaled out), else ``None``.
        secret: the signing secret every process shares (``None``: kept in Redis by Dash).
        slots: the bound on concurrent jobs on this machine (``None``: Celery's concurrency).
    """

    manager: Any
    kind: str
    celery: Any = None
    secret: str | None = None
    slots: JobSlots | None = None


def make_background(redis_url: str | None, cache_dir: Path, fingerprint: str) -> Background:
    """Build the background-callback manager.

    Args:
        redis_url: scale out on Celery + Redis when set.
        cache_dir: this machine's shared cache folder (jobs go in a subfolder).
        fingerprint: the app build's fingerprint; jobs of another build are not reused.

    Returns:
        A :class:`Background`.
    """
    keep = [lambda: fingerprint]  # results are kept, per build (see the module notes)
    if redis_url:
        celery = make_celery(redis_url)
        return Background(_CeleryManager(celery, cache_by=keep, expire=RESULT_TTL_S), "celery", celery)
    from diskcache import Cache  # noqa: PLC0415

    _register_fork_hook()
    folder = cache_dir / f"jobs-{fingerprint[:16]}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache = Cache(str(folder), disk=_json_disk(), size_limit=256 << 20)
    manager = _DiskcacheManager(cache, cache_by=keep, expire=RESULT_TTL_S)
    return Background(manager, "diskcache", secret=_shared_secret(cache_dir), slots=JobSlots(folder, default_job_slots()))
