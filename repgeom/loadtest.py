"""``python -m repgeom.loadtest``: many simulated visitors against gunicorn on loopback.

Fifty browsers (by default) load the page, then click through the dashboard for five
minutes, switching models, nodes, methods, tabs and conditions with short pauses, while
the production server answers on 127.0.0.1. Prints latencies per action and per
callback, errors, and the peak memory of every gunicorn process; ``--json`` keeps it all.
Exit status 0 when every request succeeded, 1 when any failed, 2 for a bad flag.

Design notes:
    * *The benchmark's wire, reused.* The server is started, waited for and stopped by
      :mod:`repgeom.bench_http` (its own process group; ``-c python:repgeom.gunicorn_conf``
      where that module exists, else the benchmark's flags), and every request goes out
      through its keep-alive :class:`~repgeom.bench_http._Client` with bodies built by
      its :class:`~repgeom.bench_http._Payloads` from the server's own
      ``/_dash-dependencies``. Nothing here knows a callback's argument list.
    * *What a browser posts.* A visit is ``GET /`` (whose ``_dash-config`` block holds
      the page's signed ``end_id``, sent back as ``endId`` on every callback request, as
      the renderer does), ``/_dash-layout``, ``/_dash-dependencies``, then the URL-sync
      callback. Every control change posts the sync callback with the new value, then
      the chain of callbacks that leads from the view store to the active tab's figure,
      found in the dependency graph (for example a cheap gate, then a background job),
      each fed the previous one's output. The other callbacks the view store triggers
      (idle tabs, the pair figure) go out at the same time on a second connection, as
      the renderer sends independent callbacks in parallel: these *side* calls count as
      load and errors, but not in the action's latency.
    * *Background callbacks.* An answer carrying ``cacheKey`` starts polling: the same
      body with its input values nulled, ``cacheKey``/``job``/``endId`` in the query,
      every ``background.interval`` ms of that callback, until an answer carries
      ``response``. The whole wait is that request's latency; polls are counted apart.
    * *Cached and cold.* Images per class come from a fixed set (5, 10, 20 unless
      ``--n-per-class`` says otherwise), nodes from a few per model, ε is 0.1: the mix
      repeats often enough to be answered from caches and is wide enough to keep
      computing. Each visitor has its own seeded :class:`random.Random`, so a run's
      sequence of choices is reproducible (their interleaving is not). Visitor ``i``
      arrives on a link to a tab that offers ``ACTIONS[1 + i % 8]`` and takes that
      action first, so even a short run exercises every kind of action. Every server
      cache starts empty: the server gets a temporary folder of its own as ``TMPDIR``,
      where the disk caches live by default.
    * *Errors.* Any non-2xx status, connection failure or timeout, a callback answer
      without its output, a 204 where a figure was due, or a 200 whose message output
      is not empty (the dashboard's user-facing and generic error messages) counts. A
      figure answer byte-identical to one already checked is not parsed again (its
      digest is kept): parsing megabytes of JSON would take the cores the server needs.
    * *Memory.* A thread samples the RSS (and CPU time) of the gunicorn master, each
      worker (its children) and each background job (their children) every 0.5 s with
      psutil. RSS counts pages a forked job still shares with its worker, so job and
      total figures overstate; the lowest memory the machine had available is reported
      beside them.
    * *End of the run.* At the deadline no visitor starts a new action; actions under
      way get ``drain_s`` more seconds to finish and count. Any still running then are
      reported as unfinished (not as errors, and without latency, as locust does when
      it stops its users), and the server's process group is killed rather than waited for.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

from .argparsing import OneLineParser
from .bench_http import (
    REQUEST_TIMEOUT_S,
    _Client,
    _free_port,
    _message_of,
    _ok,
    _parse_answer,
    _Payloads,
    _split_outputs,
    _start,
    _stop,
    _tree,
    _wait_quiet,
    _wait_served,
)
from .core.errors import RepgeomError
from .core.rdm import RDM_METHODS
from .ui.ids import CONTROL_IDS, ID
from .ui.state import TABS

__all__ = ["ACTIONS", "LoadConfig", "format_report", "main", "run_loadtest", "summarize"]

log = logging.getLogger(__name__)

#: Every kind of action a simulated visitor takes.
ACTIONS = ("page_load", "switch_model", "change_nodes", "change_n", "rdm_method", "switch_tab",
           "embed_methods", "condition", "ff_vs_rec")
MODELS = ("recurrent", "feedforward", "robust", "feedforward_seed2")
EMBED_CHOICES = (("pca",), ("pca", "mds"), ("pca", "tsne"), ("pca", "mds", "tsne"))
EPSILON = 0.1
#: How often each action is picked, where the active tab offers it.
_WEIGHTS = {"switch_tab": 3.0, "switch_model": 2.0, "change_nodes": 2.0, "change_n": 2.0, "rdm_method": 1.5,
            "embed_methods": 1.5, "condition": 1.5, "ff_vs_rec": 0.5, "page_load": 0.5}
_OFFERED = {
    "rdms": {"switch_model", "change_nodes", "change_n", "rdm_method", "switch_tab", "condition", "ff_vs_rec",
             "page_load"},
    "embeddings": {"switch_model", "change_nodes", "change_n", "embed_methods", "switch_tab", "condition", "ff_vs_rec",
                   "page_load"},
    "paths": {"switch_model", "change_n", "switch_tab", "condition", "ff_vs_rec", "page_load"},
    "models": {"switch_model", "change_n", "rdm_method", "switch_tab", "condition", "page_load"},
}
#: What a visitor waits for on each tab: the first output of the callback that draws it.
_TARGET = {"rdms": f"{ID.RDM_GRID}.figure", "embeddings": f"{ID.EMBED_GRID}.figure",
           "paths": f"{ID.PATH_GRAPH}.figure", "models": f"{ID.MODELS_TABLE}.children"}
_SYNC = f"{ID.URL}.search"
_VIEW = f"{ID.VIEW}.data"
_UPDATE = "/_dash-update-component"
_CONFIG = re.compile(rb'<script id="_dash-config" type="application/json">(.*?)</script>', re.S)
#: Answers at most this long are parsed to look for a background handle; figures are longer.
_SMALL = 64 << 10
_MAX_DIGESTS = 100_000


@dataclass(frozen=True)
class LoadConfig:
    """One load test's settings.

    Attributes:
        users: simulated visitors.
        duration_s: seconds from the first visitor's arrival until no new action starts.
        spawn_rate: visitors arriving per second.
        workers: gunicorn worker processes.
        threads: request threads per worker.
        seed: seeds every visitor's choices (visitor ``i`` uses ``seed * 1_000_003 + i``).
        data_root: torchvision MNIST root for the server (``REPGEOM_DATA_ROOT``), or ``None``.
        n_per_class: images per class the visitors choose from (RDMs, embeddings, paths).
        warm: let the server precompute its default views, and wait for that before the
            visitors arrive (``REPGEOM_WARM``).
        drain_s: after the deadline, seconds the actions under way may take to finish;
            those still running then are reported as unfinished and the server is shut
            down quickly.
        think_s: pause between one visitor's actions, drawn uniformly from this range.
        sample_s: seconds between memory samples.
        server_log: file to keep the server's log in (default: discarded).
    """

    users: int = 50
    duration_s: float = 300.0
    spawn_rate: float = 10.0
    workers: int = 2
    threads: int = 4
    seed: int = 0
    data_root: str | None = None
    n_per_class: tuple[int, ...] = (5, 10, 20)
    warm: bool = True
    drain_s: float = 60.0
    think_s: tuple[float, float] = (0.5, 2.0)
    sample_s: float = 0.5
    server_log: str | None = None


# ---------------------------------------------------------------------------- statistics
def summarize(ms: Sequence[float]) -> dict[str, Any]:
    """Count, median, 95th percentile and maximum of latencies.

    Args:
        ms: latencies in milliseconds, any order.

    Returns:
        ``count``, ``p50_ms``, ``p95_ms``, ``max_ms`` (linear interpolation between
        order statistics, as :func:`numpy.percentile`); the last three are ``None`` when
        ``ms`` is empty.
    """
    if not len(ms):
        return {"count": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    a = np.asarray(ms, dtype=float)
    return {"count": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "max_ms": float(a.max())}


@dataclass
class _Record:
    """What the visitors measured, appended from many threads until :meth:`close`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    actions: list[tuple[str, float, str | None]] = field(default_factory=list)
    requests: list[tuple[str, float, str | None, int]] = field(default_factory=list)
    started: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    closed: bool = False

    def start(self, name: str) -> None:
        with self.lock:
            if not self.closed:
                self.started[name] += 1

    def action(self, name: str, ms: float, error: str | None) -> None:
        with self.lock:
            if not self.closed:
                self.actions.append((name, ms, error))

    def request(self, name: str, ms: float, error: str | None, polls: int = 0) -> None:
        with self.lock:
            if not self.closed:
                self.requests.append((name, ms, error, polls))

    def close(self) -> None:
        """Ignore whatever arrives from now on (requests cut off by the server's shutdown)."""
        with self.lock:
            self.closed = True


