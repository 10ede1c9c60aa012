"""Where background callbacks run: a pool of started processes on one machine, Celery + Redis when scaled out.

Design notes:
    Long computations (t-SNE of many stimuli) run as Dash background callbacks, so a
    request thread never blocks on them and the browser shows progress and a Cancel
    button. Dash needs a *manager* for them:

    * one machine (no ``REDIS_URL``): :class:`PoolManager`. Jobs run in a
      :class:`~concurrent.futures.ProcessPoolExecutor` whose processes are *started*
      (``spawn``), never forked from the threaded server, so they inherit no locks, no
      thread pools and no sockets. The pool is created on the first job, holds at most
      :func:`default_job_slots` processes, and each process builds, once, the same Dash
      app from the same :class:`~repgeom.settings.Settings` (:func:`app_callbacks`):
      Dash registers every background callback with the app's manager under a key made
      from the callback's outputs and source, so the key the server sends names the same
      function in the pool process. Only the key, Dash's own arguments and context (as
      JSON text) and a job token cross to the pool; nothing comes back through it.
    * scaled out (``REDIS_URL``): :class:`dash.CeleryManager` on a Celery app whose
      broker and result backend are that Redis. Workers start with
      ``celery -A repgeom.worker:celery_app worker``; they build the same Dash app, which
      registers the same callback functions as Celery tasks. Celery is told to accept
      JSON only, so no message can make a worker unpickle anything. Celery's
      ``--concurrency`` bounds the jobs computing at once.

    On one machine a job's progress and result are files in a folder every gunicorn
    worker shares (:class:`JobFiles`: JSON, compressed, written atomically), so a poll
    may land on any worker. A job is known to every worker by its token:

    ::

        run-<token>.lock     held (shared flock) by the submitting server while the job is
                             queued and by the pool process while it runs: "running" means
                             someone holds it, and the kernel lets go if either dies
        run-<token>.cancel   Cancel: checked before the job starts, while it waits, and at
                             each progress update (the job stops and stores no result)
        flight-NNN.lock      one per stripe of result keys: identical jobs compute once,
                             the others wait, then find the result stored
        slot-N.lock          at most :func:`default_job_slots` jobs of the machine compute
                             at once; the others wait, showing "waiting for a free slot"

    Results are kept (``cache_by`` the build fingerprint, for an hour): Dash would
    otherwise delete a result on its first read, and a second browser that asked the
    same thing at the same moment would get nothing. A result already kept is answered
    without a job. Handles given to the browser are signed by Dash with a secret every
    process must share: from Redis when scaled out, else from a ``secret`` file (mode
    0600) in the shared folder, created once by whichever process gets there first.

    When the server process exits, its pool is shut down first: queued jobs are
    cancelled (``run-closed-<server>`` tells a pool process to skip the ones it was
    already handed), running ones finish and store their results for whichever worker
    is asked next. A pool process whose server was killed finishes its job and exits.

    One race in Dash's polling is closed here: a poll reads the result, then asks
    whether the job still runs; a job that writes its result and ends between the two
    looks cancelled, and the browser stops waiting. Both managers read the result once
    more when the job is found gone (:meth:`PoolManager.get_result`, :class:`_Settled`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import secrets
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from _plotly_utils.utils import PlotlyJSONEncoder
from dash import CeleryManager
from dash.background_callback.managers import BaseBackgroundCallbackManager

from ..core.errors import RepgeomError
from ..core.files import read_regular
from ..settings import Settings
from ..shared_cache import CircuitBreaker, FolderStore, celery_timeouts, trim_folder, write_atomically

__all__ = ["BUSY_NOTICE", "LOST_NOTICE", "NOTHING", "REDIS_NOTICE", "REDIS_WAIT", "REFUSED", "Background", "JobBounds", "JobCancelled", "JobFiles", "JobSlots",
           "PoolManager",
           "app_callbacks", "client_id", "default_cache_dir", "default_job_slots", "make_background", "make_celery", "notices_to"]

log = logging.getLogger(__name__)

#: Seconds a job's result or progress stays stored when nobody reads it.
RESULT_TTL_S = 3600
#: Bound on a job process's engine cache (the server's default is 1 GiB: its requests repeat, jobs rarely do).
JOB_CACHE_BYTES = 256 << 20
#: How much lower a background job's CPU priority is than its server worker's.
JOB_NICENESS = 10
#: Lock files that keep identical jobs from computing at once (a bounded set: keys hash onto them).
FLIGHT_STRIPES = 256
#: A job file's name: Dash's cache key (a sha256), maybe with the suffix of its progress or side updates.
_JOB_KEY = re.compile(r"[0-9a-f]{64}(-progress|-set_props)?")
#: A job token, as :meth:`PoolManager.call_job_fn` makes them.
_TOKEN = re.compile(r"[0-9a-f]{32}")
#: The handle of a job that was refused (over a bound): it never runs, its page is told why.
REFUSED = "refused"
#: The handle of a call with no request (every input ``None``): never a job, nothing computed or counted.
#: Dash's renderer calls a background callback when the store that feeds it is first
#: written in the page's start-up chain, even with ``prevent_initial_call`` and even when
#: nothing was written; each such call would otherwise take a job and a visitor's share.
NOTHING = "nothing"
#: What a page is told when its job is refused; ``{why}`` says which bound.
BUSY_NOTICE = "The server is busy: {why}. Nothing was started; try again in a minute."
#: What a page is told when its job cannot be queued because Redis (the scaled-out mode's broker) is unreachable.
REDIS_NOTICE = ("The job queue (Redis) is not answering, so nothing was started. Cached views still show; "
                "try again in a minute (the server retries Redis by itself).")
#: What a page with a job queued on Celery is told while Redis is unreachable: it keeps waiting.
REDIS_WAIT = "The job queue (Redis) is not answering; waiting for it to come back (Cancel stops waiting)."
#: What a page is told when its job ended without a result and may not restart again (its process was stopped or ran out of memory).
LOST_NOTICE = ("This computation stopped before it finished (the server stopped its process, or memory ran out). "
               "Change a control to try again, or use the command line (python -m repgeom export) for large views.")


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


_SECRET = re.compile(r"[0-9a-f]{64}")


def _shared_secret(folder: Path) -> str:
    """A random secret kept in ``folder/secret`` (mode 0600), the same for every process that shares ``folder``.

    Processes take turns under an exclusive lock on ``folder/secret.lock``: the first one
    writes the secret (atomically), the others read it. A secret file that is empty,
    unreadable or not 64 hex digits (left by a full disk or a crash) is replaced by a
    new one, with a warning: pages opened before must be reloaded.

    Raises:
        RepgeomError: the secret cannot be written (a full disk, a FIFO or folder in its place).
    """
    path = folder / "secret"
    lock = os.open(folder / "secret.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = read_regular(path, max_bytes=4096, what="secret file").decode("ascii", "replace").strip()
        except RepgeomError as exc:
            text, why = None, str(exc)
        else:
            why = f"{path}: {'empty' if not text else 'not a secret of 64 hex digits'}"
        if text is not None and _SECRET.fullmatch(text):
            return text
        if path.exists() or path.is_symlink():
            log.warning("the secret file is unusable (%s); writing a new one (open pages must be reloaded)", why)
        text = secrets.token_hex(32)
        try:
            write_atomically(path, text.encode("ascii"), mode=0o600)
        except OSError as exc:
            raise RepgeomError(f"cannot write the secret file {path}: {exc}") from None
        return text
    finally:
        os.close(lock)  # releases the lock


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
        **celery_timeouts(),
    )
    return app


def default_job_slots() -> int:
    """How many background jobs may compute at once on this machine: its usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class JobCancelled(BaseException):  # noqa: N818 - an outcome, like KeyboardInterrupt, not an error
    """Raised inside a job that was cancelled; a ``BaseException`` so callbacks' ``except Exception`` let it through."""


