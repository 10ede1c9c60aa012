"""The Dash wire: ``/_dash-update-component`` requests built from the server's own callback graph.

The tests (through Flask's test client), the HTTP benchmark (through :mod:`http.client`) and
the load test (through locust's client) all talk to the dashboard with this module.

Design notes:
    * *The server says what to send.* Bodies are built from ``/_dash-dependencies``, the list
      the Dash renderer reads at start-up: each callback's outputs, inputs and state, and its
      polling interval if it is a background callback. Nothing here spells a callback's
      argument list, so the clients follow the dashboard as its callbacks change. A callback
      is named by its first output, ``"id.prop"``. Clientside callbacks are known (a test may
      post one on purpose) but never followed in a chain: the browser runs them.
    * *What an answer means.* A 200 answer carries ``{"response": {id: {prop: value}}}``; a
      204 means "nothing to update". A background callback first answers with a handle
      (``cacheKey`` and ``job``); the client then polls with the handle in the query string
      and the body's values nulled, as the renderer does, until an answer carries
      ``response``. A message output (``children`` of a component whose id ends in
      ``message``, as the layout names its message boxes) that is not empty is the dashboard
      telling the visitor something went wrong; other outputs (hints, tables) are content.
    * *Dict ids.* A pattern-matching id (``{"index": 0, "type": "preset"}``) is named by its
      JSON with sorted keys, as Dash names it, and sent as the object.
    * *No transport of its own.* The graph and the answer checks are plain functions of
      bytes; :class:`DashClient` drives a Flask test client, :class:`HttpConnection` a
      keep-alive socket on loopback, and the locustfile locust's own client.
    * *Light.* Only the standard library is imported at module level (numpy inside
      :func:`decode`), so locust's gevent process can import it without torch or Dash.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "UPDATE_PATH",
    "Callback",
    "CallbackGraph",
    "DashClient",
    "HttpConnection",
    "WireError",
    "check_answer",
    "decode",
    "id_key",
    "job_handle",
    "layout_components",
    "message_of",
    "parse_answer",
    "poll_body",
    "poll_job",
    "split_outputs",
    "still_running",
    "updated_props",
]

UPDATE_PATH = "/_dash-update-component"
#: Answers at most this long are read for a background handle; figures are longer.
SMALL_ANSWER = 64 << 10


class WireError(LookupError):
    """The server's callback graph lacks what a client asked for."""


def split_outputs(output: str) -> list[tuple[str, str]]:
    """Dash's output string as ``(id, prop)`` pairs.

    Args:
        output: ``"id.prop"`` (one output) or ``"..a.x...b.y.."`` (several).

    Returns:
        The pairs, in the callback's output order.
    """
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    return [tuple(p.rsplit(".", 1)) for p in parts]  # type: ignore[misc]


def id_key(component_id: str | dict[str, Any]) -> str:
    """A component id as Dash spells it in names: the string, or a dict id's compact JSON with sorted keys."""
    if isinstance(component_id, dict):
        return json.dumps(component_id, sort_keys=True, separators=(",", ":"))
    return component_id


def _id(key: str) -> str | dict[str, Any]:
    """The id named by :func:`id_key` (a dict id parsed back)."""
    return json.loads(key) if key.startswith("{") else key


def _prop(item: dict[str, Any]) -> str:
    return f"{id_key(item['id'])}.{item['property']}"


@dataclass(frozen=True)
class Callback:
    """One callback as ``/_dash-dependencies`` describes it.

    Attributes:
        key: its first output, ``"id.prop"``: how the clients name it.
        output: Dash's output string (``"..a.x...b.y.."`` for several outputs).
        outputs: ``(id, prop)`` of every output (``prop`` without ``allow_duplicate``'s ``@hash``, as answers name it).
        inputs: ``"id.prop"`` of every input, in order.
        state: ``"id.prop"`` of every state, in order.
        interval_ms: polling interval of a background callback, else ``None``.
    """

    key: str
    output: str
    outputs: tuple[tuple[str, str], ...]
    inputs: tuple[str, ...]
    state: tuple[str, ...]
    interval_ms: float | None

    @property
    def name(self) -> str:
        """The id of its first output (a short label for reports)."""
        return self.outputs[0][0]

    @property
    def output_props(self) -> tuple[str, ...]:
        """``"id.prop"`` of every output."""
        return tuple(f"{i}.{p}" for i, p in self.outputs)