def _rows(samples: Sequence[tuple[Any, ...]], order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per name (``order`` first, then the rest sorted): latencies, errors, first error."""
    by: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for s in samples:
        by[s[0]].append(s)
    names = [n for n in order if n in by] + sorted(n for n in by if n not in order)
    rows = []
    for name in names:
        group = by[name]
        errors = [s[2] for s in group if s[2]]
        row = {"name": name, **summarize([s[1] for s in group]), "errors": len(errors)}
        if len(group[0]) > 3:
            row["polls"] = sum(s[3] for s in group)
        if errors:
            row["first_error"] = errors[0]
        rows.append(row)
    return rows


def _total(samples: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    return {"name": "all", **summarize([s[1] for s in samples]), "errors": sum(1 for s in samples if s[2])}


# ---------------------------------------------------------------------------- the callback graph
@dataclass(frozen=True)
class _Callback:
    key: str  # first output, "id.prop": how _Payloads names a callback
    inputs: tuple[str, ...]
    outputs: tuple[tuple[str, str], ...]
    interval_ms: float | None  # polling interval of a background callback, else None


class _Graph:
    """The server's callbacks from ``/_dash-dependencies``: who feeds whom."""

    def __init__(self, deps: list[dict[str, Any]]) -> None:
        self.payloads = _Payloads(deps)
        self.callbacks: dict[str, _Callback] = {}
        for dep in deps:
            outputs = tuple(_split_outputs(dep["output"]))
            key = "{}.{}".format(*outputs[0])
            bg = dep.get("background")
            interval = float(bg.get("interval", 500)) if isinstance(bg, dict) else None
            inputs = tuple(f"{i['id']}.{i['property']}" for i in dep.get("inputs", []))
            self.callbacks.setdefault(key, _Callback(key, inputs, outputs, interval))

    def triggered_by(self, props: set[str]) -> list[_Callback]:
        """Callbacks with an input among ``props``, in dependency order."""
        return [cb for cb in self.callbacks.values() if props.intersection(cb.inputs)]

    def chain(self, source: str, target: str) -> list[_Callback]:
        """The shortest run of callbacks from the prop ``source`` to a callback whose first output is ``target``."""
        frontier: list[tuple[str, list[_Callback]]] = [(source, [])]
        seen = {source}
        while frontier:
            prop, path = frontier.pop(0)
            for cb in self.triggered_by({prop}):
                if cb.key == target:
                    return [*path, cb]
                for out in ("{}.{}".format(*o) for o in cb.outputs):
                    if out not in seen:
                        seen.add(out)
                        frontier.append((out, [*path, cb]))
        raise RepgeomError(f"no callback chain from {source} to {target} in the server's dependencies")


# ---------------------------------------------------------------------------- one visitor
class _Failed(Exception):
    """A request of the current action failed (already recorded); the action stops."""


def _name(cb: _Callback) -> str:
    return "sync" if cb.key == _SYNC else cb.outputs[0][0]


class _Connection:
    """One keep-alive connection of a page: its requests, the props it has seen, its errors."""

    def __init__(self, port: int, record: _Record, good: set[bytes], good_lock: threading.Lock) -> None:
        self.client = _Client(port)
        self.record = record
        self.good, self.good_lock = good, good_lock
        self.graph: _Graph | None = None
        self.end_id: str | None = None
        self.props: dict[str, Any] = {}
        self.errors: list[str] = []

    def get(self, path: str) -> bytes:
        """``GET path``; anything but 200 fails the action."""
        name = "GET " + path.split("?")[0]
        try:
            status, data, seconds = self.client.request("GET", path)
        except (OSError, http.client.HTTPException) as exc:
            self.client.close()
            self.fail(name, 0.0, f"{type(exc).__name__}: {exc}")
        error = None if status == 200 else f"HTTP {status}"
        self.record.request(name, seconds * 1000, error)
        if error:
            self.fail(None, 0.0, f"{name}: {error}")
        return data

    def fail(self, name: str | None, ms: float, error: str) -> None:
        """Record a failed request (``name`` given) and stop the action."""
        if name is not None:
            self.record.request(name, ms, error)
        self.errors.append(error)
        raise _Failed(error)

    def _url(self, extra: dict[str, str] | None = None) -> str:
        args = {**({"endId": self.end_id} if self.end_id else {}), **(extra or {})}
        return _UPDATE + ("?" + urlencode(args) if args else "")

    def _post(self, cb: _Callback, changed: list[str] | None, name: str) -> tuple[int, bytes, float, int]:
        """POST one callback, polling a background job to its end; ``(status, body, ms, polls)``."""
        assert self.graph is not None
        body = self.graph.payloads.body(cb.key, self.props, changed)
        t0 = time.perf_counter()
        polls = 0
        try:
            status, data, _ = self.client.request("POST", self._url(), body)
            handle = _handle(status, data)
            if handle is not None:
                blank = json.loads(body)
                for item in blank["inputs"] + blank.get("state", []):
                    item["value"] = None
                poll_body = json.dumps(blank).encode()
                deadline = t0 + REQUEST_TIMEOUT_S
                while handle is not None:
                    if time.perf_counter() > deadline:
                        self.fail(name, (time.perf_counter() - t0) * 1000,
                                  f"background job not done after {REQUEST_TIMEOUT_S:.0f} s")
                    time.sleep((cb.interval_ms or 500) / 1000)
                    polls += 1
                    status, data, _ = self.client.request("POST", self._url(handle), poll_body)
                    handle = handle if _still_running(status, data) else None
        except (OSError, http.client.HTTPException) as exc:
            self.client.close()
            self.fail(name, (time.perf_counter() - t0) * 1000, f"{type(exc).__name__}: {exc}")
        return status, data, (time.perf_counter() - t0) * 1000, polls

    def call(self, cb: _Callback, changed: list[str] | None, role: str, needs: str | None = None) -> None:
        """Post ``cb`` and check its answer.

        ``role``: ``"chain"`` (its outputs feed the next call; ``needs`` must be among
        them), ``"final"`` (the figure the visitor waits for) or ``"side"`` (a failure is
        recorded, the action goes on).
        """
        name = _name(cb) + (" (side)" if role == "side" else "")
        status, data, ms, polls = self._post(cb, changed, name)
        error = self._check(cb, status, data, role, needs)
        self.record.request(name, ms, error, polls)
        if error:
            self.errors.append(f"{name}: {error}")
            if role != "side":
                raise _Failed(error)

    def _check(self, cb: _Callback, status: int, data: bytes, role: str, needs: str | None) -> str | None:
        if role == "side" and status == 204:
            return None
        if role == "final":
            digest = hashlib.blake2b(data, digest_size=16).digest() + cb.key.encode()
            with self.good_lock:
                if status == 200 and digest in self.good:
                    return None
            problem = _ok(status, data, list(cb.outputs))
            if problem is None:
                with self.good_lock:
                    if len(self.good) < _MAX_DIGESTS:
                        self.good.add(digest)
            return (_message(data, cb) or problem) if problem else None
        response, problem = _parse_answer(status, data)
        if problem:
            return problem
        message = _message_of(response, list(cb.outputs))
        if message:
            return message
        got = {f"{cid}.{prop}": value for cid, props in response.items() for prop, value in props.items()}
        if needs is not None and needs not in got:
            return f"no {needs} in the response"
        self.props.update(got)
        return None

    def side_calls(self, calls: list[_Callback]) -> None:
        """Post each of ``calls`` in turn; failures are recorded and do not stop the rest."""
        for cb in calls:
            try:
                self.call(cb, [_VIEW], "side")
            except _Failed:
                pass


class _Visitor:
    """One simulated browser tab: a seeded RNG, the page's state, and two keep-alive connections.

    The main connection carries what the visitor waits for; the second carries the side
    calls at the same time, as a browser sends independent callbacks in parallel.
    """

    def __init__(self, index: int, port: int, cfg: LoadConfig, record: _Record, good: set[bytes],
                 good_lock: threading.Lock) -> None:
        self.index = index
        self.cfg = cfg
        self.rng = random.Random(cfg.seed * 1_000_003 + index)
        self.record = record
        self.main = _Connection(port, record, good, good_lock)
        self.aside = _Connection(port, record, good, good_lock)
        self.side: threading.Thread | None = None
        self.controls: dict[str, Any] = {}
        self.search = ""
        self.clicks = 0
        self.node_names: list[str] = []

    # -------------------------------------------------------------- the page
    def _sync(self, changed: str | None) -> set[str]:
        """Post the URL/controls sync callback; adopt the view it answers. Returns the props it set."""
        main = self.main
        assert main.graph is not None
        main.props.update({_SYNC: self.search, f"{ID.FF_VS_REC}.n_clicks": self.clicks or None})
        main.props.update({f"{CONTROL_IDS[k]}.value": v for k, v in self.controls.items() if k in CONTROL_IDS})
        before = dict(main.props)
        main.call(main.graph.callbacks[_SYNC], [] if changed is None else [changed], "chain", needs=_VIEW)
        view = main.props[_VIEW]
        self.controls = dict(view) if isinstance(view, dict) else {}
        self.search = main.props.get(_SYNC) or ""
        options = main.props.get(f"{ID.NODES}.options") or []
        self.node_names = [o["value"] for o in options if isinstance(o, dict) and "value" in o]
        return {k for k, v in main.props.items() if k not in before or before[k] != v} | {_VIEW}

    def _show(self, changed_props: set[str]) -> None:
        """The chain to the active tab's figure (timed) and, beside it, the other triggered callbacks."""
        main = self.main
        assert main.graph is not None
        chain = main.graph.chain(_VIEW, _TARGET[self.controls.get("tab", "rdms")])
        side = [cb for cb in main.graph.triggered_by(changed_props) if cb.key != _SYNC and cb not in chain]
        if side:
            self.aside.graph, self.aside.end_id, self.aside.props = main.graph, main.end_id, dict(main.props)
            self.side = threading.Thread(target=self.aside.side_calls, args=(side,), daemon=True,
                                         name=f"loadtest-visitor-{self.index}-side")
            self.side.start()
        for cb in chain:
            last = cb is chain[-1]
            main.call(cb, [_VIEW] if cb is chain[0] else None, "final" if last else "chain", None if last else cb.key)

    def page_load(self, search: str) -> None:
        """``GET /`` (reading ``end_id``), layout, dependencies, the first sync and the tab's figure."""
        main = self.main
        html = main.get("/" + search)
        config = _CONFIG.search(html)
        try:
            main.end_id = json.loads(config.group(1)).get("end_id") if config else None
        except ValueError:
            main.end_id = None
        main.get("/_dash-layout")
        deps = main.get("/_dash-dependencies")
        try:
            main.graph = _Graph(json.loads(deps))
        except (ValueError, KeyError, TypeError) as exc:
            main.fail(None, 0.0, f"unreadable /_dash-dependencies: {exc}")
        main.props = {f"{ID.SELECTION}.data": []}
        self.controls, self.search, self.clicks = {}, search, 0
        self._show(self._sync(None))

    def _change(self, field_name: str, value: Any, also: dict[str, Any] | None = None) -> None:
        self.controls = {**self.controls, field_name: value, **(also or {})}
        self._show(self._sync(f"{CONTROL_IDS[field_name]}.value"))

    # -------------------------------------------------------------- actions
    @property
    def first_action(self) -> str:
        """This visitor's first action after the page load: visitors take turns through :data:`ACTIONS`."""
        return ACTIONS[1 + self.index % (len(ACTIONS) - 1)]

    def first_link(self) -> str:
        """A shared link: a tab that offers :attr:`first_action`, images per class from the fixed set."""
        tabs = [t for t in TABS if self.first_action in _OFFERED[t]]
        ns = self.cfg.n_per_class
        link = {"tab": self.rng.choice(tabs), "n_rdm": self.rng.choice(ns), "n_embed": self.rng.choice(ns)}
        return "?" + urlencode(link)

    def choose(self, first: bool = False) -> tuple[str, Callable[[], None]]:
        """Pick the next action among those the active tab offers (``first``: :attr:`first_action` if offered)."""
        tab = self.controls.get("tab", "rdms")
        names = [a for a in ACTIONS if a in _OFFERED.get(tab, _OFFERED["rdms"])]
        name = self.rng.choices(names, weights=[_WEIGHTS[a] for a in names])[0]
        if first and self.first_action in names:
            name = self.first_action
        c, rng = self.controls, self.rng
        if name == "page_load":
            return name, lambda: self.page_load(self.search)
        if name == "switch_model":
            return name, lambda: self._change("model", rng.choice([m for m in MODELS if m != c.get("model")]))
        if name == "change_nodes":
            pool = [n for n in self.node_names if n not in ("input", "labels")]
            pool = pool[:: max(1, len(pool) // 8)][:8] or self.node_names
            picked = set(rng.sample(pool, min(len(pool), rng.choice((2, 3, 4)))))
            return name, lambda: self._change("nodes", [n for n in pool if n in picked])
        if name == "change_n":
            key = "n_rdm" if tab in ("rdms", "models") else "n_embed"
            ns = [n for n in self.cfg.n_per_class if n != c.get(key)] or list(self.cfg.n_per_class)
            return name, lambda: self._change(key, rng.choice(ns))
        if name == "rdm_method":
            methods = [m for m in RDM_METHODS if m != c.get("rdm_method")]
            return name, lambda: self._change("rdm_method", rng.choice(methods))
        if name == "switch_tab":
            return name, lambda: self._change("tab", rng.choice([t for t in TABS if t != tab]))
        if name == "embed_methods":
            choices = [list(m) for m in EMBED_CHOICES if list(m) != c.get("embed_methods")]
            return name, lambda: self._change("embed_methods", rng.choice(choices))
        if name == "condition":
            if c.get("condition") == "clean":
                return name, lambda: self._change("condition", "fgsm", {"epsilon": EPSILON})
            return name, lambda: self._change("condition", "clean")

        def ff_vs_rec() -> None:
            self.clicks += 1
            self._show(self._sync(f"{ID.FF_VS_REC}.n_clicks"))

        return name, ff_vs_rec

    def act(self, name: str, fn: Callable[[], None]) -> None:
        """Run one action; record its latency (side calls excluded) and its first error, side calls' included."""
        self.main.errors, self.aside.errors = [], []
        self.record.start(name)
        t0 = time.perf_counter()
        try:
            fn()
        except _Failed:
            pass
        except RepgeomError as exc:  # no chain to the tab's figure: the server changed shape
            self.main.errors.append(str(exc))
        ms = (time.perf_counter() - t0) * 1000
        if self.side is not None:  # the page is done when its side calls are too
            self.side.join()
            self.side = None
        errors = self.main.errors + self.aside.errors
        self.record.action(name, ms, errors[0] if errors else None)

    def run(self, start: float, deadline: float, stop: threading.Event) -> None:
        """Arrive at ``start``, load a shared link, then act and pause until ``deadline``."""
        try:
            if stop.wait(max(0.0, start - time.monotonic())):
                return
            self.act("page_load", lambda: self.page_load(self.first_link()))
            first = True
            while True:
                if stop.wait(self.rng.uniform(*self.cfg.think_s)) or time.monotonic() >= deadline:
                    return
                if self.main.graph is None:  # the first page never loaded: try again
                    self.act("page_load", lambda: self.page_load(self.first_link()))
                else:
                    self.act(*self.choose(first))
                    first = False
        finally:
            self.main.client.close()
            self.aside.client.close()


def _message(data: bytes, cb: _Callback) -> str | None:
    """The text of a non-empty message output in a callback answer, if there is one."""
    try:
        response = json.loads(data)["response"]
        texts = [response[cid][prop] for cid, prop in cb.outputs[1:]
                 if prop == "children" and response.get(cid, {}).get(prop)]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return f"message: {json.dumps(texts[0])[:200]}" if texts else None


def _handle(status: int, data: bytes) -> dict[str, str] | None:
    """``{"cacheKey": ..., "job": ...}`` if this answer starts a background job, else ``None``."""
    if status != 200 or len(data) > _SMALL or b"cacheKey" not in data:
        return None
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    if not isinstance(answer, dict) or "cacheKey" not in answer or "response" in answer:
        return None
    return {k: str(answer[k]) for k in ("cacheKey", "job") if k in answer}


def _still_running(status: int, data: bytes) -> bool:
    """A poll's answer without ``response`` (progress only): the job is not done."""
    if status != 200 or len(data) > _SMALL:
        return False
    try:
        answer = json.loads(data)
    except ValueError:
        return False
    return isinstance(answer, dict) and "response" not in answer


# ---------------------------------------------------------------------------- memory
class _Memory:
    """Samples the RSS of the gunicorn master, its workers and their children (jobs)."""

    def __init__(self, pid: int, every_s: float) -> None:
        self.pid, self.every_s = pid, every_s
        self.peak: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self.role: dict[int, str] = {}
        self.peak_total = 0.0
        self.peak_jobs_total = 0.0
        self.available_min = float("inf")
        self.samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="loadtest-memory", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def sample(self) -> None:
        import psutil

        try:
            master = psutil.Process(self.pid)
            procs = [master, *master.children(recursive=True)]
        except psutil.Error:
            return
        available = psutil.virtual_memory().available / 2**20
        seen: list[tuple[int, str, float, float]] = []
        for p in procs:
            try:
                role = "master" if p.pid == self.pid else "worker" if p.ppid() == self.pid else "job"
                t = p.cpu_times()
                seen.append((p.pid, role, p.memory_info().rss / 2**20, t.user + t.system))
            except psutil.Error:
                continue
        with self._lock:
            for pid, role, mb, cpu in seen:
                self.role[pid] = role
                self.peak[pid] = max(self.peak.get(pid, 0.0), mb)
                self.cpu[pid] = cpu
            self.peak_total = max(self.peak_total, sum(s[2] for s in seen))
            self.peak_jobs_total = max(self.peak_jobs_total, sum(s[2] for s in seen if s[1] == "job"))
            self.available_min = min(self.available_min, available)
            self.samples += 1

    def cpu_s(self) -> float:
        """CPU seconds of every process seen so far, each as of its last sample."""
        with self._lock:
            return sum(self.cpu.values())

    def report(self) -> dict[str, Any]:
        of = lambda role: [(pid, mb) for pid, mb in self.peak.items() if self.role[pid] == role]  # noqa: E731
        jobs = of("job")
        return {
            "master_peak_rss_mb": max((mb for _, mb in of("master")), default=None),
            "workers": [{"pid": pid, "peak_rss_mb": mb} for pid, mb in sorted(of("worker"))],
            "jobs_seen": len(jobs),
            "job_peak_rss_mb": max((mb for _, mb in jobs), default=None),
            "jobs_peak_total_rss_mb": self.peak_jobs_total,
            "peak_total_rss_mb": self.peak_total,
            "machine_available_min_mb": self.available_min if self.samples else None,
            "samples": self.samples,
            "every_s": self.every_s,
        }


# ---------------------------------------------------------------------------- the run
def _config_module() -> str | None:
    """``python:repgeom.gunicorn_conf`` when that module exists, else ``None`` (the benchmark's flags)."""
    return "python:repgeom.gunicorn_conf" if find_spec("repgeom.gunicorn_conf") is not None else None


def _machine() -> dict[str, Any]:
    from .bench import _machine as bench_machine

    info = bench_machine()
    return {"cpu": info["cpu"], "cores": info["cores"]}


def run_loadtest(cfg: LoadConfig, port: int | None = None) -> dict[str, Any]:
    """Start gunicorn on loopback, let ``cfg.users`` visitors use it for ``cfg.duration_s``, stop it.

    Args:
        cfg: the settings.
        port: TCP port on 127.0.0.1 (default: a free one).

    Returns:
        A JSON-able report: ``settings``, ``machine``, ``server`` (the command's options),
        ``startup_s``, ``warmup_s``, ``load_s`` (first arrival until the last action
        ended or the drain ran out), ``actions`` and ``requests`` (rows of ``name``,
        ``count``, ``p50_ms``, ``p95_ms``, ``max_ms``, ``errors``, ``first_error``
        where any; requests also ``polls``), ``actions_total``, ``requests_total``,
        ``actions_started`` (per action, finished or not), ``unfinished_actions``,
        ``requests_per_s``, ``errors`` (failed requests), ``memory`` (peak RSS of the
        master, each worker and the background jobs, in MB, and the machine's lowest
        available memory), ``server_cpu_s`` (all server processes during the load),
        ``client_cpu_s`` (this process) and ``port``.

    Raises:
        RepgeomError: gunicorn missing, no ``app.py``, or a server that does not start.
    """
    port = port or _free_port()
    config = _config_module()
    workdir = Path(tempfile.mkdtemp(prefix="repgeom-loadtest-"))
    (workdir / "tmp").mkdir()
    log_path = workdir / "gunicorn.log"
    env = {"TMPDIR": str(workdir / "tmp"), "REPGEOM_WARM": "1" if cfg.warm else "0"}
    if cfg.data_root:
        env["REPGEOM_DATA_ROOT"] = cfg.data_root
    record, good, good_lock = _Record(), set(), threading.Lock()
    client = _Client(port)
    t0 = time.perf_counter()
    proc = _start(port, "cpu", log_path, cfg.workers, cfg.threads, config, env)
    memory = _Memory(proc.pid, cfg.sample_s)
    stop = threading.Event()
    try:
        _wait_served(proc, client, log_path)
        startup_s = time.perf_counter() - t0
        memory.start()
        t1 = time.perf_counter()
        if cfg.warm:
            _wait_quiet(_tree(proc.pid), timeout=300.0)
        warmup_s = time.perf_counter() - t1
        log.info("server up after %.1f s, quiet %.1f s later; %d visitors for %.0f s", startup_s, warmup_s,
                 cfg.users, cfg.duration_s)
        memory.sample()
        cpu0, client0 = memory.cpu_s(), _client_cpu()
        begin = time.monotonic()
        deadline = begin + cfg.duration_s
        visitors = [_Visitor(i, port, cfg, record, good, good_lock) for i in range(cfg.users)]
        threads = [threading.Thread(target=v.run, args=(begin + i / cfg.spawn_rate, deadline, stop),
                                    name=f"loadtest-visitor-{i}", daemon=True) for i, v in enumerate(visitors)]
        for t in threads:
            t.start()
        time.sleep(max(0.0, deadline - time.monotonic()))
        stop.set()  # pauses end now; no action starts after this
        for t in threads:
            t.join(max(0.0, deadline + cfg.drain_s - time.monotonic()))
        record.close()
        unfinished = sum(t.is_alive() for t in threads)
        load_s = time.monotonic() - begin
        memory.sample()
        cpu1, client1 = memory.cpu_s(), _client_cpu()
        if unfinished:
            log.warning("%d actions still under way %.0f s after the deadline; shutting the server down", unfinished,
                        cfg.drain_s)
            # Even gunicorn's quick shutdown lets a worker's request threads finish their
            # computations first: end the server's process group (workers and jobs) now.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    finally:
        stop.set()
        record.close()
        memory.stop()
        client.close()
        _stop(proc)
        if cfg.server_log:
            Path(cfg.server_log).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log_path, cfg.server_log)
        shutil.rmtree(workdir, ignore_errors=True)
    requests = record.requests
    return {
        "settings": {**asdict(cfg), "epsilon": EPSILON},
        "machine": _machine(),
        "server": {"config": config, "workers": cfg.workers, "threads": cfg.threads, "device": "cpu"},
        "startup_s": startup_s,
        "warmup_s": warmup_s,
        "load_s": load_s,
        "actions": _rows(record.actions, ACTIONS),
        "actions_started": {a: record.started.get(a, 0) for a in ACTIONS},
        "actions_total": _total(record.actions),
        "requests": _rows(requests),
        "requests_total": {**_total(requests), "polls": sum(r[3] for r in requests)},
        "requests_per_s": len(requests) / load_s if load_s else None,
        "errors": sum(1 for r in requests if r[2]),
        "unfinished_actions": unfinished,
        "memory": memory.report(),
        "server_cpu_s": cpu1 - cpu0,
        "client_cpu_s": client1 - client0,
        "port": port,
    }


def _client_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------------------- report
def _fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def format_report(report: dict[str, Any]) -> str:
    """The report as plain-text tables.

    Args:
        report: what :func:`run_loadtest` returned.

    Returns:
        The text, lines joined with newlines.
    """
    s, m = report["settings"], report["memory"]
    server = report["server"]
    lines = [
        f"load test: {s['users']} visitors for {s['duration_s']:.0f} s (arriving {s['spawn_rate']:g}/s, "
        f"pauses {s['think_s'][0]:g}-{s['think_s'][1]:g} s, images per class "
        f"{','.join(map(str, s['n_per_class']))}, seed {s['seed']}), gunicorn {server['workers']} workers x "
        f"{server['threads']} threads ({server['config'] or 'command-line flags'}), HTTP on 127.0.0.1",
        f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; server up after "
        f"{report['startup_s']:.1f} s, quiet {report['warmup_s']:.1f} s later; load ran {report['load_s']:.1f} s "
        f"({report['unfinished_actions']} actions unfinished after the {s['drain_s']:g} s drain)",
    ]
    head = f"{'':<24}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'errors':>8}"

    def table(title: str, rows: list[dict[str, Any]], total: dict[str, Any], polls: bool) -> None:
        lines.append(f"{title:<24}{head[24:]}" + (f"{'polls':>7}" if polls else ""))
        for r in [*rows, total]:
            lines.append(f"{r['name']:<24}{r['count']:>7}{_fmt(r['p50_ms']):>9}{_fmt(r['p95_ms']):>9}"
                         f"{_fmt(r['max_ms']):>9}{r['errors']:>8}" + (f"{r.get('polls', 0):>7}" if polls else ""))

    table("action", report["actions"], report["actions_total"], False)
    table("request", report["requests"], report["requests_total"], True)
    lines.append(f"requests: {report['requests_total']['count']} ({_fmt(report['requests_per_s'], '.1f')}/s), "
                 f"errors: {report['errors']}; CPU seconds: server {_fmt(report['server_cpu_s'], '.0f')}, "
                 f"load generator {report['client_cpu_s']:.0f}")
    workers = ", ".join(f"{w['pid']}: {w['peak_rss_mb']:.0f}" for w in m["workers"]) or "-"
    lines.append(f"peak RSS MB (sampled every {m['every_s']:g} s): master {_fmt(m['master_peak_rss_mb'])}; "
                 f"workers {workers}; background jobs {m['jobs_seen']} (largest {_fmt(m['job_peak_rss_mb'])}, "
                 f"all at once {m['jobs_peak_total_rss_mb']:.0f}); whole server {m['peak_total_rss_mb']:.0f}; "
                 f"machine's available memory fell to {_fmt(m.get('machine_available_min_mb'))}")
    for r in report["actions"] + report["requests"]:
        if r.get("first_error"):
            lines.append(f"first error in {r['name']}: {r['first_error']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- command line
def _whole(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be a whole number from {lo} to {hi}, got {text!r}")
        return value

    return parse


def _number(lo: float, hi: float, zero: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (lo <= value <= hi if zero else lo < value <= hi):
            span = f"from {lo:g} to {hi:g}" if zero else f"above {lo:g} and at most {hi:g}"
            raise argparse.ArgumentTypeError(f"must be a number {span}, got {text!r}")
        return value

    return parse


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(dict.fromkeys(int(v) for v in text.split(",")))
    except ValueError:
        values = ()
    if not values or not all(1 <= v <= 100 for v in values):
        raise argparse.ArgumentTypeError(f"must be whole numbers from 1 to 100 separated by commas, got {text!r}")
    return values


def _folder(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"must be an existing folder (torchvision's MNIST root), got {text!r}")
    return str(Path(text).resolve())  # the server runs from the repository root


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m repgeom.loadtest",
                      description="Simulated visitors against the dashboard under gunicorn on 127.0.0.1.")
    p.add_argument("--users", type=_whole(1, 1000), default=50, help="simulated visitors (default 50)")
    p.add_argument("--duration", type=_number(0, 86400), default=300.0, help="seconds of load (default 300)")
    p.add_argument("--spawn-rate", type=_number(0, 1000), default=10.0,
                   help="visitors arriving per second (default 10)")
    p.add_argument("--workers", type=_whole(1, 64), default=2, help="gunicorn workers (default 2)")
    p.add_argument("--threads", type=_whole(1, 64), default=4, help="threads per worker (default 4)")
    p.add_argument("--seed", type=_whole(0, 2**31 - 1), default=0, help="seed of the visitors' choices (default 0)")
    p.add_argument("--n-per-class", type=_counts, default=(5, 10, 20), metavar="N,N,...",
                   help="images per class the visitors choose from (default 5,10,20)")
    p.add_argument("--data-root", type=_folder, default=None, help="torchvision MNIST root for the server")
    p.add_argument("--drain", type=_number(0, 3600, zero=True), default=60.0,
                   help="seconds actions under way at the end may take to finish (default 60)")
    p.add_argument("--no-warm", dest="warm", action="store_false",
                   help="start the visitors without the server's start-up warm-up")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the report as JSON")
    p.add_argument("--server-log", metavar="FILE", default=None, help="keep the server's log in FILE")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load test from the command line; 0 if no request failed, 1 if any did, 2 for bad flags."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = LoadConfig(users=args.users, duration_s=args.duration, spawn_rate=args.spawn_rate, workers=args.workers,
                     threads=args.threads, seed=args.seed, data_root=args.data_root, n_per_class=args.n_per_class,
                     warm=args.warm,
                     drain_s=args.drain, server_log=args.server_log)
    try:
        report = run_loadtest(cfg)
    except RepgeomError as exc:
        sys.stderr.write(f"python -m repgeom.loadtest: error: {exc}\n")
        return 1
    sys.stdout.write(format_report(report) + "\n")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1))
        log.info("wrote %s", path)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