def _never() -> bool:
    return False


@dataclass(frozen=True)
class JobBounds:
    """How much background work the machine accepts; beyond it a page is told "busy" and nothing starts.

    Attributes:
        total: jobs queued or running on the machine at once (every worker's together).
        per_client: of those, the jobs one client address may have.
        restarts: how often a job whose process ended without a result (a recycled worker,
            a killed process) is started again by the next poll of its page.
    """

    total: int = 64
    per_client: int = 4
    restarts: int = 1


def notices_to(fn: Callable[..., Any], component_id: str, prop: str = "children") -> Callable[..., Any]:
    """Mark the background callback ``fn``: a refused or lost job's notice is shown in ``component_id.prop``.

    Returns:
        ``fn`` itself (marked).
    """
    fn.repgeom_notices = (component_id, prop)  # type: ignore[attr-defined]
    return fn


def client_id() -> str:
    """Who asks, for the per-client bound: a hash of the request's peer address ("local" outside a request)."""
    from flask import has_request_context, request  # noqa: PLC0415 - Flask comes with Dash

    address = request.remote_addr if has_request_context() else None
    return hashlib.sha256((address or "local").encode()).hexdigest()[:16]


@contextlib.contextmanager
def _hold_any(paths: list[Path], waiting: Callable[[], None] | None, cancelled: Callable[[], bool], poll_s: float) -> Iterator[int]:
    """Hold the first free one of the lock files ``paths`` for the ``with`` block; yields its index.

    Calls ``waiting`` once if all are held; raises :class:`JobCancelled` when ``cancelled``
    says so while waiting. The kernel releases a lock whose holder dies.
    """
    told = False
    while True:
        for i, path in enumerate(paths):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield i
            finally:
                os.close(fd)  # closing releases the lock
            return
        if cancelled():
            raise JobCancelled
        if waiting is not None and not told:
            waiting()
            told = True
        time.sleep(poll_s)