class CallbackGraph:
    """The server's callbacks: request bodies, and which callback feeds which.

    Args:
        deps: the JSON list ``GET /_dash-dependencies`` answers.
    """

    def __init__(self, deps: Sequence[dict[str, Any]]) -> None:
        self.callbacks: dict[str, Callback] = {}
        self.names: dict[str, Callback] = {}  # by Dash's own first output (with allow_duplicate's @hash)
        self.browser_side: set[str] = set()  # clientside callbacks, by Dash's output string
        for dep in deps:
            if dep.get("clientside_function"):  # run by the browser (the window's size, graph configs): no chain posts them
                self.browser_side.add(dep["output"])
            outputs = tuple((cid, prop.split("@", 1)[0]) for cid, prop in split_outputs(dep["output"]))  # allow_duplicate's @hash
            key = "{}.{}".format(*outputs[0])
            if key in self.callbacks:  # a second writer of the same output (a view's job after its gate): Dash's own name
                key = "{}.{}".format(*split_outputs(dep["output"])[0])
            bg = dep.get("background")
            interval = float(bg.get("interval", 500)) if isinstance(bg, dict) else None
            cb = Callback(key, dep["output"], outputs, tuple(_prop(i) for i in dep.get("inputs", [])),
                          tuple(_prop(s) for s in dep.get("state", [])), interval)
            self.callbacks.setdefault(key, cb)
            self.names.setdefault("{}.{}".format(*split_outputs(dep["output"])[0]), cb)

    def __getitem__(self, first_output: str) -> Callback:
        """The callback whose first output is ``first_output`` (``"id.prop"``).

        Raises:
            WireError: no such callback (the message lists those there are).
        """
        try:
            return self.callbacks.get(first_output) or self.names[first_output]
        except KeyError:
            known = ", ".join(sorted(self.callbacks))
            raise WireError(f"the server has no callback with first output {first_output}; it has: {known}") from None

    def __contains__(self, first_output: object) -> bool:
        return first_output in self.callbacks or first_output in self.names

    def payload(self, first_output: str, values: dict[str, Any], changed: list[str] | None = None) -> dict[str, Any]:
        """The JSON object the renderer posts for one call.

        Args:
            first_output: the callback, by its first output.
            values: ``"id.prop"`` -> value for its inputs and state (missing ones are sent as null).
            changed: ``changedPropIds`` (default: the first input).

        Returns:
            ``output``, ``outputs``, ``inputs``, ``state`` and ``changedPropIds``.
        """
        cb = self[first_output]
        outs = [{"id": _id(i), "property": p} for i, p in split_outputs(cb.output)]  # as Dash names them (@hash kept)

        def fill(props: tuple[str, ...]) -> list[dict[str, Any]]:
            return [{"id": _id(p.rsplit(".", 1)[0]), "property": p.rsplit(".", 1)[1], "value": values.get(p)} for p in props]

        return {
            "output": cb.output,
            "outputs": outs if cb.output.startswith("..") else outs[0],
            "inputs": fill(cb.inputs),
            "state": fill(cb.state),
            "changedPropIds": list(changed) if changed is not None else list(cb.inputs[:1]),
        }

    def job_after(self, response: dict[str, Any]) -> tuple[Callback, dict[str, Any]] | None:
        """The background job a gate's answer starts: ``(its callback, {request prop: value})``, else ``None``.

        A view that may be slow has a gate that answers at once or sets a request store,
        the only input of the view's background job (see ``repgeom/ui/callbacks/__init__.py``).
        """
        for prop, value in updated_props(response).items():
            if value is None:
                continue
            for cb in self.triggered_by({prop}):
                if cb.interval_ms is not None and cb.inputs == (prop,):
                    return cb, {prop: value}
        return None

    def body(self, first_output: str, values: dict[str, Any], changed: list[str] | None = None) -> bytes:
        """:meth:`payload` encoded as the request body."""
        return json.dumps(self.payload(first_output, values, changed)).encode()

    def triggered_by(self, props: set[str]) -> list[Callback]:
        """Server callbacks with an input among ``props`` (``"id.prop"``), in the server's order (the browser runs clientside ones)."""
        return [cb for cb in self.callbacks.values() if props.intersection(cb.inputs) and cb.output not in self.browser_side]

    def chain(self, source: str, target: str) -> list[Callback]:
        """The shortest run of callbacks from the prop ``source`` to the callback ``target``.

        Raises:
            WireError: no such run in the graph.
        """
        frontier: list[tuple[str, list[Callback]]] = [(source, [])]
        seen = {source}
        while frontier:
            prop, path = frontier.pop(0)
            for cb in self.triggered_by({prop}):
                if cb.key == target:
                    return [*path, cb]
                for out in cb.output_props:
                    if out not in seen:
                        seen.add(out)
                        frontier.append((out, [*path, cb]))
        raise WireError(f"no callback chain from {source} to {target} in the server's dependencies")


