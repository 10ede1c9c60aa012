"""gunicorn's threaded worker, hardened against slow clients: a request gets a thread only once it has arrived.

Design notes:
    gunicorn's ``gthread`` worker hands a connection to a request thread as soon as its
    first bytes arrive; the thread then blocks until the request head (and, when the app
    reads it, the body) is complete. Fifty clients that send their headers a byte at a
    time, or thirty that never finish their body, hold every thread, and ``/healthz``
    times out with the rest.

    :class:`BufferingWorker` reads each request in the worker's event loop instead: the
    socket is read without blocking whenever it is readable, the bytes are kept, and only
    a complete request (its head, and its body as ``Content-Length`` or the chunked
    terminator says) goes to a thread, which then finds everything it reads already
    buffered. A request that has not arrived within :data:`READ_DEADLINE_S` is dropped; a
    slow client costs a socket, never a thread (``worker_connections`` bounds the
    sockets).

    Health checks have a lane of their own: ``GET /healthz`` runs on a one-thread pool
    apart from the request threads, so an orchestrator sees a live worker even while all
    its request threads compute.

    A body larger than the server accepts (``REPGEOM_MAX_BODY_BYTES``) is not waited for:
    the request goes to a thread at once and the app answers 413 without reading it.
    TLS and HTTP/2 connections are handled as gunicorn does (the image serves plain
    HTTP/1.1 behind whatever terminates TLS).
"""

from __future__ import annotations

import errno
import re
import selectors
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

from .settings import Settings

__all__ = ["READ_DEADLINE_S", "BufferingWorker", "request_complete"]

#: Seconds a client has to send a whole request (head and body) once it has connected or sent its last one.
READ_DEADLINE_S = 20.0
#: Largest request head kept (gunicorn's own limits refuse anything near it with a 400).
MAX_HEAD_BYTES = 64 << 10
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d{1,19})[ \t]*(?=\r\n)")
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r\n]*chunked")
_HEALTH = re.compile(rb"(GET|HEAD) /healthz[ ?]")


def request_complete(data: bytes, max_body: int) -> bool:
    """Whether ``data`` holds a whole request, or enough of one for the app to refuse it.

    Args:
        data: the bytes received so far on a connection, from the start of a request.
        max_body: the largest body the app accepts; a longer announced body is not waited for.

    Returns:
        ``True`` once the head is complete and its body too (by ``Content-Length``, or the
        chunked ``0`` chunk), or when the head or the announced body is too large to wait for.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) > MAX_HEAD_BYTES
    head, body = b"\r\n" + data[:end].lower() + b"\r\n", data[end + 4 :]
    if _CHUNKED.search(head):
        return len(body) > max_body or body.endswith(b"0\r\n\r\n") or b"\r\n0\r\n\r\n" in body
    length = _CONTENT_LENGTH.search(head)
    if length is None:
        return True
    return len(body) >= int(length.group(1)) or int(length.group(1)) > max_body


@dataclass
class _Arriving:
    """A request being received: its bytes so far and when it must be complete."""

    deadline: float
    data: bytearray = field(default_factory=bytearray)


class BufferingWorker(ThreadWorker):
    """``gthread`` that gives a thread only to a request that has fully arrived (see the module notes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arriving: dict[Any, _Arriving] = {}
        self.max_body = Settings.from_env().max_body_bytes
        self.health_pool: futures.ThreadPoolExecutor | None = None

    def init_process(self) -> None:
        """Start the health-check lane, then gunicorn's loop."""
        self.health_pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="healthz")
        super().init_process()

    # -------------------------------------------------------------------- receiving
    def enqueue_req(self, conn: Any) -> None:
        """Receive what ``conn`` has sent; hand the request to a thread once it is complete."""
        parser = getattr(conn, "parser", None)
        if self.cfg.is_ssl or getattr(conn, "is_http2", False) or negotiation.prior_knowledge_allowed(self.cfg, conn.client):
            super().enqueue_req(conn)
            return
        if parser is not None and parser.unreader.buf.getvalue():  # pipelined: the next request is buffered already
            self._dispatch(conn, bytes(parser.unreader.buf.getvalue()[:64]))
            return
        arriving = self.arriving.pop(conn, None) or _Arriving(time.monotonic() + READ_DEADLINE_S)
        closed = self._receive(conn, arriving.data)
        if request_complete(bytes(arriving.data), self.max_body) or (closed and arriving.data):
            self._hand_over(conn, bytes(arriving.data))
        elif closed or time.monotonic() > arriving.deadline:
            self._drop(conn)
        else:
            self.arriving[conn] = arriving
            self.poller.register(conn.sock, selectors.EVENT_READ, self._readable(conn))

    def _readable(self, conn: Any) -> Callable[[Any], None]:
        def readable(sock: Any) -> None:
            self.poller.unregister(sock)
            self.enqueue_req(conn)

        return readable

    def _receive(self, conn: Any, into: bytearray) -> bool:
        """Append what the socket holds now to ``into``; whether the client closed its side."""
        conn.sock.setblocking(False)
        try:
            while len(into) <= self.max_body + MAX_HEAD_BYTES:
                chunk = conn.sock.recv(1 << 16)
                if not chunk:
                    return True
                into += chunk
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return False
            return True
        return False

    def _hand_over(self, conn: Any, data: bytes) -> None:
        """Give the received bytes to the connection's parser and the request to a thread."""
        conn.sock.setblocking(True)
        conn.data_ready = True  # gthread's handle() must not wait for data again
        conn.init()
        conn.parser.unreader.unread(data)
        self._dispatch(conn, data[:64])

    def _dispatch(self, conn: Any, start: bytes) -> None:
        pool = self.health_pool if self.health_pool is not None and _HEALTH.match(start) else self.tpool
        fs = pool.submit(self.handle, conn)
        fs.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def _drop(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()

    # -------------------------------------------------------------------- timeouts
    def murder_pending(self) -> None:
        """Close gunicorn's expired pending connections, then requests that did not arrive by their deadline."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c, a in self.arriving.items() if a.deadline < now]:
            del self.arriving[conn]
            try:
                self.poller.unregister(conn.sock)
            except (OSError, KeyError, ValueError):
                pass
            self._drop(conn)

    def run(self) -> None:
        """Gunicorn's loop; on the way out, close the requests still arriving and the health lane."""
        try:
            super().run()
        finally:
            for conn in list(self.arriving):
                conn.close()
            self.arriving.clear()
            if self.health_pool is not None:
                self.health_pool.shutdown(wait=False)
