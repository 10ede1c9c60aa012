"""Where background callbacks run: forked jobs and a shared folder on one machine, Celery + Redis when scaled out.

Design notes:
    Long computations (t-SNE of many stimuli, FGSM at large N, exports) run as Dash
    background callbacks, so a request thread never blocks on them and the browser
    shows progress and a cancel button. Dash needs a *manager* for them:

    * one machine (no ``REDIS_URL``): :class:`FolderManager`. Each job runs in a
      process forked from the server worker (the models are already loaded,
      copy-on-write) and writes its progress and result as files in a folder every
      gunicorn worker of the machine shares, so a poll may land on any worker. Values
      are JSON, never pickled. Dash's own ``DiskcacheManager`` keeps them in SQLite,
      which must not be used across ``fork``: a job forked while another thread of its
      worker was inside SQLite inherited that thread's locks and stalled every process
      of the machine (the load test's 60 s "Timeout"s and 180 s stalls). Plain files,
      written to a temporary name and renamed, have no such state.
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
    same thing at the same moment would get nothing. A result already kept is answered
    without starting a process; identical jobs started at once compute once (the others
    wait on a file lock, then find the result). On one machine at most
    :func:`default_job_slots` jobs compute at once (:class:`JobSlots`, file locks that
    every worker's jobs share, released by the kernel if a job is killed); the others
    wait, showing "waiting for a free slot". Scaled out, Celery's ``--concurrency`` is
    that bound.

    A job forked from a server worker inherits the import locks of modules its other
    threads are importing at that moment; a lazy import of one of them in the job would
    wait forever, so everything a job imports lazily is imported first
    (:func:`_import_ahead`). It also inherits the worker's listening socket and signal
    handlers. An orphaned job (its worker stopped or restarted) would keep the port
    open, and gunicorn's handlers would make it ignore SIGTERM. Every forked child
    therefore closes the listening sockets it inherited (:func:`_close_listening_sockets`,
    registered once per process) and every job restores the default signal handlers.

    Jobs are forked from one thread kept for that alone (:class:`_Forker`), never from
    a request thread. GNU OpenMP (torch's CPU threads) cannot survive ``fork``: a child
    forked from a thread that has run a parallel region inherits that thread's pool of
    OpenMP threads, which do not exist in the child, and its first parallel operation
    waits for them forever. Request threads run torch all the time; with two or more
    torch threads per worker (one worker on two cores, or two on four) every job forked
    from one of them hung. A thread that never computes has no pool to inherit, so the
    job starts its own, with the worker's torch thread count.

    One race in Dash's polling is closed here (:class:`_Settled`): a poll reads the
    result, then asks whether the job still runs; a job that writes its result and
    exits between the two looks cancelled, and the browser stops waiting. The managers
    below read the result once more when the job is found gone.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import queue
import re
import secrets
import signal
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from _plotly_utils.utils import PlotlyJSONEncoder
from dash import CeleryManager
from dash.background_callback.managers import BaseBackgroundCallbackManager

from ..core.errors import RepgeomError
from ..shared_cache import trim_folder, write_atomically

__all__ = ["Background", "FolderManager", "JobFiles", "JobSlots", "default_cache_dir", "default_job_slots", "make_background", "make_celery"]

#: Seconds a job's result or progress stays stored when nobody reads it.
RESULT_TTL_S = 3600


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


#: How much lower a background job's CPU priority is than its server worker's.
JOB_NICENESS = 10

#: Lock files that keep identical jobs from computing at once (a bounded set: keys hash onto them).
FLIGHT_STRIPES = 256


def _is_our_job(pid: int) -> bool:
    """Whether ``pid`` is a live job forked by one of this server's processes.

    A job handle is a pid; once the job has ended the kernel may give that pid to any
    other process of the user. Forked jobs keep their server worker's command line, so
    a process with another command line is not ours to kill or wait for. (Read from
    ``/proc`` directly: polls ask this 2 times a second per waiting browser, and
    building a :class:`psutil.Process` cost 5 % of a worker's CPU under load.)
    """
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X") and Path(f"/proc/{pid}/cmdline").read_bytes() == Path("/proc/self/cmdline").read_bytes()
    except (OSError, IndexError):
        return False


#: A job file's name: Dash's cache key (a sha256), maybe with the suffix of its progress or side updates.
_JOB_KEY = re.compile(r"[0-9a-f]{64}(-progress|-set_props)?")


class JobFiles:
    """What jobs write and server workers read: one file per key in a shared folder.

    Values are JSON (Plotly figures and numpy arrays included), zlib-compressed, written
    to a temporary name and renamed, so a reader sees a whole value or none. Files
    unread for ``ttl_s`` are gone; the folder is kept under ``max_bytes`` (oldest out).
    No lock, no database: safe to use from a process forked at any moment.

    Args:
        folder: the shared folder (created if missing, mode 0700).
        ttl_s: seconds a value lives after it was last written or read.
        max_bytes: bound on the folder's content.
    """

    def __init__(self, folder: Path, ttl_s: int = RESULT_TTL_S, max_bytes: int = 256 << 20) -> None:
        self.folder = folder
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._written = 0
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not isinstance(key, str) or not _JOB_KEY.fullmatch(key):
            raise ValueError(f"job keys are sha256 hex digests, got {str(key)[:40]!r}")
        return self.folder / f"{key}.json.z"

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (replacing what was there)."""
        data = zlib.compress(json.dumps(value, cls=PlotlyJSONEncoder).encode("utf-8"), 1)
        write_atomically(self._path(key), data)
        self._written += len(data)
        if self._written > self.max_bytes // 8:
            self._written = 0
            self.trim()

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``; ``default`` when there is none (or it expired)."""
        path = self._path(key)
        try:
            with path.open("rb") as fh:
                if time.time() - os.fstat(fh.fileno()).st_mtime > self.ttl_s:
                    path.unlink(missing_ok=True)
                    return default
                data = fh.read()
            return json.loads(zlib.decompress(data))
        except FileNotFoundError:
            return default
        except (OSError, ValueError, zlib.error):  # unreadable or corrupt: as if absent
            return default

    def has(self, key: str) -> bool:
        """Whether a value is stored under ``key`` (without reading it)."""
        try:
            return time.time() - self._path(key).stat().st_mtime <= self.ttl_s
        except OSError:
            return False

    def touch(self, key: str) -> None:
        """Restart ``key``'s time to live."""
        with contextlib.suppress(OSError):
            os.utime(self._path(key))

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        self._path(key).unlink(missing_ok=True)

    def trim(self) -> None:
        """Delete expired files, then the oldest until the folder is within its budget."""
        trim_folder(self.folder, "*.json.z", self.max_bytes, self.ttl_s)


class _Forker:
    """Forks jobs from a thread that never computes (see the module notes on OpenMP and fork).

    The thread starts on the first fork in each process (a gunicorn worker, after its own
    fork) and waits on a queue; :meth:`fork` hands it the job and returns the child's pid.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = 0  # pid of the process whose thread serves the queue
        self._queue: queue.SimpleQueue[tuple[Callable[[], None], concurrent.futures.Future[int]]] = queue.SimpleQueue()

    def fork(self, child: Callable[[], None]) -> int:
        """Fork; in the child run ``child``, which must end the process (``os._exit``); return the pid."""
        with self._lock:
            if self._owner != os.getpid():
                self._queue = queue.SimpleQueue()
                threading.Thread(target=self._serve, args=(self._queue,), name="repgeom-forker", daemon=True).start()
                self._owner = os.getpid()
            done: concurrent.futures.Future[int] = concurrent.futures.Future()
            self._queue.put((child, done))
        return done.result()

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], None], concurrent.futures.Future[int]]]) -> None:
        while True:
            child, done = jobs.get()
            try:
                pid = os.fork()
            except OSError as exc:
                done.set_exception(exc)
                continue
            if pid == 0:
                try:
                    child()
                finally:
                    os._exit(1)  # ``child`` exits itself; this only guards against one that returns
            done.set_result(pid)


def _default_signals() -> None:
    """Give a forked job the default handlers its server worker replaced (SIGTERM must end it)."""
    for name in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGCHLD", "SIGTTIN", "SIGTTOU"):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            signal.signal(getattr(signal, name), signal.SIG_DFL)


class FolderManager(_Settled, BaseBackgroundCallbackManager):
    """Dash's background-callback manager for one machine: forked jobs, results in a shared folder.

    * A result already stored is answered without forking a process (job ``0``).
    * Jobs run at a lower CPU priority (:data:`JOB_NICENESS`) than the request threads,
      so the quick callbacks of every page stay quick while t-SNEs compute.
    * Identical jobs do not compute at once: the second waits for the first
      (:data:`FLIGHT_STRIPES` file locks) and then finds its result stored.
    * Ending a job waits for nothing and never signals a pid that is no longer one of
      ours (see :func:`_is_our_job`).
    * The finished-looks-cancelled race is closed (:class:`_Settled`).

    Args:
        files: where jobs write and workers read.
        cache_by: as for Dash's managers: what, besides the inputs, keys a result.
    """

    def __init__(self, files: JobFiles, cache_by: list[Callable[[], Any]]) -> None:
        self.files = files  # before Dash's __init__, which builds the job functions
        self._children: set[int] = set()  # jobs forked by this process, not yet reaped
        self._lock = threading.Lock()
        self._forker = _Forker()
        super().__init__(cache_by)

    # ---------------------------------------------------------------- starting and ending jobs
    def make_job_fn(self, fn: Callable[..., Any], progress: Any, key: Any = None) -> Callable[..., None]:
        from dash.background_callback.managers.diskcache_manager import _make_job_fn  # noqa: PLC0415

        files = self.files
        inner = _make_job_fn(fn, files, progress)  # Dash's job body; it only calls ``files.set``

        def job_fn(result_key: str, progress_key: str, args: Any, context: Any) -> None:
            _default_signals()
            with contextlib.suppress(OSError):
                os.nice(JOB_NICENESS)  # a page's quick callbacks go before a long t-SNE

            def waiting() -> None:
                if progress and not files.has(progress_key):
                    with contextlib.suppress(OSError):  # the callback's progress: value, max, text
                        files.set(progress_key, ["0", "1", "the same view is being computed for someone else…"])

            with _single_flight(files.folder, result_key, waiting):
                if not files.has(result_key):  # the job we waited for may have stored it
                    inner(result_key, progress_key, args, context)
            files.delete(progress_key)

        return job_fn

    def call_job_fn(self, key: str, job_fn: Callable[..., None], args: Any, context: Any) -> int:
        self._reap()
        if self.files.has(key):
            return 0  # stored: the first poll reads it, there is no process to wait for
        progress_key = self._make_progress_key(key)
        threads = torch.get_num_threads()

        def job() -> None:  # in the child: run, then leave without the worker's exit handlers
            code = 1
            try:
                torch.set_num_threads(threads)  # the worker's share of the cores (gunicorn_conf.post_fork)
                job_fn(key, progress_key, args, context)
                code = 0
            finally:
                os._exit(code)

        pid = self._forker.fork(job)
        with self._lock:
            self._children.add(pid)
        return pid

    def _reap(self) -> None:
        """Collect this worker's ended jobs (no zombies), never waiting for a running one.

        Jobs are plain forks, not :mod:`multiprocessing` processes, so a worker that exits
        (recycled, or its RSS over the limit) neither waits for its jobs nor kills them:
        they finish, store their results, and any other worker answers the polls.
        """
        with self._lock:
            for pid in list(self._children):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    self._children.discard(pid)

    def terminate_job(self, job: Any) -> None:
        import psutil  # noqa: PLC0415 - only when a job is cancelled

        pid = _pid(job)
        if pid is None or not _is_our_job(pid):
            return
        try:
            proc = psutil.Process(pid)
            victims = [*proc.children(recursive=True), proc]
        except psutil.Error:
            victims = []
        for victim in victims:
            with contextlib.suppress(psutil.Error):
                victim.kill()
        self._reap()

    def terminate_unhealthy_job(self, job: Any) -> bool:
        return False  # a job is either running (ours, alive) or gone: nothing half-dead to clean up

    def job_running(self, job: Any) -> bool:
        pid = _pid(job)
        return pid is not None and _is_our_job(pid)

    # ---------------------------------------------------------------- what polls read
    def get_progress(self, key: str) -> Any:
        return self.files.get(self._make_progress_key(key))  # kept: every poller of the job sees it

    def result_ready(self, key: str) -> bool:
        return self.files.has(key)

    def get_result(self, key: str, job: Any) -> Any:
        result = self.files.get(key, self.UNDEFINED)
        if result is self.UNDEFINED:
            return self.UNDEFINED
        self.files.touch(key)  # kept for the next visitor who asks the same
        self.files.delete(self._make_progress_key(key))
        if job:
            self.terminate_job(job)
        return result

    def get_updated_props(self, key: str) -> dict[str, Any]:
        props_key = self._make_set_props_key(key)
        props = self.files.get(props_key)
        if props is None:
            return {}
        self.files.delete(props_key)
        return dict(props)

    def clear_cache_entry(self, key: str) -> None:
        self.files.delete(key)

    def get_or_create_signing_secret(self, generate: Callable[[], bytes]) -> bytes:
        raise NotImplementedError  # the app's secret_key (the shared secret file) signs handles


def _pid(job: Any) -> int | None:
    """A job handle as a pid, or ``None`` for ``0``, garbage and non-positive numbers."""
    try:
        pid = int(job)
    except (TypeError, ValueError):
        return None
    return pid if pid > 0 else None


@contextlib.contextmanager
def _single_flight(folder: Path, key: str, waiting: Callable[[], None]) -> Iterator[None]:
    """Hold the lock file ``key`` hashes onto; call ``waiting`` once if someone else holds it."""
    stripe = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % FLIGHT_STRIPES
    fd = os.open(folder / f"flight-{stripe:03d}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if its holder is killed
        yield
    finally:
        os.close(fd)  # closing releases the lock


class _CeleryManager(_Settled, CeleryManager):
    """Dash's Celery manager without the finished-looks-cancelled race."""


@dataclass(frozen=True)
class Background:
    """The background-callback manager of one app, and what it runs on.

    Attributes:
        manager: the Dash manager to pass as ``background_callback_manager``.
        kind: ``"celery"`` or ``"folder"``.
        celery: the Celery app (scaled out), else ``None``.
        secret: the signing secret every process shares (``None``: kept in Redis by Dash).
        slots: the bound on concurrent jobs on this machine (``None``: Celery's concurrency).
    """

    manager: Any
    kind: str
    celery: Any = None
    secret: str | None = None
    slots: JobSlots | None = None


def _import_ahead() -> None:
    """Import now, before any request thread runs, every module a forked job imports lazily.

    A job forked while another thread of its worker is importing a module inherits that
    module's import lock, held by a thread that does not exist in the child (CPython
    re-initialises only the global import lock at fork): the job's own import of that
    module then waits forever, holding its job slot, and every later job queues behind
    it. The load test caught a job stuck in plotly's lazy import of a figure class.
    Plotly builds its figure classes on first use, t-SNE brings in openTSNE, and MDS and
    t-SNE bring in numba and their compiled kernels, so all are imported (and the kernels
    compiled or loaded) here, in full (about 1 s and 60 MB, once per worker).
    """
    import importlib  # noqa: PLC0415
    import pkgutil  # noqa: PLC0415

    import plotly.graph_objs  # noqa: PLC0415

    from ..core.embedding import prepare_backends  # noqa: PLC0415

    prepare_backends()  # openTSNE, numba and the kernels (loaded from numba's disk cache)
    for module in pkgutil.walk_packages(plotly.graph_objs.__path__, "plotly.graph_objs."):
        if not module.name.endswith("_figurewidget"):  # needs ipywidgets, never used here
            importlib.import_module(module.name)
    # Templates, validators and JSON encoding load on a figure's first use: use one.
    frame = plotly.graph_objs.Frame(name="0", data=[plotly.graph_objs.Scatter(x=[0], y=[0])])
    layout = {"template": "plotly_white", "sliders": [{"steps": [{"label": "0"}]}], "updatemenus": [{"buttons": [{"label": "▶"}]}]}
    plotly.graph_objs.Figure([plotly.graph_objs.Scattergl(x=[0], y=[0])], layout=layout, frames=[frame]).to_json()


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
    _register_fork_hook()
    _import_ahead()
    folder = cache_dir / f"jobs-{fingerprint[:16]}"
    manager = FolderManager(JobFiles(folder), cache_by=keep)
    return Background(manager, "folder", secret=_shared_secret(cache_dir), slots=JobSlots(folder, default_job_slots()))