# ---------------------------------------------------------------------------- answers
def parse_answer(status: int, data: bytes) -> tuple[dict[str, Any], str | None]:
    """The ``response`` object of a 200 answer, or ``({}, why not)``."""
    if status != 200:
        return {}, f"HTTP {status}"
    try:
        response = json.loads(data)["response"]
    except (ValueError, KeyError, TypeError):
        return {}, "not a Dash response"
    return (response, None) if isinstance(response, dict) else ({}, "not a Dash response")


def message_of(response: dict[str, Any], outputs: Sequence[tuple[str, str]]) -> str | None:
    """The first non-empty message in an answer (``children`` of an id ending in ``message``), if any."""
    for cid, prop in outputs:
        value = response.get(cid, {}).get(prop) if isinstance(response.get(cid), dict) else None
        if prop == "children" and cid.endswith("message") and value:
            return f"message: {json.dumps(value)[:200]}"
    return None


def check_answer(status: int, data: bytes, outputs: Sequence[tuple[str, str]]) -> str | None:
    """``None`` for a 200 answer carrying the first output and empty messages, else why not."""
    response, problem = parse_answer(status, data)
    if problem:
        return problem
    first_id, first_prop = outputs[0]
    if first_prop not in response.get(first_id, {}):
        return f"no {first_id}.{first_prop} in the response"
    return message_of(response, outputs)


def updated_props(response: dict[str, Any]) -> dict[str, Any]:
    """An answer's ``response`` as ``{"id.prop": value}``."""
    return {f"{cid}.{prop}": value for cid, props in response.items() for prop, value in props.items()}


def job_handle(status: int, data: bytes) -> dict[str, str] | None:
    """``{"cacheKey": ..., "job": ...}`` if this answer starts a background job, else ``None``."""
    if status != 200 or len(data) > SMALL_ANSWER or b"cacheKey" not in data:
        return None
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    if not isinstance(answer, dict) or "cacheKey" not in answer or "job" not in answer or "response" in answer:
        return None
    return {"cacheKey": str(answer["cacheKey"]), "job": str(answer["job"])}


def still_running(status: int, data: bytes) -> bool:
    """A poll's answer without ``response`` (progress only): the job is not done."""
    if status != 200 or len(data) > SMALL_ANSWER:
        return False
    try:
        answer = json.loads(data)
    except ValueError:
        return False
    return isinstance(answer, dict) and "response" not in answer


def poll_body(body: bytes) -> bytes:
    """The body the renderer polls a background job with: the call's, input and state values nulled."""
    blank = json.loads(body)
    for item in blank["inputs"] + blank.get("state", []):
        item["value"] = None
    return json.dumps(blank).encode()


def poll_job(send: Callable[[bytes, dict[str, str]], tuple[int, bytes]], body: bytes, handle: dict[str, str],
             interval_s: float, timeout_s: float, sleep: Callable[[float], None] = time.sleep,
             ) -> tuple[int, bytes, int]:
    """Poll a background job until an answer is not progress.

    Args:
        send: posts a body with extra query arguments; returns ``(status, body)``.
        body: the call's body (its values are nulled for the polls).
        handle: what :func:`job_handle` read from the first answer.
        interval_s: pause before each poll.
        timeout_s: give up after this long.
        sleep: the pause (locust's gevent patches :func:`time.sleep`).

    Returns:
        ``(status, body, polls)`` of the last answer.

    Raises:
        TimeoutError: the job was still running after ``timeout_s``.
    """
    blank = poll_body(body)
    deadline = time.monotonic() + timeout_s
    polls = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"background job not done after {timeout_s:.0f} s")
        sleep(interval_s)
        polls += 1
        status, data = send(blank, handle)
        if not still_running(status, data):
            return status, data, polls


