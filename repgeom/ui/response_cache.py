"""A bounded cache of whole callback responses, keyed by the request body.

Design notes:
    Every callback here is a pure function of what the browser posts (the engine is
    deterministic and its caches never change a result), so two identical bodies get
    identical answers. Building a Plotly figure and encoding it costs ~150 ms of one
    core for the RDM view; replaying the encoded bytes costs well under a millisecond.
    The body is hashed as it arrives; a hit is answered before Dash runs at all, and a
    fresh 200 answer is stored on the way out. The callbacks still validate everything
    the first time a body is seen, so a forged body can only ever replay its own answer.
    The cache is per process and bounded in bytes (least recently used out first).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from flask import Flask, Response, g, request

__all__ = ["ResponseCache", "install_response_cache"]

_ENDPOINT = "/_dash-update-component"


class ResponseCache:
    """Thread-safe LRU of response bytes, bounded by their total size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> bytes | None:
        """The stored bytes for ``key`` (and mark them recently used), or ``None``."""
        with self._lock:
            data = self._data.get(key)
            if data is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return data

    def put(self, key: bytes, data: bytes) -> None:
        """Store ``data`` unless it alone exceeds a quarter of the budget."""
        if len(data) > self.max_bytes // 4:
            return
        with self._lock:
            if key in self._data:
                return
            self._data[key] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, old = self._data.popitem(last=False)
                self._size -= len(old)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._size


def install_response_cache(server: Flask, max_bytes: int) -> ResponseCache:
    """Answer repeated callback requests of ``server`` from a :class:`ResponseCache`."""
    cache = ResponseCache(max_bytes)

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
