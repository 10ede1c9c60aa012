"""Section 3 of ``python -m benchmarks.bench``: the dashboard in the browser's path.

Sections 1 and 2 time the engine in-process; this one times what a visitor waits for:
the production server (``gunicorn app:server``, one worker, eight threads) answering the
same HTTP requests the Dash renderer sends.

Design notes:
    * *The real server, the real wire.* The server is started by :mod:`benchmarks.server`
      exactly as in production, with ``REPGEOM_WARM=1``; requests go over TCP on 127.0.0.1,
      one keep-alive :class:`~benchmarks.dash_wire.HttpConnection` per simulated browser.
      JSON encoding, Flask, Dash's dispatch and the callbacks' own validation are all inside
      the measured time.
    * *Payloads from the server itself.* Bodies come from the running server's
      ``/_dash-dependencies`` (:class:`~benchmarks.dash_wire.CallbackGraph`), and the default
      view is what the server's URL-sync callback answers for an empty query string: the
      first call a browser makes.
    * *Cached against cold.* "Cached" rows are the default views, which the start-up warm-up
      precomputes, after one further warm-up call each: one client in sequence gives the
      floor, twenty concurrent clients show queueing in the eight-thread worker. "Uncached"
      rows are one request each at a number of images per class nothing has asked for yet:
      the RDM grid at 49 and the path at 48 per class (50 would reuse the warm-up's
      features of the default embedding view).
    * *Warm-up interplay.* ``REPGEOM_WARM=1`` computes the default views in a background
      thread of the worker after start-up, so ``/healthz`` answers long before it is done.
      Before measuring, the benchmark waits until the server's CPU time stops growing; the
      wait is reported (``warmup_s``).
    * *Honest counts.* Every response must be HTTP 200 and carry the figure with an empty
      message; anything else counts as an error and is reported per row.
    * *Memory.* Peak RSS is the sum of ``VmHWM`` of the server's processes, read from
      ``/proc`` just before shutdown (``None`` where ``/proc`` is absent). Summing peaks can
      only overstate the tree's true peak.

Nothing here asserts a time: benchmarks report, tests check that they still run.
"""

from __future__ import annotations

import http.client
import json
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

from .dash_wire import UPDATE_PATH, CallbackGraph, HttpConnection, check_answer, job_handle, parse_answer, poll_job
from .server import ServerError, free_port, peak_rss_mb, start_server, stop_server, tree, wait_quiet, wait_served

__all__ = ["bench_browser", "format_browser"]

log = logging.getLogger(__name__)

SERVER = "gunicorn 1 worker x 8 threads"
REQUEST_TIMEOUT_S = 180.0
CONCURRENT_CLIENTS = 20
#: Images per class for the cold requests: not 20 or 50, which the warm-up has computed.
COLD_N_RDM = 49
COLD_N_PATH = 48
_RDM, _PATH, _SYNC = "rdm-grid.figure", "path-graph.figure", "url.search"
_TAB_OF = {_RDM: "rdms", _PATH: "paths"}


@dataclass
class _Load:
    """Latencies (ms) and failures of a batch of identical requests."""

    sent: int = 0
    ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


class _Checker:
    """Checks answers to one repeated request; byte-identical repeats of a good answer pass unparsed.

    A cached RDM grid is megabytes of JSON: parsing each copy in the benchmark's own
    threads would take CPU from the server it measures.
    """

    def __init__(self, outputs: tuple[tuple[str, str], ...]) -> None:
        self.outputs = outputs
        self._good: bytes | None = None
        self._lock = threading.Lock()

    def __call__(self, status: int, data: bytes) -> str | None:
        with self._lock:
            good = self._good
        if status == 200 and good is not None and data == good:
            return None
        problem = check_answer(status, data, self.outputs)
        if problem is None:
            with self._lock:
                self._good = self._good or data
        return problem


def _call(client: HttpConnection, body: bytes, check: _Checker, load: _Load, graph: CallbackGraph | None = None) -> None:
    """One request, timed; with ``graph``, a gate's answer that starts the view's job is followed to the job's end."""
    load.sent += 1
    try:
        t0 = time.perf_counter()
        status, data, seconds = client.request("POST", UPDATE_PATH, body)
        first_id, first_prop = check.outputs[0]
        job = None if graph is None else graph.job_after(parse_answer(status, data)[0])
        if job is not None and first_prop not in parse_answer(status, data)[0].get(first_id, {}):
            cb, request = job
            job_body = graph.body(cb.key, request)
            status, data, _ = client.request("POST", UPDATE_PATH, job_body)
            handle = job_handle(status, data)
            if handle is not None:
                status, data, _ = poll_job(lambda b, h: client.request("POST", UPDATE_PATH + "?" + urlencode(h), b)[:2], job_body, handle,
                                           (cb.interval_ms or 500) / 1000, REQUEST_TIMEOUT_S)
            seconds = time.perf_counter() - t0
    except (OSError, http.client.HTTPException, TimeoutError) as exc:
        client.close()
        load.errors.append(f"{type(exc).__name__}: {exc}")
        return
    load.ms.append(seconds * 1000)
    problem = check(status, data)
    if problem:
        load.errors.append(problem)


