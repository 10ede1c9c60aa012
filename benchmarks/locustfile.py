"""locust's simulated visitors of the dashboard (run headless by ``python -m benchmarks.loadtest``).

Each visitor loads a shared link, then every 0.5-2 s switches model, nodes, images per class,
RDM method, tab, embedding methods, clean/FGSM or a preset ("feedforward vs recurrent"), posting the
callback requests the browser posts to ``/_dash-update-component``.

Design notes:
    * *What a browser posts.* A visit is ``GET /`` (whose ``_dash-config`` block holds the
      page's signed ``end_id``, sent back as ``endId`` on every callback request, as the
      renderer does), ``/_dash-layout``, ``/_dash-dependencies``, then the URL-sync callback.
      Every control change posts the sync callback with the new value, then the chain of
      callbacks that leads from the view store to the active tab's figure, found in the
      dependency graph (:meth:`benchmarks.dash_wire.CallbackGraph.chain`), each fed the
      previous one's output. The other callbacks the sync's outputs trigger (idle tabs, the
      pair figure) go out at the same time from a second greenlet, as the renderer sends
      independent callbacks in parallel: these *side* calls count as load and errors, not in
      the action's latency. Background jobs are polled to their end at the callback's
      ``interval``.
    * *From the page, not from repgeom.* Models, RDM and embedding methods and conditions
      are the options in ``/_dash-layout``, and every callback input starts from its value
      there, as in the renderer; the control of a view field is the sync callback's input
      named like the field (``n_rdm`` -> ``n-rdm.value``), and the presets are its
      ``n_clicks`` inputs. This process imports neither torch nor Dash.
    * *What locust records.* Every HTTP request is a locust request (``GET``/``POST``, polls
      named ``... (poll)``); each callback call, from its first POST to the end of its job,
      is a ``callback`` event carrying its polls; each action is an ``action`` event whose
      failure is the first error of any of its requests. Every event is also written to
      ``--samples-file`` when locust quits, with the actions started, so the runner reports
      exact percentiles and the actions cut off by the end of the run.
    * *Errors.* Any non-2xx status, connection failure or timeout, a callback answer without
      its output, a 204 where a figure was due, or a message output that is not empty. A
      figure answer byte-identical to one already checked is not parsed again (its digest is
      kept): parsing megabytes of JSON would take the cores the server needs.
    * *Reproducible choices.* Visitor ``i`` draws from ``random.Random(seed * 1_000_003 + i)``
      and arrives on a link to a tab that offers ``FIRST[i % 8]``, which it takes first, so even
      a short run exercises every kind of action. ``FIRST`` starts with the action only the
      embeddings tab offers: that tab's page waits for a background job, so the visitors who
      need it arrive first, before the jobs queue up.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import gevent
from locust import User, events, task

from benchmarks.dash_wire import (
    UPDATE_PATH,
    Callback,
    CallbackGraph,
    HttpConnection,
    WireError,
    job_handle,
    layout_components,
    message_of,
    parse_answer,
    poll_job,
    updated_props,
)
from benchmarks.loadtest import ACTIONS

#: How often each action is picked, where the active tab offers it.
WEIGHTS = {"switch_tab": 3.0, "switch_model": 2.0, "change_nodes": 2.0, "change_n": 2.0, "rdm_method": 1.5,
           "embed_methods": 1.5, "condition": 1.5, "ff_vs_rec": 0.5, "page_load": 0.5}
#: The tabs and the actions each offers.
OFFERED = {
    "rdms": {"switch_model", "change_nodes", "change_n", "rdm_method", "switch_tab", "condition", "ff_vs_rec",
             "page_load"},
    "embeddings": {"switch_model", "change_nodes", "change_n", "embed_methods", "switch_tab", "condition", "ff_vs_rec",
                   "page_load"},
    "paths": {"switch_model", "change_n", "switch_tab", "condition", "ff_vs_rec", "page_load"},
    "models": {"switch_model", "change_n", "rdm_method", "switch_tab", "condition", "page_load"},
}
#: Visitor ``i`` first takes ``FIRST[i % 8]`` (every action but the page load).
FIRST = ("embed_methods", "switch_model", "change_nodes", "change_n", "rdm_method", "switch_tab", "condition",
         "ff_vs_rec")
#: What a visitor waits for on each tab: the first output of the callback that draws it.
TARGET = {"rdms": "rdm-grid.figure", "embeddings": "embed-grid.figure", "paths": "path-graph.figure",
          "models": "models-table.children"}
SYNC, VIEW, SELECTION = "url.search", "view.data", "selection.data"
REQUEST_TIMEOUT_S = 180.0
_CONFIG = re.compile(rb'<script id="_dash-config" type="application/json">(.*?)</script>', re.S)
_MAX_DIGESTS = 100_000

#: This process's record: every event, the actions started, the load's start and end (epoch s).
SAMPLES: list[list[Any]] = []
STARTED: Counter[str] = Counter()
TIMES: dict[str, float] = {}
#: Digests of figure answers already checked.
GOOD: set[bytes] = set()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--samples-file", default="", help="write every event here (JSON) when locust quits")
    parser.add_argument("--visitor-seed", type=int, default=0, help="seed of the visitors' choices")
    parser.add_argument("--n-per-class", default="5,10,20", help="images per class the visitors choose from")
    parser.add_argument("--think", default="0.5,2.0", help="pause between actions: low,high seconds")
    parser.add_argument("--epsilon", type=float, default=0.1, help="FGSM step when a visitor picks FGSM")


@events.request.add_listener
def _record(request_type: str, name: str, response_time: float, response_length: int,
            exception: BaseException | str | None = None, context: dict[str, Any] | None = None, **_: Any) -> None:
    error = None if exception is None else (str(exception) or type(exception).__name__)[:300]
    SAMPLES.append([request_type, name, float(response_time), error, int((context or {}).get("polls", 0))])


@events.test_start.add_listener
def _started(**_: Any) -> None:
    TIMES["start"] = time.time()


@events.quitting.add_listener
def _write(environment: Any, **_: Any) -> None:
    TIMES.setdefault("end", time.time())
    path = environment.parsed_options.samples_file
    if path:
        with open(path, "w") as fh:
            json.dump({"samples": SAMPLES, "started": dict(STARTED), "times": TIMES}, fh)


@events.test_stop.add_listener
def _stopped(**_: Any) -> None:
    TIMES["end"] = time.time()


def _layout_values(components: dict[str, tuple[str, dict[str, Any]]], graph: CallbackGraph) -> dict[str, Any]:
    """What the renderer starts from: the layout's value of every callback input and state it has."""
    values = {}
    for cb in graph.callbacks.values():
        for prop in cb.inputs + cb.state:
            cid, name = prop.rsplit(".", 1)
            props = components.get(cid, ("", {}))[1]
            if name in props:
                values[prop] = props[name]
    return values


