"""Bytes by key, and the one way this project replaces a file.

Design notes:
    Three things are worth keeping as bytes: encoded callback answers (see
    :mod:`repgeom.ui.response_cache`), the expensive arrays behind them (t-SNE and MDS
    coordinates, see :class:`repgeom.pipeline.Engine`) and background jobs' progress and
    results (see :mod:`repgeom.ui.background`). Each is plain bytes under a key, so one
    small interface (:class:`SharedStore`: ``get`` and ``put``) serves all of them, with
    three back ends:

    * :class:`MemoryStore`: this process only, an LRU bounded in bytes.
    * :class:`FolderStore`: one file per key in a folder every process of the machine
      shares, each written by :func:`write_atomically`, bounded in bytes (oldest files
      out first) and optionally by age.
    * :class:`RedisStore`: ``SET key value EX ttl`` under a prefix; Redis's own
      ``maxmemory`` / ``allkeys-lru`` bounds it. Every Redis operation times out within
      :data:`REDIS_TIMEOUT_S`, and a circuit breaker skips Redis for a while after a
      failure, so a Redis that is down or hung costs a request at most about a second,
      once per cool-down, never a stall.

    Only bytes cross these stores, and readers decode them with ``json`` or
    ``numpy.load(allow_pickle=False)``: nothing read back can run code. A store that
    fails (a full disk, Redis gone) costs only the cache hit, never the request: ``put``
    logs a warning (once, until a write succeeds again) and returns.

    *Self-healing.* A folder or Redis value is framed: a 16-byte header (the magic
    ``RGC1``, the data's length, its CRC-32), then the data. A value whose header, length
    or checksum does not match (a file truncated by a full disk or a crash of an older
    writer, a flipped bit, a file of another format) is deleted on read and reported as
    missing, so the caller computes it again and ``put`` replaces it.

    :func:`write_atomically` (and :func:`open_atomically`, for writers that stream),
    re-exported from :mod:`repgeom.core.atomic`, is the only file replacement in the
    project: a temporary file in the same folder, flushed to disk, then renamed over the
    target, so a reader in any process sees the old content, the new content or no
    file, never part of one, even after a crash. Here it refuses to replace anything but
    a regular file (a symlink planted in a shared folder is not followed, a directory is
    not clobbered).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .core.atomic import open_atomically, write_atomically

__all__ = [
    "FolderStore",
    "MemoryStore",
    "RedisStore",
    "REDIS_TIMEOUT_S",
    "CircuitBreaker",
    "SharedStore",
    "celery_timeouts",
    "frame",
    "open_atomically",
    "open_store",
    "trim_folder",
    "unframe",
    "write_atomically",
]

log = logging.getLogger(__name__)

#: Keys a :class:`FolderStore` accepts by default: lower-case hex, then hex, ``-``, ``_`` or ``.``.
HEX_KEY = re.compile(r"[0-9a-f][0-9a-f_.-]{0,199}")


_MAGIC = b"RGC1"
_HEADER = struct.Struct(">4sQI")  # magic, data length, CRC-32 of the data


def frame(data: bytes) -> bytes:
    """``data`` with its header (magic, length, CRC-32): what the folder and Redis stores keep."""
    return _HEADER.pack(_MAGIC, len(data), zlib.crc32(data)) + data


def unframe(blob: bytes) -> bytes | None:
    """The data of a :func:`frame`-d value, or ``None`` when its header, length or checksum is wrong."""
    if len(blob) < _HEADER.size:
        return None
    magic, length, crc = _HEADER.unpack_from(blob)
    data = blob[_HEADER.size :]
    if magic != _MAGIC or length != len(data) or zlib.crc32(data) != crc:
        return None
    return data


class _WarnOnce:
    """A warning logged when a store starts failing (or fails differently), not on every failed write."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._last: str | None = None

    def failed(self, kind: str, reason: str) -> None:
        if kind != self._last:
            self._last = kind
            log.warning("%s not written, values are not cached until it works again (%s)", self.what, reason)

    def worked(self) -> None:
        if self._last is not None:
            self._last = None
            log.warning("%s written again", self.what)


def trim_folder(folder: Path, pattern: str, max_bytes: int, ttl_s: float | None = None) -> None:
    """Delete old files of ``folder`` that match ``pattern``.

    First those unmodified for ``ttl_s`` seconds (when given), then the oldest until the
    rest take at most ``max_bytes``.
    """
    now, files = time.time(), []
    for f in folder.glob(pattern):
        try:
            st = f.lstat()
        except OSError:
            continue
        if ttl_s is not None and now - st.st_mtime > ttl_s:
            f.unlink(missing_ok=True)
        else:
            files.append((st.st_mtime, st.st_size, f))
    total = sum(size for _, size, _ in files)
    for _, size, f in sorted(files):
        if total <= max_bytes:
            break
        f.unlink(missing_ok=True)
        total -= size


