"""A bounded cache of whole callback responses, keyed by the request body.

Design notes:
    Every plain callback here is a pure function of what the browser posts (the engine
    is deterministic and its caches never change a result), so two identical bodies get
    identical answers. Building a Plotly figure and encoding it costs ~150 ms of one
    core for the RDM view; replaying the encoded bytes costs well under a millisecond.
    The body is hashed as it arrives; a hit is answered before Dash runs at all, and a
    fresh 200 answer is stored on the way out. The callbacks still validate everything
    the first time a body is seen, so a forged body can only ever replay its own answer.

    Two tiers: per process, a :class:`~repgeom.shared_cache.MemoryStore` (an LRU
    bounded in bytes); shared, a :class:`~repgeom.shared_cache.SharedStore` (a folder on one machine with
    ``--cache-dir``, Redis when ``REDIS_URL`` is set), so every worker, every machine
    and a restarted server replay what any of them computed. Only bytes are stored:
    nothing is ever unpickled.

    Background callbacks are never replayed: their first answer is a signed job handle
    for one page load, and their polls and cancels carry the job in the query string.
    Any request with query arguments other than Dash's ``endId`` is passed through.
    Each answer says ``X-Repgeom-Cache: miss``, ``hit`` (this process) or ``shared``.
"""

from __future__ import annotations

import hashlib
import threading

from flask import Flask, Response, g, has_request_context, request

from ..shared_cache import MemoryStore, SharedStore

__all__ = ["CACHE_HEADER", "ResponseCache", "do_not_replay", "install_response_cache"]

_ENDPOINT = "/_dash-update-component"
#: Response header naming where an answer came from: ``miss``, ``hit`` or ``shared``.
CACHE_HEADER = "X-Repgeom-Cache"
# What a background callback's first answer starts with (a job handle, never replayable).
_JOB_HANDLE = b'{"cacheKey"'


class ResponseCache:
    """Response bytes by request hash: this process's :class:`~repgeom.shared_cache.MemoryStore` over an optional shared store.

    Args:
        max_bytes: bound on the bytes this process keeps (an answer over a quarter of it is not kept).
        shared: the store every worker (and machine) reads and writes, or ``None``.
    """

    def __init__(self, max_bytes: int, shared: SharedStore | None = None) -> None:
        self.local = MemoryStore(max_bytes)
        self.shared = shared
        self._lock = threading.Lock()
        self.hits = 0
        self.shared_hits = 0
        self.misses = 0

    def lookup(self, key: bytes) -> tuple[bytes | None, str]:
        """The stored bytes for ``key`` and where they were found (``hit``, ``shared``, ``miss``)."""
        name = key.hex()
        data, where = self.local.get(name), "hit"
        if data is None and self.shared is not None:
            data, where = self.shared.get(name), "shared"
            if data is not None:
                self.local.put(name, data)
        if data is None:
            where = "miss"
        with self._lock:
            if where == "hit":
                self.hits += 1
            elif where == "shared":
                self.shared_hits += 1
            else:
                self.misses += 1
        return data, where

    def get(self, key: bytes) -> bytes | None:
        """The stored bytes for ``key`` (and mark them recently used), or ``None``."""
        return self.lookup(key)[0]

    def put(self, key: bytes, data: bytes) -> None:
        """Store ``data`` unless it alone exceeds a quarter of the budget."""
        if len(data) > self.local.max_bytes // 4:
            return
        self.local.put(key.hex(), data)
        if self.shared is not None:
            self.shared.put(key.hex(), data)

    @property
    def max_bytes(self) -> int:
        """The bound on this process's bytes."""
        return self.local.max_bytes

    @property
    def nbytes(self) -> int:
        """Bytes held in this process."""
        return self.local.nbytes


def do_not_replay() -> None:
    """Keep the current answer out of the cache (it reports a failure that may not recur)."""
    if has_request_context():
        g.repgeom_response_key = None


def _replayable() -> bool:
    return request.method == "POST" and request.path.endswith(_ENDPOINT) and not (set(request.args) - {"endId"})


def install_response_cache(server: Flask, max_bytes: int, shared: SharedStore | None = None) -> ResponseCache:
    """Answer repeated callback requests of ``server`` from a :class:`ResponseCache`."""
    cache = ResponseCache(max_bytes, shared)

    @server.before_request
    def _replay() -> Response | None:
        if not _replayable():
            return None
        key = hashlib.sha256(request.get_data(cache=True)).digest()
        g.repgeom_response_key = key
        data, where = cache.lookup(key)
        if data is None:
            return None
        g.repgeom_response_key = None
        response = Response(data, status=200, mimetype="application/json")
        response.headers[CACHE_HEADER] = where
        return response

    @server.after_request
    def _store(response: Response) -> Response:
        key = g.pop("repgeom_response_key", None)
        if key is not None and response.status_code == 200 and not response.direct_passthrough:
            data = response.get_data()
            if not data.startswith(_JOB_HANDLE):
                cache.put(key, data)
            response.headers[CACHE_HEADER] = "miss"
        return response

    return cache