class _Failed(Exception):
    """A request of the current action failed (already recorded); the action stops."""


class Visitor(User):
    """One browser tab on the dashboard, with two keep-alive connections.

    The requests go out through :class:`benchmarks.dash_wire.HttpConnection` (the standard
    library's client, made cooperative by gevent) and are reported to locust as ``GET``/``POST``
    events: as a browser does, a request on a reused connection that the server closed or reset
    before answering is sent once more on a new one. The main connection carries what the
    visitor waits for; the second carries the side calls at the same time.
    """

    _count = itertools.count()

    def on_start(self) -> None:
        """Read this visitor's options; the first task loads the page."""
        opts = self.environment.parsed_options
        self.index = next(Visitor._count)
        self.rng = random.Random(opts.visitor_seed * 1_000_003 + self.index)
        self.ns = [int(n) for n in str(opts.n_per_class).split(",")]
        low, high = (float(t) for t in str(opts.think).split(","))
        self.think = (low, high)
        self.epsilon = opts.epsilon
        self.graph: CallbackGraph | None = None
        self.end_id: str | None = None
        self.props: dict[str, Any] = {}
        self.controls: dict[str, Any] = {}
        self.choices: dict[str, list[Any]] = {}
        self.node_names: list[str] = []
        self.search, self.first = "", True
        self.clicks: dict[str, int] = {}
        self.errors: list[str] = []
        self.side: gevent.Greenlet | None = None
        url = urlsplit(self.host)
        self.main = HttpConnection(url.port or 80, REQUEST_TIMEOUT_S, url.hostname or "127.0.0.1")
        self.aside = HttpConnection(url.port or 80, REQUEST_TIMEOUT_S, url.hostname or "127.0.0.1")

    def on_stop(self) -> None:
        """Close both connections."""
        self.main.close()
        self.aside.close()

    def wait_time(self) -> float:
        """A pause drawn from ``--think`` with this visitor's own generator."""
        return self.rng.uniform(*self.think)

    # -------------------------------------------------------------- requests
    def _request(self, conn: HttpConnection, method: str, path: str, body: bytes | None, name: str) -> tuple[int, bytes]:
        """One request, reported to locust; a connection failure raises :class:`OSError`."""
        t0 = time.perf_counter()
        try:
            status, data, _ = conn.request(method, path, body)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            error = f"{type(exc).__name__}: {exc}"
            events.request.fire(request_type=method, name=name, response_time=(time.perf_counter() - t0) * 1000,
                                response_length=0, exception=RuntimeError(error), context={})
            raise OSError(error) from None
        events.request.fire(request_type=method, name=name, response_time=(time.perf_counter() - t0) * 1000,
                            response_length=len(data), context={},
                            exception=RuntimeError(f"HTTP {status}") if status >= 400 else None)
        return status, data

    def _get(self, path: str) -> bytes:
        name = "GET " + path.split("?")[0]
        try:
            status, data = self._request(self.main, "GET", path, None, name)
        except OSError as exc:
            self._fail(f"{name}: {exc}")
        if status != 200:
            self._fail(f"{name}: HTTP {status}")
        return data

    def _fail(self, error: str) -> None:
        self.errors.append(error)
        raise _Failed(error)

    def _post(self, conn: HttpConnection, body: bytes, name: str, query: dict[str, str] | None = None,
              ) -> tuple[int, bytes]:
        args = {**({"endId": self.end_id} if self.end_id else {}), **(query or {})}
        return self._request(conn, "POST", UPDATE_PATH + ("?" + urlencode(args) if args else ""), body, name)

    def call(self, cb: Callback, changed: list[str] | None, role: str, props: dict[str, Any],
             needs: str | None = None) -> None:
        """Post ``cb`` with ``props`` (polling a background job to its end) and check its answer.

        ``role``: ``"chain"`` (its outputs go into ``props``; ``needs`` must be among them),
        ``"final"`` (the figure the visitor waits for) or ``"side"`` (a failure is recorded,
        the action goes on).
        """
        assert self.graph is not None
        conn = self.aside if role == "side" else self.main
        name = ("sync" if cb.key == SYNC else cb.name) + (" (side)" if role == "side" else "")
        body = self.graph.body(cb.key, props, changed)
        t0 = time.perf_counter()
        polls, data = 0, b""
        try:
            status, data = self._post(conn, body, name)
            handle = job_handle(status, data)
            if handle is not None:
                status, data, polls = poll_job(lambda b, h: self._post(conn, b, name + " (poll)", h), body, handle,
                                               (cb.interval_ms or 500) / 1000, REQUEST_TIMEOUT_S, gevent.sleep)
            answer = parse_answer(status, data)[0]
            cid, prop = cb.outputs[0]
            job = self.graph.job_after(answer) if role == "final" and prop not in answer.get(cid, {}) else None
            if job is not None:  # the view's gate started its job: wait for that, as the page does
                job_cb, request = job
                body = self.graph.body(job_cb.key, {**props, **request})
                status, data = self._post(conn, body, name)
                handle = job_handle(status, data)
                if handle is not None:
                    status, data, polls = poll_job(lambda b, h: self._post(conn, b, name + " (poll)", h), body, handle,
                                                   (job_cb.interval_ms or 500) / 1000, REQUEST_TIMEOUT_S, gevent.sleep)
            error = self._check(cb, status, data, role, props, needs)
        except (OSError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        events.request.fire(request_type="callback", name=name, response_time=(time.perf_counter() - t0) * 1000,
                            response_length=len(data), exception=RuntimeError(error) if error else None,
                            context={"polls": polls})
        if error:
            self.errors.append(f"{name}: {error}")
            if role != "side":
                raise _Failed(error)

    def _check(self, cb: Callback, status: int, data: bytes, role: str, props: dict[str, Any],
               needs: str | None) -> str | None:
        if role == "side" and status == 204:
            return None
        digest = hashlib.blake2b(data, digest_size=16).digest() + cb.key.encode()
        if role != "chain" and status == 200 and digest in GOOD:
            return None
        response, problem = parse_answer(status, data)
        problem = problem or message_of(response, cb.outputs)
        if not problem and role == "final" and cb.outputs[0][1] not in response.get(cb.outputs[0][0], {}):
            problem = f"no {cb.key} in the response"
        if problem:
            return problem
        if role == "chain":
            got = updated_props(response)
            if needs is not None and needs not in got:
                return f"no {needs} in the response"
            props.update(got)
        elif len(GOOD) < _MAX_DIGESTS:
            GOOD.add(digest)
        return None

    def _side_calls(self, calls: list[Callback], props: dict[str, Any]) -> None:
        for cb in calls:
            try:
                self.call(cb, [VIEW], "side", props)
            except _Failed:
                pass

    # -------------------------------------------------------------- the page
    def _control(self, field: str) -> str:
        """The sync callback's input that holds the view field ``field`` (``n_rdm`` -> ``n-rdm.value``)."""
        return field.replace("_", "-") + ".value"

    def _buttons(self) -> list[str]:
        """The preset buttons ("feedforward vs recurrent"): the sync callback's ``n_clicks`` inputs with dict ids.

        Other buttons feed the sync callback too (the hypothesis editor's "add"); the presets
        are the ones made per manifest entry, so their ids are dicts (``{"index": i, "type": ...}``).
        """
        assert self.graph is not None
        return [p for p in self.graph[SYNC].inputs if p.endswith(".n_clicks") and p.startswith("{")]

    def _sync(self, changed: str | None) -> set[str]:
        """Post the URL/controls sync callback; adopt the view it answers. Returns the props it set."""
        assert self.graph is not None
        sync = self.graph[SYNC]
        self.props[SYNC] = self.search
        self.props.update(self.clicks)
        self.props.update({self._control(k): v for k, v in self.controls.items() if self._control(k) in sync.inputs})
        before = dict(self.props)
        self.call(sync, [] if changed is None else [changed], "chain", self.props, needs=VIEW)
        view = self.props[VIEW]
        self.controls = dict(view) if isinstance(view, dict) else {}
        self.search = self.props.get(SYNC) or ""
        options = self.props.get(self._control("nodes").replace(".value", ".options")) or []
        self.node_names = [o["value"] for o in options if isinstance(o, dict) and "value" in o]
        return {k for k, v in self.props.items() if k not in before or before[k] != v} | {VIEW}

    def _show(self, changed_props: set[str]) -> None:
        """The chain to the active tab's figure (timed) and, beside it, the other triggered callbacks."""
        assert self.graph is not None
        chain = self.graph.chain(VIEW, TARGET[self.controls.get("tab", "rdms")])
        side = [cb for cb in self.graph.triggered_by(changed_props) if cb.key != SYNC and cb not in chain]
        if side:
            self.side = gevent.spawn(self._side_calls, side, dict(self.props))
        for cb in chain:
            last = cb is chain[-1]
            self.call(cb, [VIEW] if cb is chain[0] else None, "final" if last else "chain", self.props,
                      None if last else cb.key)

    def page_load(self, search: str) -> None:
        """``GET /`` (reading ``end_id``), layout, dependencies, the first sync and the tab's figure."""
        html = self._get("/" + search)
        config = _CONFIG.search(html)
        try:
            self.end_id = json.loads(config.group(1)).get("end_id") if config else None
        except ValueError:
            self.end_id = None
        components = layout_components(json.loads(self._get("/_dash-layout")))
        try:
            self.graph = CallbackGraph(json.loads(self._get("/_dash-dependencies")))
        except (ValueError, KeyError, TypeError) as exc:
            self._fail(f"unreadable /_dash-dependencies: {exc}")

        def options(cid: str) -> list[Any]:
            props = components.get(cid, ("", {}))[1]
            # a disabled option is a group header (the model list is grouped by dataset), not a choice
            return [o["value"] if isinstance(o, dict) else o for o in props.get("options") or [] if not (isinstance(o, dict) and o.get("disabled"))]

        self.choices = {f: options(f.replace("_", "-")) for f in ("model", "rdm_method", "embed_methods", "condition")}
        self.props = {SELECTION: [], **_layout_values(components, self.graph)}
        self.controls, self.search, self.clicks = {}, search, {}
        self._show(self._sync(None))

    def _change(self, field: str, value: Any, also: dict[str, Any] | None = None) -> None:
        self.controls = {**self.controls, field: value, **(also or {})}
        self._show(self._sync(self._control(field)))

    # -------------------------------------------------------------- actions
    @property
    def first_action(self) -> str:
        """This visitor's first action after the page load: visitors take turns through :data:`ACTIONS`."""
        return FIRST[self.index % len(FIRST)]

    def first_link(self) -> str:
        """A shared link: a tab that offers :attr:`first_action`, images per class from ``--n-per-class``."""
        tabs = [t for t in OFFERED if self.first_action in OFFERED[t]]
        link = {"tab": self.rng.choice(tabs), "n_rdm": self.rng.choice(self.ns), "n_embed": self.rng.choice(self.ns)}
        return "?" + urlencode(link)

    def _other(self, field: str, pool: list[Any]) -> Any:
        """A value of ``pool`` other than the current one (the current one if there is no other)."""
        others = [v for v in pool if v != self.controls.get(field)]
        return self.rng.choice(others or pool)

    def choose(self) -> tuple[str, Callable[[], None]]:
        """Pick the next action among those the active tab offers (the first time: :attr:`first_action`)."""
        tab = self.controls.get("tab", "rdms")
        names = [a for a in ACTIONS if a in OFFERED.get(tab, OFFERED["rdms"])]
        name = self.rng.choices(names, weights=[WEIGHTS[a] for a in names])[0]
        if self.first and self.first_action in names:
            name = self.first_action
        self.first = False
        if name == "page_load":
            search = self.search
            return name, lambda: self.page_load(search)
        if name == "switch_model":
            model = self._other("model", self.choices["model"])
            return name, lambda: self._change("model", model)
        if name == "change_nodes":
            pool = [n for n in self.node_names if n not in ("input", "labels")]
            pool = pool[:: max(1, len(pool) // 8)][:8] or self.node_names
            picked = set(self.rng.sample(pool, min(len(pool), self.rng.choice((2, 3, 4)))))
            return name, lambda: self._change("nodes", [n for n in pool if n in picked])
        if name == "change_n":
            key = "n_rdm" if tab in ("rdms", "models") else "n_embed"
            n = self._other(key, self.ns)
            return name, lambda: self._change(key, n)
        if name == "rdm_method":
            method = self._other("rdm_method", self.choices["rdm_method"])
            return name, lambda: self._change("rdm_method", method)
        if name == "switch_tab":
            new_tab = self._other("tab", list(OFFERED))
            return name, lambda: self._change("tab", new_tab)
        if name == "embed_methods":
            methods = self.choices["embed_methods"]
            subsets = [methods[:1], *([methods[0], m] for m in methods[1:]), methods]
            subset = self._other("embed_methods", subsets)
            return name, lambda: self._change("embed_methods", subset)
        if name == "condition":
            clean = self.choices["condition"][0]
            if self.controls.get("condition") == clean:
                attack = self._other("condition", self.choices["condition"])
                return name, lambda: self._change("condition", attack, {"epsilon": self.epsilon})
            return name, lambda: self._change("condition", clean)

        def ff_vs_rec() -> None:
            buttons = self._buttons()
            if not buttons:
                raise WireError("the sync callback has no preset button among its inputs")
            button = self.rng.choice(buttons)
            self.clicks[button] = (self.props.get(button) or 0) + 1
            self._show(self._sync(button))

        return name, ff_vs_rec

    def act(self, name: str, fn: Callable[[], None]) -> None:
        """Run one action; record its latency (side calls excluded) and its first error, side calls' included."""
        self.errors = []
        STARTED[name] += 1
        t0 = time.perf_counter()
        try:
            fn()
        except _Failed:
            pass
        except WireError as exc:  # no chain to the tab's figure: the server changed shape
            self.errors.append(str(exc))
        ms = (time.perf_counter() - t0) * 1000
        if self.side is not None:  # the page is done when its side calls are too
            self.side.join()
            self.side = None
        events.request.fire(request_type="action", name=name, response_time=ms, response_length=0,
                            exception=RuntimeError(self.errors[0]) if self.errors else None, context={})

    @task
    def step(self) -> None:
        """Load the shared link (again, if it failed), else take one action."""
        if self.graph is None:
            self.act("page_load", lambda: self.page_load(self.first_link()))
        else:
            self.act(*self.choose())
