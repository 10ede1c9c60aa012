"""A bounded cache of whole callback responses, keyed by the request body.

Design notes:
    Every callback here is a pure function of what the browser posts (the engine is
    deterministic and its caches never change a result), so two identical bodies get
    identical answers. Building a Plotly figure and encoding it costs ~150 ms of one
    core for the RDM view; replaying the encoded bytes costs well under a millisecond.
    The body is hashed as it arrives; a hit is answered before Dash runs at all, and a
    fresh 200 answer is stored on the way out. The callbacks still validate everything
    the first time a body is seen, so a forged body can only ever replay its own answer.
    The memory tier is per process and bounded in bytes (least recently used out
    first). With a cache folder (``--cache-dir``), answers are also written there as
    plain files named by the hash (written to a temporary name, then renamed), so every
    worker on the machine, and a restarted server, replays them; the folder is bounded
    too, oldest files out first. Only bytes are stored: nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from flask import Flask, Response, g, request

__all__ = ["ResponseCache", "install_response_cache"]

_ENDPOINT = "/_dash-update-component"


class ResponseCache:
    """Thread-safe LRU of response bytes, bounded by their total size."""

    def __init__(self, max_bytes: int, directory: str | os.PathLike[str] | None = None, max_disk_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self.directory = Path(directory) if directory else None
        self.max_disk_bytes = max_disk_bytes
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._data: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._written = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _path(self, key: bytes) -> Path:
        assert self.directory is not None
        return self.directory / f"{key.hex()}.json"

    def get(self, key: bytes) -> bytes | None:
        """The stored bytes for ``key`` (and mark them recently used), or ``None``."""
        with self._lock:
            data = self._data.get(key)
            if data is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return data
        if self.directory is not None:
            try:
                data = self._path(key).read_bytes()
            except OSError:
                data = None
            if data is not None:
                self._remember(key, data)
                with self._lock:
                    self.hits += 1
                return data
        with self._lock:
            self.misses += 1
        return None

    def put(self, key: bytes, data: bytes) -> None:
        """Store ``data`` unless it alone exceeds a quarter of the budget."""
        if len(data) > self.max_bytes // 4:
            return
        self._remember(key, data)
        if self.directory is not None and not self._path(key).exists():
            self._write(key, data)

    def _remember(self, key: bytes, data: bytes) -> None:
        with self._lock:
            if key in self._data:
                return
            self._data[key] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, old = self._data.popitem(last=False)
                self._size -= len(old)

    def _write(self, key: bytes, data: bytes) -> None:
        assert self.directory is not None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self._path(key))
        except OSError:
            return  # a full or read-only disk only costs the replay
        with self._lock:
            self._written += len(data)
            due = self._written > self.max_disk_bytes // 8
            if due:
                self._written = 0
        if due:
            self._trim()

    def _trim(self) -> None:
        """Delete the oldest files until the folder is within its budget."""
        assert self.directory is not None
        files = []
        for f in self.directory.glob("*.json"):
            try:
                st = f.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, f))
        total = sum(size for _, size, _ in files)
        for _, size, f in sorted(files):
            if total <= self.max_disk_bytes:
                break
            f.unlink(missing_ok=True)
            total -= size

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._size


def install_response_cache(server: Flask, max_bytes: int, directory: str | os.PathLike[str] | None = None) -> ResponseCache:
    """Answer repeated callback requests of ``server`` from a :class:`ResponseCache`."""
    cache = ResponseCache(max_bytes, directory)

    @server.before_request
    def _replay() -> Response | None:
        if request.method != "POST" or request.path != _ENDPOINT:
            return None
        key = hashlib.sha256(request.get_data(cache=True)).digest()
        g.repgeom_response_key = key
        data = cache.get(key)
        if data is None:
            return None
        return Response(data, status=200, mimetype="application/json")

    @server.after_request
    def _store(response: Response) -> Response:
        key = g.pop("repgeom_response_key", None)
        if key is not None and response.status_code == 200 and not response.direct_passthrough:
            cache.put(key, response.get_data())
        return response

    return cache
