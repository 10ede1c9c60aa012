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
      ``maxmemory`` / ``allkeys-lru`` bounds it.

    Only bytes cross these stores, and readers decode them with ``json`` or
    ``numpy.load(allow_pickle=False)``: nothing read back can run code. A store that
    fails (a full disk, Redis gone) costs only the cache hit, never the request: ``put``
    logs and returns.

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
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, runtime_checkable

from .core.atomic import open_atomically, write_atomically

__all__ = [
    "FolderStore",
    "MemoryStore",
    "RedisStore",
    "SharedStore",
    "open_atomically",
    "open_store",
    "trim_folder",
    "write_atomically",
]

log = logging.getLogger(__name__)

#: Keys a :class:`FolderStore` accepts by default: lower-case hex, then hex, ``-``, ``_`` or ``.``.
HEX_KEY = re.compile(r"[0-9a-f][0-9a-f_.-]{0,199}")


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

    def path(self, key: str) -> Path:
        """The file that holds ``key``.

        Raises:
            ValueError: when ``key`` does not match the store's key pattern.
        """
        if not isinstance(key, str) or not self.key_pattern.fullmatch(key):
            raise ValueError(f"store keys must match {self.key_pattern.pattern!r} (lower-case hex), got {str(key)[:40]!r}")
        return self.directory / f"{key}{self.suffix}"

    def get(self, key: str) -> bytes | None:
        """The file's bytes; ``None`` when it is missing, expired or unreadable."""
        path = self.path(key)
        try:
            with path.open("rb") as fh:
                if self.ttl_s is not None and time.time() - os.fstat(fh.fileno()).st_mtime > self.ttl_s:
                    path.unlink(missing_ok=True)
                    return None
                return fh.read()
        except OSError:
            return None

    def has(self, key: str) -> bool:
        """Whether a live value is stored under ``key`` (without reading it)."""
        try:
            age = time.time() - self.path(key).stat().st_mtime
        except OSError:
            return False
        return self.ttl_s is None or age <= self.ttl_s

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` with :func:`write_atomically`; trim the folder now and then.

        Failures (a full disk, a planted non-file) are logged and otherwise ignored.
        """
        path = self.path(key)
        try:
            write_atomically(path, data)
        except OSError as exc:
            log.warning("shared cache folder not written (%s)", exc.strerror or exc)
            return
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


class RedisStore:
    """Keys in Redis under a prefix, each with a time to live.

    Args:
        url: ``redis://host:port/db``.
        prefix: prepended to every key (separates the app's entries from Celery's).
        ttl_s: seconds an entry lives (Redis's ``maxmemory`` policy may drop it sooner).
    """

    def __init__(self, url: str, prefix: str = "repgeom:", ttl_s: int = 7 * 24 * 3600) -> None:
        import redis  # noqa: PLC0415 - only needed when scaled out

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.prefix = prefix
        self.ttl_s = ttl_s

    def get(self, key: str) -> bytes | None:
        """The value, or ``None`` when missing or Redis cannot be reached."""
        try:
            value = self.client.get(self.prefix + key)
        except Exception as exc:  # noqa: BLE001 - redis raises many kinds; a miss is the safe answer
            log.warning("shared cache read failed (%s)", type(exc).__name__)
            return None
        return bytes(value) if value is not None else None

    def put(self, key: str, data: bytes) -> None:
        """``SET`` with the time to live; failures are logged."""
        try:
            self.client.set(self.prefix + key, data, ex=self.ttl_s)
        except Exception as exc:  # noqa: BLE001
            log.warning("shared cache write failed (%s)", type(exc).__name__)


def open_store(redis_url: str | None, directory: str | os.PathLike[str] | None, namespace: str, max_bytes: int = 1 << 30) -> SharedStore | None:
    """The shared store for ``namespace``: Redis when ``redis_url`` is set, else a folder, else none.

    Args:
        redis_url: ``redis://...`` (scaled out) or ``None``.
        directory: the folder on this machine, used when there is no Redis.
        namespace: what is stored and for which build (``"responses-<fingerprint>"``): the Redis key prefix.
        max_bytes: bound on a folder store.
    """
    if redis_url:
        return RedisStore(redis_url, prefix=f"repgeom:{namespace}:")
    if directory:
        return FolderStore(directory, max_bytes)
    return None