class JobSlots:
    """At most ``n`` holders at once across every process of the machine (one lock file per slot).

    Args:
        folder: where the lock files live (shared by the workers).
        n: number of slots.
    """

    def __init__(self, folder: Path, n: int) -> None:
        self.paths = [folder / f"slot-{i}.lock" for i in range(max(1, n))]

    def hold(
        self, waiting: Callable[[], None] | None = None, poll_s: float = 0.1, cancelled: Callable[[], bool] = _never
    ) -> contextlib.AbstractContextManager[int]:
        """Block until a slot is free and hold it for the ``with`` block; yields the slot's number.

        Args:
            waiting: called once if the caller has to wait (to tell the user).
            poll_s: seconds between tries.
            cancelled: asked between tries; when it says yes, :class:`JobCancelled` is raised.
        """
        return _hold_any(self.paths, waiting, cancelled, poll_s)


def _single_flight(folder: Path, key: str, waiting: Callable[[], None], cancelled: Callable[[], bool]) -> contextlib.AbstractContextManager[int]:
    """Hold the lock file ``key`` hashes onto (one of :data:`FLIGHT_STRIPES`), as :func:`_hold_any`."""
    stripe = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % FLIGHT_STRIPES
    return _hold_any([folder / f"flight-{stripe:03d}.lock"], waiting, cancelled, 0.1)


