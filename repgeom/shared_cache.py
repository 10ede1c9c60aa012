"""Byte stores shared by every server process: a folder on one machine, Redis across machines.

Design notes:
    Two things are worth sharing between gunicorn workers, background jobs and Celery
    workers: encoded callback answers (see :mod:`repgeom.ui.response_cache`) and the
    expensive arrays behind them (t-SNE and MDS coordinates, see
    :class:`repgeom.pipeline.Engine`). Both are plain bytes under a hex key, so one small
    interface serves both, with two back ends:

    * :class:`FolderStore`: one file per key, written to a temporary name and renamed,
      so a reader never sees half a file; bounded in bytes (oldest files out first).
    * :class:`RedisStore`: ``SET key value EX ttl`` under a prefix; Redis's own
      ``maxmemory`` / ``allkeys-lru`` bounds it.

    Only bytes cross these stores, and readers decode them with ``json`` or
    ``numpy.load(allow_pickle=False)``: nothing read back can run code. A store that
    fails (a full disk, Redis gone) costs only the cache hit, never the request.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["FolderStore", "RedisStore", "SharedStore", "open_store", "trim_folder", "write_atomically"]

log = logging.getLogger(__name__)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name in the same folder, then rename.

    A reader in any process sees the old content, the new content, or no file; never part
    of one. Errors propagate; the temporary file never stays behind.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def trim_folder(folder: Path, pattern: str, max_bytes: int, ttl_s: float | None = None) -> None:
    """Delete the files matching ``pattern`` unmodified for ``ttl_s`` seconds, then the oldest
    until the rest take at most ``max_bytes``."""
    now, files = time.time(), []
    for f in folder.glob(pattern):
        try:
            st = f.stat()
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
    """Bytes by key, visible to every process that opens the same store."""

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (best effort: failures are logged, not raised)."""


class FolderStore:
    """Files in one folder, bounded by their total size.

    Args:
        directory: the folder (created if missing).
        max_bytes: bound on the folder's content; the oldest files go first.
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 1 << 30) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._written = 0
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        if not key or not all(c in "0123456789abcdef-_." for c in key) or key.startswith("."):
            raise ValueError(f"store keys are lower-case hex, got {key[:40]!r}")
        return self.directory / f"{key}.bin"

    def get(self, key: str) -> bytes | None:
        """The file's bytes, or ``None`` when it is missing or unreadable."""
        try:
            return self._path(key).read_bytes()
        except OSError:
            return None

    def put(self, key: str, data: bytes) -> None:
        """Write atomically (temporary name, then rename); trim the folder now and then."""
        path = self._path(key)
        if path.exists():
            return
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

    def trim(self) -> None:
        """Delete the oldest files until the folder is within its budget."""
        trim_folder(self.directory, "*.bin", self.max_bytes)


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
