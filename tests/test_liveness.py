"""The production server stays live under slow clients and heavy requests (gunicorn, the image's CMD).

Slow clients hold sockets, not request threads (:mod:`repgeom.gunicorn_worker`), and
``/healthz`` has a lane of its own, so the image's health check (4 s) never times out
while visitors compute.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time

import numpy as np
import pytest

from benchmarks.dash_wire import CallbackGraph, HttpConnection, check_answer
from repgeom.gunicorn_worker import request_complete
from tests.test_deploy import _cmd, _free_port, _get, _kill_group, _server_env, _spawn, _wait_healthy

SLOW_HEADERS = 50
SLOW_BODIES = 30
HEAVY = 10
HEALTH_LIMIT_S = 1.0


# ---------------------------------------------------------------------------- when a request has arrived
@pytest.mark.parametrize(("data", "complete"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc", False),
    (b"POST /a HTTP/1.1\r\ncontent-length:5\r\n\r\nabcde", True),
    (b"POST /a HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", True),  # over the bound: the app answers 413 now
    (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False),
    (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", True),  # malformed: the parser says 400
    (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", True),
    (b"G" * (65 << 10), True),  # a head too long to wait for: gunicorn's limits refuse it
])
def test_a_request_is_complete_when_its_head_and_body_have_arrived(data, complete):
    assert request_complete(data, max_body=1 << 20) is complete


# ---------------------------------------------------------------------------- the server
def _slow_client(port: int, start: bytes, trickle: bytes, stop: threading.Event, opened: list[int]) -> None:
    """Connect, send ``start``, then one byte of ``trickle`` every 0.5 s until ``stop`` (or the server hangs up)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(start)
            opened.append(1)
            for byte in trickle:
                if stop.wait(0.5):
                    return
                sock.sendall(bytes([byte]))
            stop.wait()
    except OSError:
        pass


@pytest.mark.load
def test_healthz_answers_within_1_s_while_slow_clients_and_heavy_requests_are_open(tmp_path):
    port = _free_port()
    log_path = tmp_path / "gunicorn.log"
    proc = _spawn(_cmd(), _server_env(tmp_path, port, REPGEOM_WORKERS="2", REPGEOM_THREADS="4"), log_path)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        _wait_healthy(proc, port, log_path)
        conn = HttpConnection(port, timeout=120)
        status, deps, _ = conn.request("GET", "/_dash-dependencies")
        graph = CallbackGraph(json.loads(deps))
        status, data, _ = conn.request("POST", "/_dash-update-component", graph.body("url.search", {"url.search": ""}, []))
        response = json.loads(data)["response"]
        view, options = response["view"]["data"], response["nodes"]["options"]
        # six nodes at up to 1,000 stimuli: the largest RDM grid computed in the request thread (larger ones are jobs)
        nodes = [o["value"] for o in options if not o.get("disabled")][:6]
        heavy_view = {**view, "nodes": nodes, "n_rdm": 100, "rdm_method": "correlation"}
        heavy_body = graph.body("rdm-grid.figure", {"view.data": heavy_view, "selection.data": []}, ["view.data"])
        status, data, alone_s = conn.request("POST", "/_dash-update-component", heavy_body)
        assert check_answer(status, data, graph["rdm-grid.figure"].outputs) is None, data[:300]

        heavy_done: list[float] = []
        heavy_failed: list[str] = []

        sizes = itertools.count()

        def heavy() -> None:
            """RDMs of every node at a size nobody asked for yet: computed, not replayed from a cache."""
            client = HttpConnection(port, timeout=300)
            while not stop.is_set():
                body = graph.body("rdm-grid.figure", {"view.data": {**heavy_view, "n_rdm": 99 - next(sizes) % 60}, "selection.data": []},
                                  ["view.data"])
                try:
                    status, data, seconds = client.request("POST", "/_dash-update-component", body)
                except OSError:
                    if not stop.is_set():
                        raise
                    return
                problem = check_answer(status, data, graph["rdm-grid.figure"].outputs)
                (heavy_failed.append(problem) if problem else heavy_done.append(seconds))

        opened: list[int] = []
        head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n"
        body_head = (b"POST /_dash-update-component HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{\"output\":")
        clients = ([(head, b"X-Slow: " + b"a" * 200) for _ in range(SLOW_HEADERS)]
                   + [(body_head, b" " * 200) for _ in range(SLOW_BODIES)])
        threads = [threading.Thread(target=_slow_client, args=(port, s, t, stop, opened), daemon=True) for s, t in clients]
        threads += [threading.Thread(target=heavy, daemon=True) for _ in range(HEAVY)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(opened) < SLOW_HEADERS + SLOW_BODIES and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(opened) == SLOW_HEADERS + SLOW_BODIES, "the slow clients could not connect"
        time.sleep(2)  # every request thread is busy with a heavy request by now

        latencies = []
        for _ in range(20):
            t0 = time.perf_counter()
            status, _, body = _get(port, "/healthz", timeout=5)
            latencies.append(time.perf_counter() - t0)
            assert status == 200 and json.loads(body)["models"] > 0
            time.sleep(0.5)
        stop.set()
        done = f", median {np.median(heavy_done):.1f} s" if heavy_done else ""
        print(f"\n/healthz under {SLOW_HEADERS} slow-header, {SLOW_BODIES} slow-body clients and {HEAVY} heavy requests "
              f"(one alone {alone_s:.2f} s; {len(heavy_done)} done meanwhile{done}): max {max(latencies) * 1000:.0f} ms, "
              f"median {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms")
        assert max(latencies) < HEALTH_LIMIT_S, latencies
        assert not heavy_failed, heavy_failed[:3]
        assert "Traceback" not in log_path.read_text()
    finally:
        stop.set()
        _kill_group(proc)
        for t in threads:
            t.join(timeout=5)