class JobFiles(FolderStore):
    """What jobs write and server workers read: JSON values in a :class:`~repgeom.shared_cache.FolderStore`.

    Values are JSON (Plotly figures and numpy arrays included), zlib-compressed, written
    atomically, gone ``ttl_s`` after their last write or read; the folder is kept under
    ``max_bytes`` (oldest out). Keys are Dash's cache keys (sha256 hex digests).

    Args:
        folder: the shared folder (created if missing, mode 0700).
        ttl_s: seconds a value lives after it was last written or read.
        max_bytes: bound on the folder's content.
    """

    def __init__(self, folder: Path, ttl_s: int = RESULT_TTL_S, max_bytes: int = 256 << 20) -> None:
        super().__init__(folder, max_bytes, ttl_s=ttl_s, suffix=".json.z", key_pattern=_JOB_KEY)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` as JSON (replacing what was there)."""
        self.put(key, zlib.compress(json.dumps(value, cls=PlotlyJSONEncoder).encode("utf-8"), 1))

    def load(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``; ``default`` when there is none (or it expired, or is corrupt)."""
        data = self.get(key)
        try:
            return default if data is None else json.loads(zlib.decompress(data))
        except (ValueError, zlib.error):
            return default

    def trim(self) -> None:
        """Delete expired values, the oldest beyond the budget, and job files a dead server left."""
        super().trim()
        trim_folder(self.directory, "run-*", self.max_bytes, self.ttl_s)


class _Settled:
    """Mixin for a Dash manager: a job that ended just now is read again before it counts as cancelled."""

    def get_result(self, key: str, job: Any) -> Any:
        result = super().get_result(key, job)  # type: ignore[misc]
        if result is self.UNDEFINED and job is not None and not self.job_running(job):  # type: ignore[attr-defined]
            result = super().get_result(key, job)  # type: ignore[misc]
        return result


@dataclass(frozen=True)
class _Job:
    """What :meth:`PoolManager.make_job_fn` gives Dash: the callback's key (the same in every process)."""

    key: str
    progress: bool


def _progress_text(text: str) -> list[str]:
    """A progress update that says ``text``, for a progress bar's ``(value, max, text)`` outputs."""
    return ["0", "1", text]


#: Background callbacks by Dash's key: ``(function, has progress)``.
Callbacks = Mapping[str, tuple[Callable[..., Any], bool]]


def _token(job: Any) -> str | None:
    """A job handle as a token, or ``None`` for ``0`` (answered from the store) and garbage."""
    return job if isinstance(job, str) and _TOKEN.fullmatch(job) else None


class PoolManager(BaseBackgroundCallbackManager):
    """Dash's background-callback manager for one machine: a lazily started process pool, results in a shared folder.

    Args:
        files: where jobs write and every worker reads.
        build: run once in each pool process; returns the callbacks by Dash's key, as
            :attr:`callbacks` holds them (must pickle: a module-level function or a
            :func:`functools.partial` of one, such as :func:`app_callbacks`).
        cache_by: as for Dash's managers: what, besides the inputs, keys a result.
        slots: the bound on jobs computing at once on the machine (default :func:`default_job_slots`).
        processes: this server's pool size (default: ``slots``). Under gunicorn each worker
            has its own pool, so the configuration gives each ``slots // workers``: every
            process holds the models (about 0.45 GB of its own), and more processes than
            slots would only wait.
        bounds: how many jobs the machine and one client may have queued or running.

    Attributes:
        callbacks: ``{Dash's key: (function, has progress)}`` of every background callback.
    """

    def __init__(self, files: JobFiles, build: Callable[[], Callbacks], cache_by: list[Callable[[], Any]] | None = None,
                 slots: int | None = None, processes: int | None = None, bounds: JobBounds | None = None) -> None:
        self.files = files
        self.bounds = bounds or JobBounds()
        self.callbacks: dict[str, tuple[Callable[..., Any], bool]] = {}
        self.slots = slots or default_job_slots()
        self.processes = min(self.slots, processes or self.slots)
        self._build = build
        self._id = secrets.token_hex(8)  # names this server's "closed" flag
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._futures: dict[str, concurrent.futures.Future[None]] = {}
        self._lock = threading.Lock()
        self._exit_hook = False
        super().__init__(cache_by)

    # ---------------------------------------------------------------- the pool
    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                import torch  # noqa: PLC0415 - only the thread count, and torch is loaded by then

                self._executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start_pool_process,
                    initargs=(self._build, str(self.files.directory), self.files.ttl_s, self.slots, torch.get_num_threads()),
                )
                if not self._exit_hook:
                    # Before concurrent.futures' own exit hook (they run last registered first),
                    # which would otherwise run every queued job before the process may exit.
                    threading._register_atexit(self.close)  # noqa: SLF001
                    self._exit_hook = True
            return self._executor

    def close(self) -> None:
        """Shut the pool down: queued jobs are cancelled, running ones finish; the next job starts a new pool."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            with contextlib.suppress(OSError):  # the jobs already handed to a pool process see it before they start
                (self.files.directory / f"run-closed-{self._id}").touch(0o600)
            executor.shutdown(wait=False, cancel_futures=True)
            self._id = secrets.token_hex(8)

    def start(self) -> concurrent.futures.Future[None]:
        """Start the pool's first process now (it builds the callbacks), so that the first job need not wait for it."""
        return self._submit(_ready)

    def _submit(self, fn: Callable[..., None], *args: Any) -> concurrent.futures.Future[None]:
        pool = self._pool()
        try:
            return pool.submit(fn, *args)
        except concurrent.futures.process.BrokenProcessPool:  # a pool process died (killed, out of memory)
            log.warning("the background job pool broke; starting a new one")
            with self._lock:
                if self._executor is pool:
                    self._executor = None
            pool.shutdown(wait=False, cancel_futures=True)
            return self._pool().submit(fn, *args)

    # ---------------------------------------------------------------- starting and ending jobs
    def make_job_fn(self, fn: Callable[..., Any], progress: Any, key: Any = None) -> _Job:
        """Note the callback under Dash's ``key``; what Dash keeps is that key."""
        self.callbacks[key] = (fn, bool(progress))
        return _Job(key, bool(progress))

    def call_job_fn(self, key: str, job_fn: _Job, args: Any, context: Any) -> str | int:
        """Queue the job on the pool; its token, ``0`` when its result is already stored, :data:`REFUSED` over a bound.

        A job for a view already queued or running joins it: its page gets that job's token
        (a follower), and no second computation is queued. A refused job starts nothing;
        its page is told why (see :func:`notices_to`).
        """
        if _nothing_requested(args):
            return NOTHING
        if self.files.has(key):
            return 0  # stored: the first poll reads it, there is no job to wait for
        client = client_id()
        with self._admission():
            jobs = self._live_jobs()
            for token, spec in jobs:
                if spec["result"] == key and spec["callback"] == job_fn.key:  # the same view is on its way: wait for it
                    spec["followers"] = int(spec.get("followers", 0)) + 1
                    self._write_spec(token, spec)
                    return token
            live = [spec for _, spec in jobs]
            mine = sum(spec.get("client") == client for spec in live)
            if len(live) >= self.bounds.total:
                why = f"{len(live)} computations are queued or running, the most this server takes"
            elif mine >= self.bounds.per_client:
                why = f"you already have {mine} computations queued or running, the most one visitor may have"
            else:
                token = secrets.token_hex(16)
                spec = {"callback": job_fn.key, "result": key, "payload": json.dumps([args, dict(context)]), "client": client, "restarts": 0}
                self.files.delete(self._make_set_props_key(key))  # an earlier refusal's notice is not this job's
                self._write_spec(token, spec)
                self._launch(token, spec)
                return token
        log.warning("background job refused: %s", why)
        self._notify(job_fn.key, key, BUSY_NOTICE.format(why=why))
        return REFUSED

    def _launch(self, token: str, spec: dict[str, Any]) -> None:
        """Mark the job running (its lock, held shared until it ends) and queue it on this server's pool."""
        lock = self.files.directory / f"run-{token}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)  # "running" from now on, for every worker
        try:
            future = self._submit(_run_job, spec["callback"], spec["result"], self._make_progress_key(spec["result"]), spec["payload"], token, self._id)
        except BaseException:
            os.close(fd)
            lock.unlink(missing_ok=True)
            raise
        with self._lock:
            self._futures[token] = future
        future.add_done_callback(functools.partial(self._ended, token, fd))

    def _ended(self, token: str, fd: int, future: concurrent.futures.Future[str]) -> None:
        with self._lock:
            self._futures.pop(token, None)
        folder = self.files.directory
        cancelled = (folder / f"run-{token}.cancel").exists()
        failed = None if future.cancelled() else future.exception()
        finished = not future.cancelled() and failed is None and future.result() == _DONE
        if finished or cancelled:
            self._spec_path(token).unlink(missing_ok=True)  # else it stays: the next poll starts the job again
        os.close(fd)
        for suffix in ("lock", "cancel"):
            with contextlib.suppress(OSError):
                (folder / f"run-{token}.{suffix}").unlink()
        if failed is not None:
            log.error("background job %s failed outside its callback: %r", token[:8], failed)

    @contextlib.contextmanager
    def _admission(self) -> Iterator[None]:
        """Hold the machine's admission lock: counting jobs and starting one is one step for every worker."""
        fd = os.open(self.files.directory / "admission.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _spec_path(self, token: str) -> Path:
        return self.files.directory / f"run-{token}.json"

    def _write_spec(self, token: str, spec: dict[str, Any]) -> None:
        write_atomically(self._spec_path(token), json.dumps(spec).encode(), mode=0o600)

    def _read_spec(self, token: str) -> dict[str, Any] | None:
        try:
            spec = json.loads(read_regular(self._spec_path(token), max_bytes=self.files.max_bytes, what="job"))
        except (RepgeomError, ValueError):
            return None
        return spec if isinstance(spec, dict) and isinstance(spec.get("callback"), str) and isinstance(spec.get("result"), str) else None

    def _live_jobs(self) -> list[tuple[str, dict[str, Any]]]:
        """``(token, spec)`` of every job queued or running on the machine."""
        live = []
        for path in self.files.directory.glob("run-*.json"):
            token = path.name[len("run-") : -len(".json")]
            if _TOKEN.fullmatch(token) and self.job_running(token):
                spec = self._read_spec(token)
                if spec is not None:
                    live.append((token, spec))
        return live

    def _notify(self, callback_key: str, key: str, text: str) -> None:
        """Tell the page waiting on result ``key`` ``text``, where its callback shows notices (else only the log)."""
        fn = self.callbacks.get(callback_key, (None, False))[0]
        target = getattr(fn, "repgeom_notices", None)
        if target is not None:
            component_id, prop = target
            with contextlib.suppress(OSError):
                self.files.set(self._make_set_props_key(key), {component_id: {prop: text}})

    def _restart(self, token: str, key: str) -> None:
        """A job that ended without a result (its worker recycled, its process killed): start it again, or say it is lost."""
        with self._admission():
            if self.job_running(token) or self.files.has(key) or (self.files.directory / f"run-{token}.cancel").exists():
                return
            spec = self._read_spec(token)
            if spec is None or spec["result"] != key:
                return
            if int(spec.get("restarts", 0)) >= self.bounds.restarts:
                self._spec_path(token).unlink(missing_ok=True)
                log.warning("background job %s ended without a result %d times; giving up", token[:8], int(spec.get("restarts", 0)) + 1)
                self._notify(spec["callback"], key, LOST_NOTICE)
                return
            spec["restarts"] = int(spec.get("restarts", 0)) + 1
            self._write_spec(token, spec)
            log.info("background job %s ended without a result; starting it again", token[:8])
            self._launch(token, spec)

    def terminate_job(self, job: Any) -> None:
        """Cancel the job (any worker's): a queued one never starts, a running one stops at its next progress update.

        A job that other pages follow is not cancelled: one fewer follows it.
        """
        token = _token(job)
        if token is None or not self.job_running(token):
            return
        with self._admission():
            spec = self._read_spec(token)
            if spec is not None and int(spec.get("followers", 0)) > 0:
                spec["followers"] = int(spec["followers"]) - 1
                self._write_spec(token, spec)
                return
        with contextlib.suppress(OSError):
            (self.files.directory / f"run-{token}.cancel").touch(0o600)
        with self._lock:
            future = self._futures.get(token)
        if future is not None:
            future.cancel()  # still queued in this process: it never starts

    def terminate_unhealthy_job(self, job: Any) -> bool:
        """Nothing to do: a job is running (its lock held) or gone."""
        return False

    def job_running(self, job: Any) -> bool:
        """Whether the job is queued or running, in any process of the machine."""
        token = _token(job)
        if token is None:
            return False
        try:
            fd = os.open(self.files.directory / f"run-{token}.lock", os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    # ---------------------------------------------------------------- what polls read
    def get_progress(self, key: str) -> Any:
        """The job's last progress update, kept: every poller of the job sees it."""
        return self.files.load(self._make_progress_key(key))

    def result_ready(self, key: str) -> bool:
        """Whether the result is stored."""
        return self.files.has(key)

    def get_result(self, key: str, job: Any) -> Any:
        """The stored result (kept for the next visitor who asks the same), else ``UNDEFINED``.

        A job found ended without a result, and not cancelled, is started again here (at most
        :attr:`JobBounds.restarts` times): queued jobs of a recycled worker are not lost.
        """
        result = self.files.load(key, self.UNDEFINED)
        token = _token(job)
        if result is self.UNDEFINED and token is not None and not self.job_running(token):
            result = self.files.load(key, self.UNDEFINED)  # it may have ended right after the first look
            if result is self.UNDEFINED:
                self._restart(token, key)
        if result is not self.UNDEFINED:
            self.files.touch(key)
            self.files.delete(self._make_progress_key(key))
        return result

    def get_updated_props(self, key: str) -> dict[str, Any]:
        """The job's ``set_props`` updates, once."""
        props_key = self._make_set_props_key(key)
        props = self.files.load(props_key)
        if props is None:
            return {}
        self.files.delete(props_key)
        return dict(props)

    def clear_cache_entry(self, key: str) -> None:
        """Forget a stored value."""
        self.files.delete(key)

    def get_or_create_signing_secret(self, generate: Callable[[], bytes]) -> bytes:
        """Not kept here: the app's ``secret_key`` (the shared secret file) signs handles."""
        raise NotImplementedError


# -------------------------------------------------------------------- inside a pool process
@dataclass
class _PoolProcess:
    callbacks: Callbacks
    files: JobFiles
    slots: JobSlots
    busy: threading.Lock


#: What this process runs jobs with; set once by :func:`_start_pool_process` in a pool process.
_PROCESS: list[_PoolProcess] = []


def _start_pool_process(build: Callable[[], Callbacks], folder: str, ttl_s: int, slots: int, threads: int) -> None:
    """A pool process's initializer: lower priority, the server's torch threads, then the callbacks."""
    import torch  # noqa: PLC0415

    from ..memory import tune_allocator  # noqa: PLC0415

    tune_allocator()
    with contextlib.suppress(OSError):
        os.nice(JOB_NICENESS)  # a page's quick callbacks go before a long t-SNE
    torch.set_num_threads(threads)
    started = time.perf_counter()
    callbacks = build()
    log.info("background job process %d ready in %.1f s", os.getpid(), time.perf_counter() - started)
    _PROCESS[:] = [_PoolProcess(dict(callbacks), JobFiles(Path(folder), ttl_s), JobSlots(Path(folder), slots), threading.Lock())]
    threading.Thread(target=_leave_with_server, args=(_PROCESS[0].busy,), name="repgeom-orphan", daemon=True).start()


def _leave_with_server(busy: threading.Lock) -> None:
    """Exit once the server that started this process is gone (killed, say), after the job in hand.

    A server that exits normally shuts its pool down; one that is killed cannot, and its
    idle pool processes would wait for work forever. A job already running finishes and
    stores its result, which any other worker then answers.
    """
    multiprocessing.connection.wait([multiprocessing.parent_process().sentinel])
    busy.acquire()
    os._exit(0)


def _ready() -> None:
    """The job of :meth:`PoolManager.start`: none (the process's initializer is the work)."""


class _Checked:
    """The job's store as Dash's job body sees it: each progress update first checks for Cancel."""

    def __init__(self, files: JobFiles, progress_key: str, cancelled: Callable[[], bool]) -> None:
        self.files, self.progress_key, self.cancelled = files, progress_key, cancelled

    def set(self, key: str, value: Any) -> None:
        if key == self.progress_key and self.cancelled():
            raise JobCancelled
        self.files.set(key, value)


#: What :func:`_run_job` returns when the job ran to its end (or found its result stored); else :data:`_SKIPPED`.
_DONE, _SKIPPED = "done", "skipped"


def _nothing_requested(args: Any) -> bool:
    """Whether a background callback was called with no request: every input ``None`` (see :data:`NOTHING`)."""
    return isinstance(args, (list, tuple)) and all(a is None for a in args)


def _run_job(callback_key: str, result_key: str, progress_key: str, payload: str, token: str, server: str) -> str:
    """Run one job in a pool process: single flight, a slot, Dash's job body; the result goes to the files.

    Returns:
        :data:`_DONE`, or :data:`_SKIPPED` when it was cancelled or its server closed first.
    """
    from dash.background_callback.managers.diskcache_manager import _make_job_fn  # noqa: PLC0415

    (process,) = _PROCESS
    files, folder = process.files, process.files.directory
    fn, progress = process.callbacks[callback_key]
    cancel_flag = folder / f"run-{token}.cancel"

    def cancelled() -> bool:
        return cancel_flag.exists()

    def note(text: str) -> Callable[[], None]:
        def tell() -> None:
            if progress:
                files.set(progress_key, _progress_text(text))

        return tell

    fd = os.open(folder / f"run-{token}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)  # "running", however the submitting server fares
    process.busy.acquire()
    outcome = _SKIPPED
    try:
        if cancelled() or (folder / f"run-closed-{server}").exists():
            return outcome
        args, context = json.loads(payload)
        with _single_flight(folder, result_key, note("the same view is being computed for someone else…"), cancelled):
            if not files.has(result_key):  # else the job we waited for stored it
                with process.slots.hold(note("waiting for a free slot…"), cancelled=cancelled):
                    _make_job_fn(fn, _Checked(files, progress_key, cancelled), progress)(result_key, progress_key, args, context)
        outcome = _DONE
        return outcome
    except JobCancelled:
        log.info("background job %s cancelled", token[:8])
        return outcome
    finally:
        if outcome != _DONE:  # a finished job's last step goes with its result (PoolManager.get_result deletes it)
            files.delete(progress_key)
        os.close(fd)
        process.busy.release()


def app_callbacks(settings: Settings) -> Callbacks:
    """Build the dashboard from ``settings`` in this process and return its background callbacks by Dash's key.

    What a pool process runs: the same app as the server's, so the same keys. A job
    process computes only what it is sent (no warm-up), serves no responses (no response
    cache), and keeps at most :data:`JOB_CACHE_BYTES` of engine results: its results are
    kept in the shared folder, so its own cache only spares recomputing a job's features.
    """
    from .factory import create_app  # noqa: PLC0415 - the factory imports this module

    app = create_app(replace(settings, warm=False, response_cache_bytes=0, cache_bytes=min(settings.cache_bytes, JOB_CACHE_BYTES)))
    return app.server.extensions["repgeom.background"].manager.callbacks


class _CeleryManager(_Settled, CeleryManager):
    """Dash's Celery manager without the finished-looks-cancelled race, and clear when Redis is unreachable.

    A job that cannot be queued (Redis down or hung: each operation times out within
    :data:`~repgeom.shared_cache.REDIS_TIMEOUT_S`) is not an error page: the job is
    :data:`REFUSED` and its page told why, through a notice kept in this machine's folder
    (Redis being the trouble). While the process's Redis breaker is open no poll waits on
    Redis; after its cool-down the next job tries Redis, and when it answers everything is
    as before.

    Args:
        celery: the Celery app.
        notices: where notices are kept while Redis is unreachable (created when first needed).
        breaker: the circuit breaker shared with the process's other Redis users.
        **kwargs: as for :class:`dash.CeleryManager`.
    """

    def __init__(self, celery: Any, notices: Path, breaker: CircuitBreaker | None = None, **kwargs: Any) -> None:
        self._targets: dict[str, tuple[str, str]] = {}  # before Dash's __init__, which registers the known callbacks
        self.notices_dir = notices
        self.breaker = breaker or CircuitBreaker()
        super().__init__(celery, **kwargs)

    def make_job_fn(self, fn: Callable[..., Any], progress: Any, key: Any = None) -> Any:
        """Dash's Celery task for ``fn``; where its notices go is noted by the task's name."""
        task = super().make_job_fn(fn, progress, key)
        target = getattr(fn, "repgeom_notices", None)
        if target is not None:
            self._targets[task.name] = target
        return task

    def _redis(self, what: Callable[[], Any], fallback: Any) -> Any:
        """``what()``, or ``fallback`` when Redis fails or its breaker is open."""
        if not self.breaker.available:
            return fallback
        try:
            result = what()
        except Exception as exc:  # noqa: BLE001 - kombu, redis-py and Celery each raise their own
            self.breaker.failed("background jobs", exc)
            return fallback
        self.breaker.worked()
        return result

    def _files(self) -> JobFiles | None:
        try:
            return JobFiles(self.notices_dir)
        except OSError:
            return None

    def call_job_fn(self, key: str, job_fn: Any, args: Any, context: Any) -> Any:
        """Queue the job on Celery; :data:`REFUSED` (its page told why) when Redis is unreachable, :data:`NOTHING` for no request."""
        if _nothing_requested(args):
            return NOTHING
        token = self._redis(lambda: CeleryManager.call_job_fn(self, key, job_fn, args, context), REFUSED)
        files = self._files()
        if files is None:
            return token
        if token != REFUSED:
            files.delete(self._make_set_props_key(key))  # an earlier refusal's notice is not this job's
            return token
        target = self._targets.get(getattr(job_fn, "name", ""))
        if target is not None:
            component_id, prop = target
            with contextlib.suppress(OSError):
                files.set(self._make_set_props_key(key), {component_id: {prop: REDIS_NOTICE}})
        return token

    def job_running(self, job: Any) -> bool:
        """Whether Celery runs the job: ``False`` for a refused one; ``True`` while Redis is unreachable.

        A queued job is not lost while Redis is away (its worker writes the result when Redis
        returns), so its page keeps polling (cheaply: the open breaker asks no one) instead of
        taking the job for cancelled; Cancel stops it.
        """
        return job not in (REFUSED, NOTHING) and bool(self._redis(lambda: super(_CeleryManager, self).job_running(job), True))

    def get_result(self, key: str, job: Any) -> Any:
        """The stored result, else ``UNDEFINED`` (also while Redis is unreachable)."""
        if job in (REFUSED, NOTHING):
            return self.UNDEFINED
        return self._redis(lambda: super(_CeleryManager, self).get_result(key, job), self.UNDEFINED)

    def get_progress(self, key: str) -> Any:
        """The job's progress; while Redis is unreachable, :data:`REDIS_WAIT` (``None`` for a refused job)."""
        unreachable = object()
        progress = self._redis(lambda: super(_CeleryManager, self).get_progress(key), unreachable)
        if progress is not unreachable:
            return progress
        files = self._files()  # only now: a poll while Redis answers reads no folder
        refused = files is not None and files.has(self._make_set_props_key(key))  # its page reads the notice next
        return None if refused else _progress_text(REDIS_WAIT)

    def get_updated_props(self, key: str) -> dict[str, Any]:
        """A notice kept here, else the job's ``set_props`` from Redis."""
        files = self._files()
        props_key = self._make_set_props_key(key)
        local = files.load(props_key) if files is not None and files.has(props_key) else None
        if local is not None:
            files.delete(props_key)
            return dict(local)
        return self._redis(lambda: self._take(props_key), {})

    def _take(self, props_key: str) -> dict[str, Any]:
        """The job's ``set_props`` updates, read and deleted in one transaction: each is shown once.

        Dash's own ``get_updated_props`` deletes the job's *result* instead, and never the
        updates: a job that ended between a poll's result read and its updates read lost its
        result, and the page got an empty update (found by the scale-out test).
        """
        with self.handle.backend.client.pipeline() as pipe:  # MULTI/EXEC: no update written in between is lost
            pipe.get(props_key)
            pipe.delete(props_key)
            value, _ = pipe.execute()
        return {} if value is None else dict(json.loads(value))

    def terminate_job(self, job: Any) -> None:
        """Revoke the job on Celery (nothing for a refused one or a call with no request, or while Redis is unreachable)."""
        if job not in (REFUSED, NOTHING):
            self._redis(lambda: super(_CeleryManager, self).terminate_job(job), None)


@dataclass(frozen=True)
class Background:
    """The background-callback manager of one app, and what it runs on.

    Attributes:
        manager: the Dash manager to pass as ``background_callback_manager``.
        kind: ``"celery"`` or ``"pool"``.
        celery: the Celery app (scaled out), else ``None``.
        secret: the signing secret every process shares (``None``: kept in Redis by Dash).
    """

    manager: Any
    kind: str
    celery: Any = None
    secret: str | None = None


def make_background(
    settings: Settings,
    cache_dir: Path,
    fingerprint: str,
    build: Callable[[], Callbacks] | None = None,
    slots: int | None = None,
    breaker: CircuitBreaker | None = None,
) -> Background:
    """Build the background-callback manager.

    Args:
        settings: the server's settings (``redis_url`` set: scale out on Celery + Redis).
        cache_dir: this machine's shared cache folder (jobs go in a subfolder).
        fingerprint: the app build's fingerprint; jobs of another build are not reused.
        build: what a pool process runs once to get the callbacks (default:
            :func:`app_callbacks` of ``settings``).
        slots: the bound on jobs computing at once (default :func:`default_job_slots`).
        breaker: scaled out, the Redis circuit breaker shared with the shared caches.

    Returns:
        A :class:`Background`.
    """
    keep = [lambda: fingerprint]  # results are kept, per build (see the module notes)
    if settings.redis_url:
        celery = make_celery(settings.redis_url)
        manager = _CeleryManager(celery, cache_dir / f"jobs-{fingerprint[:16]}", breaker, cache_by=keep, expire=RESULT_TTL_S)
        return Background(manager, "celery", celery)
    files = JobFiles(cache_dir / f"jobs-{fingerprint[:16]}")
    files.trim()
    manager = PoolManager(files, build or functools.partial(app_callbacks, settings), cache_by=keep, slots=slots,
                          processes=settings.job_processes, bounds=JobBounds(settings.max_jobs, settings.max_client_jobs))
    return Background(manager, "pool", secret=_shared_secret(cache_dir))