@runtime_checkable
class SharedStore(Protocol):
    """Bytes by key (what every store here offers)."""

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (best effort: failures are logged, not raised)."""


class MemoryStore:
    """Bytes in this process: a thread-safe LRU bounded by their total size.

    Args:
        max_bytes: bound on the bytes held; a value larger than a quarter of it is not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """The bytes under ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            data = self._data.get(key)
            if data is not None:
                self._data.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        """Keep ``data`` under ``key``, dropping the least recently used beyond the bound."""
        if len(data) > self.max_bytes // 4:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._data[key] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self._size -= len(dropped)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._size

    def __len__(self) -> int:
        return len(self._data)


class FolderStore:
    """One file per key in a folder (mode 0700), bounded by total size and optionally by age.

    Args:
        directory: the folder (created if missing).
        max_bytes: bound on the folder's content; the oldest files go first.
        ttl_s: seconds a value lives after it was last written or touched (``None``: no limit).
        suffix: file name ending of the values (trimming touches only these).
        key_pattern: what a key must fully match (default :data:`HEX_KEY`); anything
            else is refused with :class:`ValueError`, so a key never names another path.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = 1 << 30,
        ttl_s: float | None = None,
        suffix: str = ".bin",
        key_pattern: re.Pattern[str] = HEX_KEY,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.suffix = suffix
        self.key_pattern = key_pattern
        self._written = 0
        self._lock = threading.Lock()
        self._warn = _WarnOnce(f"shared cache folder {self.directory}")
        self.corrupt = 0

    def path(self, key: str) -> Path:
        """The file that holds ``key``.

        Raises:
            ValueError: when ``key`` does not match the store's key pattern.
        """
        if not isinstance(key, str) or not self.key_pattern.fullmatch(key):
            raise ValueError(f"store keys must match {self.key_pattern.pattern!r} (lower-case hex), got {str(key)[:40]!r}")
        return self.directory / f"{key}{self.suffix}"

    def get(self, key: str) -> bytes | None:
        """The value; ``None`` when it is missing, expired, unreadable or corrupt (then it is deleted)."""
        path = self.path(key)
        try:
            with path.open("rb") as fh:
                if self.ttl_s is not None and time.time() - os.fstat(fh.fileno()).st_mtime > self.ttl_s:
                    path.unlink(missing_ok=True)
                    return None
                blob = fh.read()
        except OSError:
            return None
        data = unframe(blob)
        if data is None:
            self.corrupt += 1
            log.warning("shared cache entry %s is corrupt (%d bytes); deleted, to be computed again", path.name, len(blob))
            path.unlink(missing_ok=True)
        return data

    def has(self, key: str) -> bool:
        """Whether a live value is stored under ``key`` (without reading it)."""
        try:
            age = time.time() - self.path(key).stat().st_mtime
        except OSError:
            return False
        return self.ttl_s is None or age <= self.ttl_s

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` (replacing what is there) with :func:`write_atomically`; trim now and then.

        Failures (a full disk, a planted non-file) are logged once and otherwise ignored:
        the value is just not cached.
        """
        path = self.path(key)
        try:
            write_atomically(path, frame(data))
        except OSError as exc:
            self._warn.failed(f"{type(exc).__name__} {exc.errno}", str(exc))
            return
        self._warn.worked()
        with self._lock:
            self._written += len(data)
            due = self._written > self.max_bytes // 8
            if due:
                self._written = 0
        if due:
            self.trim()

    def touch(self, key: str) -> None:
        """Restart ``key``'s time to live (and make it the newest, last to be trimmed)."""
        with contextlib.suppress(OSError):
            os.utime(self.path(key))

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        with contextlib.suppress(OSError):
            self.path(key).unlink()

    def trim(self) -> None:
        """Delete expired files, then the oldest until the folder is within its budget."""
        trim_folder(self.directory, f"*{self.suffix}", self.max_bytes, self.ttl_s)


#: Seconds a Redis connect or socket operation may take, here and in the Celery broker (at most 2 s).
REDIS_TIMEOUT_S = 1.0


def celery_timeouts(timeout_s: float = REDIS_TIMEOUT_S) -> dict[str, Any]:
    """Celery settings that bound each broker and result-backend operation on Redis to ``timeout_s``.

    Publishing a job is not retried and the result backend reconnects once, so with
    Redis down a job start fails at once, and with Redis hung within about
    ``timeout_s`` (measured: 0.01 s and 1.0 s with the default 1 s), not after a
    minute; the next job start tries Redis again.

    Redis acknowledgement emulation is off: with it, an acknowledgement lost to a Redis
    restart made the Celery worker's reconnect fail inside kombu (``'NoneType' object has
    no attribute 'hostname'``, an "Unrecoverable error") and the worker exit, so no job ran
    again. Without it a job is taken off the queue when a worker receives it (Celery
    acknowledges on receipt here anyway): one a worker dies holding is not redelivered an
    hour later (the visibility timeout), when its page has long stopped waiting.

    Args:
        timeout_s: connect and socket timeout, seconds.

    Returns:
        Keyword arguments for ``celery_app.conf.update``.
    """
    transport = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s, "max_retries": 0,
                 "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2, "ack_emulation": False}
    return {
        "broker_connection_timeout": timeout_s,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                                              "interval_max": 0.2}},
        "redis_socket_timeout": timeout_s,
        "redis_socket_connect_timeout": timeout_s,
        "redis_retry_on_timeout": False,
        "task_publish_retry": False,
        "task_publish_retry_policy": {"max_retries": 0, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
    }


class CircuitBreaker:
    """Whether to talk to Redis now: after a failure nobody waits on it for ``cooldown_s`` seconds.

    One breaker is shared by everything of a process that talks to one Redis (the shared
    caches and the Celery manager), so a Redis that is down or hung costs one request one
    timeout per cool-down, not every store and the job queue a timeout each. The first
    operation after the cool-down tries Redis again; its success closes the breaker
    (logged), a failure opens it anew.

    Args:
        cooldown_s: seconds Redis is left alone after a failure.
    """

    def __init__(self, cooldown_s: float = 10.0) -> None:
        self.cooldown_s = cooldown_s
        self._open_until: float | None = None  # monotonic time the breaker closes again; None: closed
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """Whether Redis is tried now (the breaker is closed, or its cool-down is over)."""
        until = self._open_until
        return until is None or time.monotonic() >= until

    def failed(self, who: str, exc: BaseException) -> None:
        """Open the breaker after ``who``'s operation failed with ``exc`` (logged once per outage)."""
        with self._lock:
            first = self._open_until is None
            self._open_until = time.monotonic() + self.cooldown_s
        if first:
            log.warning("%s: Redis failed (%s: %s); it is left alone, and tried again every %.0f s",
                        who, type(exc).__name__, str(exc)[:200], self.cooldown_s)

    def worked(self) -> None:
        """Close the breaker after an operation succeeded."""
        if self._open_until is not None:
            with self._lock:
                self._open_until = None
            log.warning("Redis reachable again")


class RedisStore:
    """Keys in Redis under a prefix, each with a time to live, behind a circuit breaker.

    Every operation has connect and socket timeouts of ``timeout_s`` and is not retried.
    While the breaker is open (see :class:`CircuitBreaker`) every ``get`` is a miss and
    every ``put`` is skipped without touching the network.

    Args:
        url: ``redis://host:port/db``.
        prefix: prepended to every key (separates the app's entries from Celery's).
        ttl_s: seconds an entry lives (Redis's ``maxmemory`` policy may drop it sooner).
        timeout_s: connect and socket timeout, seconds.
        breaker: shared with whatever else talks to this Redis (default: one of its own).
    """

    def __init__(self, url: str, prefix: str = "repgeom:", ttl_s: int = 7 * 24 * 3600,
                 timeout_s: float = REDIS_TIMEOUT_S, breaker: CircuitBreaker | None = None) -> None:
        import redis  # noqa: PLC0415 - only needed when scaled out
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.retry import Retry  # noqa: PLC0415

        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                           retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.breaker = breaker or CircuitBreaker()
        self.corrupt = 0

    @property
    def available(self) -> bool:
        """Whether Redis is tried now (the breaker is closed, or its cool-down is over)."""
        return self.breaker.available

    def _failed(self, what: str, exc: BaseException) -> None:
        self.breaker.failed(f"shared cache {what}", exc)

    def _worked(self) -> None:
        self.breaker.worked()

    def get(self, key: str) -> bytes | None:
        """The value, or ``None`` when missing, corrupt (then deleted) or Redis cannot be reached."""
        if not self.available:
            return None
        try:
            value = self.client.get(self.prefix + key)
        except Exception as exc:  # noqa: BLE001 - redis raises many kinds; a miss is the safe answer
            self._failed("read", exc)
            return None
        self._worked()
        if value is None:
            return None
        data = unframe(bytes(value))
        if data is None:
            self.corrupt += 1
            log.warning("shared cache entry %s is corrupt; deleted, to be computed again", key[:80])
            with contextlib.suppress(Exception):
                self.client.delete(self.prefix + key)
        return data

    def put(self, key: str, data: bytes) -> None:
        """``SET`` with the time to live (replacing what is there); failures are logged once and skipped."""
        if not self.available:
            return
        try:
            self.client.set(self.prefix + key, frame(data), ex=self.ttl_s)
        except Exception as exc:  # noqa: BLE001
            self._failed("write", exc)
            return
        self._worked()


def open_store(redis_url: str | None, directory: str | os.PathLike[str] | None, namespace: str, max_bytes: int = 1 << 30,
               breaker: CircuitBreaker | None = None) -> SharedStore | None:
    """The shared store for ``namespace``: Redis when ``redis_url`` is set, else a folder, else none.

    Args:
        redis_url: ``redis://...`` (scaled out) or ``None``.
        directory: the folder on this machine, used when there is no Redis.
        namespace: what is stored and for which build (``"responses-<fingerprint>"``): the Redis key prefix.
        max_bytes: bound on a folder store.
        breaker: the Redis circuit breaker shared with the process's other Redis users.
    """
    if redis_url:
        return RedisStore(redis_url, prefix=f"repgeom:{namespace}:", breaker=breaker)
    if directory:
        return FolderStore(directory, max_bytes)
    return None
