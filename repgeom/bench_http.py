"""Section 3 of ``python -m repgeom bench``: the dashboard in the browser's path.

Sections 1 and 2 time the engine in-process; this one times what a visitor waits for:
the production server (``gunicorn app:server``, one worker, eight threads) answering the
same HTTP requests the Dash renderer sends.

Design notes:
    * *The real server, the real wire.* The server is a subprocess started exactly as
      in production (``gunicorn --workers 1 --threads 8 --timeout 120 app:server`` from
      the folder holding ``app.py``, with ``REPGEOM_WARM=1``); requests go over a TCP
      socket on 127.0.0.1 with the standard library's :mod:`http.client`, one
      keep-alive connection per simulated browser, as a browser would hold one. No
      test client, no in-process shortcut: JSON encoding, Flask, Dash's dispatch and
      the callbacks' own validation are all inside the measured time. Only
      ``--no-control-socket`` is added, so that several servers on one host (two
      benchmark runs, a test run beside a dashboard) do not fight over gunicorn's
      shared ``~/.gunicorn/gunicorn.ctl``. OpenMP/MKL threads default to
      ``min(4, cores)`` (an inherited ``OMP_NUM_THREADS`` wins): eight request
      threads share those cores.
    * *Payloads from the server itself.* Callback bodies are built from the running
      server's ``/_dash-dependencies`` (what the renderer reads at start-up), and the
      default view is what the server's own URL-sync callback answers for an empty
      query string: the first call a browser makes. The benchmark therefore follows
      the dashboard as it changes, and does not import the test helpers.
    * *Cached against cold.* "Cached" rows are the default views, which the start-up
      warm-up precomputes, after one further warm-up call each: one client in
      sequence gives the floor, twenty concurrent clients show queueing in the
      eight-thread worker. "Uncached" rows are one request each at a number of images
      per class nothing has asked for yet. The rows are chosen so they share nothing
      with the warm-up either: 50 per class would reuse the warm-up's features of the
      default embedding view (also 50 per class), so the RDM grid is timed at 49 and
      the path at 48 per class.
    * *Warm-up interplay.* ``REPGEOM_WARM=1`` computes the default views in a
      background thread of the worker right after start-up, so the server answers
      ``/healthz`` long before that thread is done. A request measured in that window
      would queue behind it on the same cores (or, for a view being warmed, wait on
      the cache's per-key lock). Before measuring, the benchmark waits until the
      worker's CPU time stops growing, which happens once the warm-up's last step
      (the default embeddings) is done. The wait is reported (``warmup_s``) rather
      than hidden. (The embeddings view itself is a background job, so it is not
      among the timed callbacks.)
    * *Honest counts.* Every response must be HTTP 200 and carry the figure with an
      empty message; anything else counts as an error and is reported per row.
    * *Memory.* Peak RSS is the sum of ``VmHWM`` of the gunicorn master and its
      workers, read from ``/proc`` just before shutdown (``None`` where ``/proc`` is
      absent). Summing peaks can only overstate the tree's true peak.
    * *Clean-up.* The server runs in its own process group and is stopped in a
      ``finally``: SIGTERM (gunicorn's graceful stop), a wait, then SIGKILL to that
      group only.

Nothing here asserts a time: benchmarks report, tests check that they still run.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import repgeom

from .core.errors import RepgeomError

__all__ = ["bench_browser", "format_browser"]

log = logging.getLogger(__name__)

SERVER = "gunicorn 1 worker x 8 threads"
#: Start-up, warm-up and one request may each take at most this long.
STARTUP_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 180.0
CONCURRENT_CLIENTS = 20
#: Images per class for the cold requests: not 20 or 50, which the warm-up has computed.
COLD_N_RDM = 49
COLD_N_PATH = 48
_UPDATE = "/_dash-update-component"
_RDM, _PATH, _EMBED, _SYNC = "rdm-grid.figure", "path-graph.figure", "embed-grid.figure", "url.search"
_TAB_OF = {_RDM: "rdms", _PATH: "paths", _EMBED: "embeddings"}


# ---------------------------------------------------------------------------- HTTP
class _Client:
    """One browser's keep-alive connection to the server."""

    def __init__(self, port: int, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.port = port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
        """Send one request; returns ``(status, body, seconds)``.

        A keep-alive connection the server has closed in the meantime is reopened and
        the request sent once more, as a browser does; the time counts from the last
        send. Other failures raise :class:`OSError` or :class:`http.client.HTTPException`.
        """
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            fresh = self._conn is None
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            t0 = time.perf_counter()
            try:
                self._conn.request(method, path, body=body, headers=headers)
                resp = self._conn.getresponse()
                data = resp.read()
            except ConnectionError:  # RemoteDisconnected, reset, broken pipe: a stale keep-alive
                self.close()
                if fresh or attempt:
                    raise
                continue
            seconds = time.perf_counter() - t0
            if resp.will_close:
                self.close()
            return resp.status, data, seconds
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- Dash payloads
def _split_outputs(key: str) -> list[tuple[str, str]]:
    """``"..a.b...c.d.."`` or ``"a.b"`` as ``[(id, prop), ...]``."""
    parts = key[2:-2].split("...") if key.startswith("..") else [key]
    return [tuple(p.rsplit(".", 1)) for p in parts]  # type: ignore[misc]


class _Payloads:
    """Builds ``/_dash-update-component`` bodies from the server's ``/_dash-dependencies``."""

    def __init__(self, deps: list[dict[str, Any]]) -> None:
        self._by_first: dict[str, dict[str, Any]] = {}
        for dep in deps:
            first = "{}.{}".format(*_split_outputs(dep["output"])[0])
            self._by_first.setdefault(first, dep)

    def outputs(self, first_output: str) -> list[tuple[str, str]]:
        """``(id, prop)`` of every output of the callback whose first output is ``first_output``."""
        return _split_outputs(self._dep(first_output)["output"])

    def _dep(self, first_output: str) -> dict[str, Any]:
        try:
            return self._by_first[first_output]
        except KeyError:
            known = ", ".join(sorted(self._by_first))
            raise RepgeomError(f"the server has no callback with output {first_output}; it has: {known}") from None

    def body(self, first_output: str, values: dict[str, Any], changed: list[str] | None = None) -> bytes:
        """The JSON body of one call; ``values`` maps ``id.prop`` to the value sent (missing: null)."""
        dep = self._dep(first_output)
        outs = [{"id": i, "property": p} for i, p in _split_outputs(dep["output"])]

        def fill(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")} for i in items]

        inputs = fill(dep["inputs"])
        return json.dumps({
            "output": dep["output"],
            "outputs": outs if dep["output"].startswith("..") else outs[0],
            "inputs": inputs,
            "state": fill(dep.get("state", [])),
            "changedPropIds": changed if changed is not None else [f"{i['id']}.{i['property']}" for i in inputs[:1]],
        }).encode()


def _parse_answer(status: int, data: bytes) -> tuple[dict[str, Any], str | None]:
    """The ``response`` object of a 200 Dash answer, or ``({}, why not)``."""
    if status != 200:
        return {}, f"HTTP {status}"
    try:
        return json.loads(data)["response"], None
    except (ValueError, KeyError, TypeError):
        return {}, "not a Dash response"


def _message_of(response: dict[str, Any], outputs: list[tuple[str, str]]) -> str | None:
    """The first non-empty message (a ``children`` output after the first output), if any."""
    for cid, prop in outputs[1:]:
        if prop == "children" and response.get(cid, {}).get(prop):
            return f"message: {json.dumps(response[cid][prop])[:200]}"
    return None


def _ok(status: int, data: bytes, outputs: list[tuple[str, str]]) -> str | None:
    """``None`` if the answer is a 200 carrying the first output and empty messages, else why not."""
    response, problem = _parse_answer(status, data)
    if problem:
        return problem
    first_id, first_prop = outputs[0]
    if first_prop not in response.get(first_id, {}):
        return f"no {first_id}.{first_prop} in the response"
    return _message_of(response, outputs)


# ---------------------------------------------------------------------------- the server
def _app_dir() -> Path:
    root = Path(repgeom.__file__).resolve().parents[1]
    if not (root / "app.py").is_file():
        raise RepgeomError(f"no app.py next to the repgeom package in {root}; run the browser benchmark from a source checkout")
    return root


def _server_env(device: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if device is None:
        env.pop("REPGEOM_DEVICE", None)
    else:
        env["REPGEOM_DEVICE"] = device
    env["REPGEOM_WARM"] = "1"
    threads = str(max(1, min(4, os.cpu_count() or 1)))  # eight request threads share these cores
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)
    return env


def _start(port: int, device: str | None, log_path: Path, workers: int = 1, threads: int = 8,
           config: str | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Spawn gunicorn on 127.0.0.1:``port`` in its own session.

    ``config`` (e.g. ``python:repgeom.gunicorn_conf``) replaces the ``--timeout 120``
    default; bind, workers and threads are always given on the command line (which
    gunicorn lets win over a config file) and as ``REPGEOM_*`` variables. ``env`` adds
    variables for the server.
    """
    try:
        import gunicorn  # noqa: F401 - only to fail early with a clear message
    except ImportError:
        raise RepgeomError("the browser benchmark needs gunicorn: pip install -r requirements.txt") from None
    cmd = [sys.executable, "-m", "gunicorn", *(["-c", config] if config else []), "--bind", f"127.0.0.1:{port}",
           "--workers", str(workers), "--threads", str(threads), *([] if config else ["--timeout", "120"]),
           "--no-control-socket", "app:server"]
    server_env = {**_server_env(device), **(env or {})}
    if config:
        server_env.update(REPGEOM_HOST="127.0.0.1", REPGEOM_PORT=str(port), REPGEOM_WORKERS=str(workers),
                          REPGEOM_THREADS=str(threads))
    log.info("starting %s", " ".join(cmd[2:]))
    with open(log_path, "wb") as fh:
        return subprocess.Popen(cmd, cwd=_app_dir(), env=server_env, stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _log_tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""


def _wait_served(proc: subprocess.Popen[bytes], client: _Client, log_path: Path) -> None:
    """Return once ``GET /`` and ``GET /healthz`` both answer 200."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RepgeomError(f"the server exited with status {proc.returncode} during start-up:\n{_log_tail(log_path)}")
        try:
            if client.request("GET", "/")[0] == 200 and client.request("GET", "/healthz")[0] == 200:
                return
        except (OSError, http.client.HTTPException):
            client.close()
        time.sleep(0.05)
    raise RepgeomError(f"the server did not serve a page within {STARTUP_TIMEOUT_S:.0f} s:\n{_log_tail(log_path)}")


def _processes() -> Iterator[tuple[int, list[str]]]:
    """Every process's pid and the fields of ``/proc/<pid>/stat`` after its name (state first)."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2:
            yield int(entry.name), fields


def _tree(pid: int) -> list[int]:
    """``pid`` and its children (gunicorn's workers), from ``/proc``."""
    return [pid] + [child for child, fields in _processes() if int(fields[1]) == pid]


def _cpu_seconds(pids: list[int]) -> float | None:
    try:
        ticks = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _wait_quiet(pids: list[int], busy: float = 0.1, window: float = 0.5, timeout: float = 60.0) -> None:
    """Wait until the processes use under ``busy`` of one core over ``window`` seconds (no-op without /proc)."""
    deadline = time.monotonic() + timeout
    before = _cpu_seconds(pids)
    while before is not None and time.monotonic() < deadline:
        time.sleep(window)
        after = _cpu_seconds(pids)
        if after is None or after - before < busy * window:
            return
        before = after
    if before is not None:
        log.warning("the server was still busy after %.0f s; measuring anyway", timeout)


def _peak_rss_mb(pids: list[int]) -> float | None:
    total = 0
    try:
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    except (OSError, ValueError):
        return None
    return total / 1024 if total else None


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from ``/proc`` (empty without it)."""
    return [pid for pid, fields in _processes() if fields[0] not in ("Z", "X") and int(fields[2]) == pgid]


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM (graceful), wait, then SIGKILL the server's own process group until none of it is left.

    A SIGKILLed worker of a few GB takes a while to free its memory before its
    sockets close; returning before that would leave the port open behind us.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            log.warning("the server ignored SIGTERM; killing it")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group is the server's own (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        left = _group_members(proc.pid)
        if (not left and proc.poll() is not None) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if left:
        log.warning("processes %s of the server outlived SIGKILL for %.0f s", left, timeout_s)


# ---------------------------------------------------------------------------- measuring
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

    def __init__(self, outputs: list[tuple[str, str]]) -> None:
        self.outputs = outputs
        self._good: bytes | None = None
        self._lock = threading.Lock()

    def __call__(self, status: int, data: bytes) -> str | None:
        with self._lock:
            good = self._good
        if status == 200 and good is not None and data == good:
            return None
        problem = _ok(status, data, self.outputs)
        if problem is None:
            with self._lock:
                self._good = self._good or data
        return problem


def _call(client: _Client, body: bytes, check: _Checker, load: _Load) -> None:
    load.sent += 1
    try:
        status, data, seconds = client.request("POST", _UPDATE, body)
    except (OSError, http.client.HTTPException) as exc:
        client.close()
        load.errors.append(f"{type(exc).__name__}: {exc}")
        return
    load.ms.append(seconds * 1000)
    problem = check(status, data)
    if problem:
        load.errors.append(problem)


def _figure_call(payloads: _Payloads, first_output: str, view: dict[str, Any]) -> tuple[bytes, _Checker]:
    """The body of one figure callback for ``view`` (no selection), and a checker for its answers."""
    body = payloads.body(first_output, {"view.data": view, "selection.data": []})
    return body, _Checker(payloads.outputs(first_output))


def _load(port: int, body: bytes, check: _Checker, clients: int, per_client: int) -> _Load:
    """``clients`` browsers, each sending ``per_client`` requests back to back, all at once."""
    load = _Load()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def browser() -> None:
        client, mine = _Client(port), _Load()
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


def _default_view(client: _Client, payloads: _Payloads) -> dict[str, Any]:
    """The server's own default view: its answer to the browser's first call (an empty URL)."""
    status, data, _ = client.request("POST", _UPDATE, payloads.body(_SYNC, {"url.search": ""}, ["url.search"]))
    try:
        view = json.loads(data)["response"]["view"]["data"] if status == 200 else None
    except (ValueError, KeyError, TypeError):
        view = None
    if isinstance(view, dict):
        return view
    log.warning("the server did not answer the first call (HTTP %s); using the class defaults as the view", status)
    from .ui.state import View

    return View().controls()


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
        worker was idle), ``cached`` rows (``callback``, ``clients``, ``n``, ``p50_ms``,
        ``p95_ms``, ``max_ms``, ``requests_per_s``, ``errors``, and ``first_error``
        where there were any), ``uncached`` rows (``callback``, ``n_per_class``, ``ms``,
        ``errors``), ``errors`` (all requests, warm-up calls included),
        ``warmup_errors`` (the first few), ``peak_rss_mb`` (master + workers, ``None``
        without ``/proc``), ``device``, ``quick`` and ``port``.

    Raises:
        RepgeomError: gunicorn missing, no ``app.py`` beside the package, or a server
            that exits or does not serve a page within three minutes (with its log).
    """
    port = port or _free_port()
    sequential, per_client = (10, 3) if quick else (30, 10)
    workdir = Path(tempfile.mkdtemp(prefix="repgeom-bench-http-"))
    log_path = workdir / "gunicorn.log"
    client = _Client(port)
    t0 = time.perf_counter()
    proc = _start(port, device, log_path)
    peak_rss: float | None = None
    try:
        _wait_served(proc, client, log_path)
        startup_s = time.perf_counter() - t0
        log.info("page served after %.2f s", startup_s)
        status, deps, _ = client.request("GET", "/_dash-dependencies")
        if status != 200:
            raise RepgeomError(f"GET /_dash-dependencies answered HTTP {status}")
        payloads = _Payloads(json.loads(deps))
        view = _default_view(client, payloads)

        # the warm-up (RDMs, path, then embeddings, in a background thread): wait until the CPU is quiet
        t1 = time.perf_counter()
        warm = _Load()
        _wait_quiet(_tree(proc.pid))
        warmup_s = time.perf_counter() - t1
        log.info("start-up warm-up done %.2f s after the first page", warmup_s)

        cached: list[dict[str, Any]] = []
        for first, name in ((_RDM, "rdm-grid"), (_PATH, "path-graph")):
            body, check = _figure_call(payloads, first, {**view, "tab": _TAB_OF[first]})
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
            _wait_quiet(_tree(proc.pid))
            cold = _Load()
            _call(client, *_figure_call(payloads, first, {**view, "tab": _TAB_OF[first], key: n}), cold)
            row = {"callback": name, "n_per_class": n, "ms": cold.ms[0] if cold.ms else None, "errors": len(cold.errors)}
            if cold.errors:
                row["first_error"] = cold.errors[0]
            uncached.append(row)
        peak_rss = _peak_rss_mb(_tree(proc.pid))
    finally:
        client.close()
        _stop(proc)
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
    """Section 3 as plain-text table lines (in the style of :func:`repgeom.bench.format_report`).

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
    lines.append(f"server peak RSS (master + worker): {rss:.0f} MB" if rss is not None else "server peak RSS: not available")
    if section.get("errors"):
        lines.append(f"errors: {section['errors']} (see the rows' first_error)")
    return lines