def layout_components(layout: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every component with an id in ``GET /_dash-layout``'s tree: ``id_key(id) -> (type, props)``."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    stack = [layout]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, dict) and isinstance(node.get("props"), dict):
            props = node["props"]
            if isinstance(props.get("id"), str | dict):
                found.setdefault(id_key(props["id"]), (str(node.get("type")), props))
            stack.extend(reversed(list(props.values())))
    return found


def decode(value: Any) -> Any:
    """Plotly's typed-array JSON (``{"dtype", "bdata", "shape"}``) or a list, as a numpy array."""
    import numpy as np

    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return arr.reshape([int(s) for s in str(shape).split(",")]) if shape else arr
    return np.asarray(value)


# ---------------------------------------------------------------------------- transports
class DashClient:
    """Calls a Dash app in process, through Flask's test client and the app's real endpoint.

    Args:
        app: the Dash app.
        poll_s: pause between polls of a background job.

    Attributes:
        client: the Flask test client (tests may wrap it).
        polls: polls the last background call took.
    """

    def __init__(self, app: Any, poll_s: float = 0.02) -> None:
        self.app = app
        self.client = app.server.test_client()
        self.poll_s = poll_s
        self.polls = 0
        self._graph: CallbackGraph | None = None

    @property
    def graph(self) -> CallbackGraph:
        """The app's callbacks, read from its ``/_dash-dependencies`` when first needed.

        Not at construction: Dash completes its callback map on an app's first request, and
        tests of that moment need a client that has not sent one yet.

        Raises:
            WireError: the app did not answer with its dependencies.
        """
        if self._graph is None:
            deps = self.client.get("/_dash-dependencies")
            if deps.status_code != 200:
                raise WireError(f"GET /_dash-dependencies answered HTTP {deps.status_code}")
            self._graph = CallbackGraph(deps.get_json())
        return self._graph

    def key_for(self, first_output: str) -> str:
        """Dash's output string of the callback whose first output is ``first_output``."""
        return self.graph[first_output].output

    def payload(self, first_output: str, values: dict[str, Any], changed: list[str] | None = None) -> dict[str, Any]:
        """The JSON body for one call (:meth:`CallbackGraph.payload`)."""
        return self.graph.payload(first_output, values, changed)

    def call(self, first_output: str, values: dict[str, Any], changed: list[str] | None = None,
             timeout_s: float = 120.0, follow: bool = False) -> Any:
        """POST one call; returns the Flask response (for a background callback: the final one).

        With ``follow``, when the call is a view's gate that did not answer ``first_output``
        but started its job (set its request store), the job is posted and polled too, and
        its answer returned, as the page would show it.
        """
        r = self.post(self.graph.body(first_output, values, changed), timeout_s)
        if r.status_code != 200 or not follow:
            return r
        response, problem = parse_answer(r.status_code, r.get_data())
        cid, prop = self.graph[first_output].outputs[0]
        job = None if problem or prop in response.get(cid, {}) else self.graph.job_after(response)
        if job is None:
            return r
        cb, request = job
        return self.post(self.graph.body(cb.key, {**values, **request}), timeout_s)

    def post(self, data: str | bytes, timeout_s: float = 120.0, query: str = "") -> Any:
        """POST a raw body; a background job's handle is polled, as the renderer does, until it ends."""
        body = data.encode() if isinstance(data, str) else data
        r = self.client.post(UPDATE_PATH + query, data=body, content_type="application/json")
        handle = job_handle(r.status_code, r.get_data())
        self.polls = 0
        if handle is None:
            return r
        last: list[Any] = []

        def send(blank: bytes, args: dict[str, str]) -> tuple[int, bytes]:
            last[:] = [self.client.post(UPDATE_PATH, query_string=args, data=blank, content_type="application/json")]
            return last[0].status_code, last[0].get_data()

        _, _, self.polls = poll_job(send, body, handle, self.poll_s, timeout_s)
        return last[0]

    def start(self, first_output: str, values: dict[str, Any]) -> dict[str, str]:
        """Start a background callback and return its handle (``cacheKey``, ``job``) without waiting."""
        r = self.client.post(UPDATE_PATH, data=self.graph.body(first_output, values), content_type="application/json")
        handle = job_handle(r.status_code, r.get_data())
        if handle is None:
            raise WireError(f"{first_output} did not start a background job: HTTP {r.status_code} {r.get_data()[:300]!r}")
        return handle

    def outputs(self, first_output: str, values: dict[str, Any], changed: list[str] | None = None,
                follow: bool = False) -> dict[str, Any]:
        """Call (following a gate's job with ``follow``) and return ``{"id.prop": value}`` for the outputs that were updated (empty on 204)."""
        r = self.call(first_output, values, changed, follow=follow)
        if r.status_code == 204:
            return {}
        response, problem = parse_answer(r.status_code, r.get_data())
        if problem:
            raise AssertionError(f"{first_output}: {problem}: {r.get_data()[:500]!r}")
        return updated_props(response)


class HttpConnection:
    """One browser's keep-alive connection to a server on loopback.

    Args:
        port: TCP port on ``host``.
        timeout: seconds a request may take.
        host: a loopback address.
    """

    def __init__(self, port: int, timeout: float = 180.0, host: str = "127.0.0.1") -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
        """Send one request; returns ``(status, body, seconds)``.

        A keep-alive connection the server has closed in the meantime is reopened and the
        request sent once more, as a browser does; the time counts from the last send.

        Raises:
            OSError: or :class:`http.client.HTTPException`, for other failures.
        """
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            fresh = self._conn is None
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
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