def _figure_call(graph: CallbackGraph, first_output: str, view: dict[str, Any]) -> tuple[bytes, _Checker]:
    """The body of one figure callback for ``view`` (no selection), and a checker for its answers."""
    body = graph.body(first_output, {"view.data": view, "selection.data": []})
    return body, _Checker(graph[first_output].outputs)


def _load(port: int, body: bytes, check: _Checker, clients: int, per_client: int) -> _Load:
    """``clients`` browsers, each sending ``per_client`` requests back to back, all at once."""
    load = _Load()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def browser() -> None:
        client, mine = HttpConnection(port, REQUEST_TIMEOUT_S), _Load()
        try:
            start.wait()
            for _ in range(per_client):
                _call(client, body, check, mine)
        finally:
            client.close()
            with lock:
                load.sent += mine.sent
                load.ms += mine.ms
                load.errors += mine.errors

    threads = [threading.Thread(target=browser, name=f"bench-browser-{i}", daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    load.wall_s = time.perf_counter() - t0
    return load


def _row(name: str, clients: int, load: _Load) -> dict[str, Any]:
    ms = np.asarray(load.ms) if load.ms else np.asarray([np.nan])
    row = {
        "callback": name, "clients": clients, "n": load.sent,
        "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max()),
        "requests_per_s": len(load.ms) / load.wall_s if load.wall_s else None, "errors": len(load.errors),
    }
    if load.errors:
        row["first_error"] = load.errors[0]
        log.warning("%s with %d clients: %d errors, first: %s", name, clients, len(load.errors), load.errors[0])
    return row


def _default_view(client: HttpConnection, graph: CallbackGraph) -> dict[str, Any]:
    """The server's own default view: its answer to the browser's first call (an empty URL).

    Raises:
        ServerError: the server did not answer it with a view.
    """
    status, data, _ = client.request("POST", UPDATE_PATH, graph.body(_SYNC, {"url.search": ""}, ["url.search"]))
    response, problem = parse_answer(status, data)
    view = response.get("view", {}).get("data")
    if problem or not isinstance(view, dict):
        raise ServerError(f"the server did not answer the first call with a view: {problem or data[:200]!r}")
    return view


def bench_browser(quick: bool, device: str | None = "cpu", port: int | None = None) -> dict[str, Any]:
    """Section 3: latency of the dashboard's callbacks through the production server.

    Starts ``gunicorn app:server`` (one worker, eight threads, ``REPGEOM_WARM=1``) on
    127.0.0.1, times start-up to a served page, then the default RDM grid and path
    figure, cached (one client in sequence; twenty concurrent clients) and cold (one
    request each at an unseen number of images per class), and stops the server.

    Args:
        quick: few requests per row (a smoke run); the rows and the server are the same.
        device: torch device for the server (``REPGEOM_DEVICE``); ``None`` lets it choose.
        port: TCP port on 127.0.0.1 (default: a free one).

    Returns:
        A JSON-able dict: ``server``, ``startup_s`` (spawn until ``/`` and ``/healthz``
        answer 200), ``warmup_s`` (then until the start-up warm-up had finished and the
        server was idle), ``cached`` rows (``callback``, ``clients``, ``n``, ``p50_ms``,
        ``p95_ms``, ``max_ms``, ``requests_per_s``, ``errors``, and ``first_error``
        where there were any), ``uncached`` rows (``callback``, ``n_per_class``, ``ms``,
        ``errors``), ``errors`` (all requests, warm-up calls included),
        ``warmup_errors`` (the first few), ``peak_rss_mb`` (the server's processes,
        ``None`` without ``/proc``), ``device``, ``quick`` and ``port``.

    Raises:
        ServerError: gunicorn missing, or a server that exits or does not serve a page
            within three minutes (with its log).
    """
    port = port or free_port()
    sequential, per_client = (10, 3) if quick else (30, 10)
    workdir = Path(tempfile.mkdtemp(prefix="repgeom-bench-http-"))
    log_path = workdir / "gunicorn.log"
    client = HttpConnection(port, REQUEST_TIMEOUT_S)
    t0 = time.perf_counter()
    proc = start_server(port, device, log_path)
    peak_rss: float | None = None
    warm = _Load()
    try:
        wait_served(proc, client, log_path)
        startup_s = time.perf_counter() - t0
        log.info("page served after %.2f s", startup_s)
        status, deps, _ = client.request("GET", "/_dash-dependencies")
        if status != 200:
            raise ServerError(f"GET /_dash-dependencies answered HTTP {status}")
        graph = CallbackGraph(json.loads(deps))
        view = _default_view(client, graph)

        t1 = time.perf_counter()
        wait_quiet(proc.pid)
        warmup_s = time.perf_counter() - t1
        log.info("start-up warm-up done %.2f s after the first page", warmup_s)

        cached: list[dict[str, Any]] = []
        for first, name in ((_RDM, "rdm-grid"), (_PATH, "path-graph")):
            body, check = _figure_call(graph, first, {**view, "tab": _TAB_OF[first]})
            _call(client, body, check, warm)  # one warm-up call
            seq = _Load()
            t2 = time.perf_counter()
            for _ in range(sequential):
                _call(client, body, check, seq)
            seq.wall_s = time.perf_counter() - t2
            cached.append(_row(name, 1, seq))
            cached.append(_row(name, CONCURRENT_CLIENTS, _load(port, body, check, CONCURRENT_CLIENTS, per_client)))

        uncached: list[dict[str, Any]] = []
        for first, name, key, n in ((_RDM, "rdm-grid", "n_rdm", COLD_N_RDM), (_PATH, "path-graph", "n_embed", COLD_N_PATH)):
            wait_quiet(proc.pid)
            cold = _Load()
            _call(client, *_figure_call(graph, first, {**view, "tab": _TAB_OF[first], key: n}), cold, graph)
            row = {"callback": name, "n_per_class": n, "ms": cold.ms[0] if cold.ms else None, "errors": len(cold.errors)}
            if cold.errors:
                row["first_error"] = cold.errors[0]
            uncached.append(row)
        peak_rss = peak_rss_mb(tree(proc.pid))
    finally:
        client.close()
        stop_server(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    if warm.errors:
        log.warning("warm-up calls failed: %s", warm.errors[0])
    return {
        "server": SERVER, "device": device or "auto", "port": port, "quick": quick,
        "startup_s": startup_s, "warmup_s": warmup_s, "cached": cached, "uncached": uncached,
        "errors": len(warm.errors) + sum(r["errors"] for r in cached + uncached), "warmup_errors": warm.errors[:3],
        "peak_rss_mb": peak_rss,
    }


def format_browser(section: dict[str, Any]) -> list[str]:
    """Section 3 as plain-text table lines (in the style of :func:`benchmarks.bench.format_report`).

    Args:
        section: what :func:`bench_browser` returned.

    Returns:
        The lines, without trailing newlines.
    """
    lines = [
        f"3. in the browser's path: {section['server']}, device {section.get('device', '?')}, HTTP on 127.0.0.1",
        f"start-up to a served page: {section['startup_s']:.2f} s; "
        f"start-up warm-up finished {section['warmup_s']:.2f} s later",
        f"{'cached view':<14}{'clients':>8}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}{'req/s':>8}{'errors':>8}",
    ]
    for r in section["cached"]:
        rps = f"{r['requests_per_s']:.1f}" if r.get("requests_per_s") else "-"
        lines.append(f"{r['callback']:<14}{r['clients']:>8}{r['n']:>6}{r['p50_ms']:>10.1f}{r['p95_ms']:>10.1f}"
                     f"{r.get('max_ms', float('nan')):>10.1f}{rps:>8}{r['errors']:>8}")
    lines.append(f"{'uncached view':<14}{'n/class':>8}{'ms':>10}{'errors':>8}")
    for r in section["uncached"]:
        ms = f"{r['ms']:.0f}" if r.get("ms") is not None else "-"
        lines.append(f"{r['callback']:<14}{r['n_per_class']:>8}{ms:>10}{r['errors']:>8}")
    rss = section.get("peak_rss_mb")
    lines.append(f"server peak RSS (all its processes): {rss:.0f} MB" if rss is not None else "server peak RSS: not available")
    if section.get("errors"):
        lines.append(f"errors: {section['errors']} (see the rows' first_error)")
    return lines
