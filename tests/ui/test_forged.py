"""Forged requests to every callback, as any client can post them to ``/_dash-update-component``.

The callbacks are enumerated from ``app.callback_map`` (a new callback is covered without
touching this file). Each one first gets the values a real page would send in the tab where
it draws (the sync callback run on a URL, then every store-filling callback), then every
input and state, and every field nested inside them (the view store's fields, a click's
point coordinates, ...), is replaced in turn by hostile values. Malformed envelopes are
posted too. Every answer must be 200/204 (no update, or a message in the page) or a 4xx;
never a traceback, never later than 1 s, and no file may be opened outside the app's
folders while they are served (a ``sys.addaudithook`` records every ``open``).
"""

from __future__ import annotations

import copy
import json
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from repgeom.settings import Settings
from repgeom.ui import create_app
from repgeom.ui.state import TABS
from tests.dash_client import DashClient

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 1.0  # every HTTP answer, polls of a background job included
JOB_LIMIT_S = 15.0  # a whole background job, forged or not (a process of its own, on a busy machine)
ENDPOINT = "/_dash-update-component"

HUGE_LIST = [0] * 10**6
HUGE_STR = "a" * (1 << 20)
DEEP = json.loads("[" * 500 + "]" * 500)  # nested as deep as a JSON parser accepts without a fuss
FORGED: dict[str, Any] = {
    "null": None,
    "traversal": "../../etc/passwd",
    "abs-path": "/etc/passwd",
    "minus-one": -1,
    "10**12": 10**12,
    "1e308": 1e308,
    "NaN": float("nan"),  # json.dumps writes the bare token NaN
    "text": "abc",
    "true": True,
    "empty-list": [],
    "empty-object": {},
    "list-1e6": HUGE_LIST,
    "deep-list": DEEP,
    "string-1MB": HUGE_STR,
    "unknown-model": "resnet152",
    "unknown-node": "conv99.weight",
}
HUGE = {"list-1e6", "deep-list", "string-1MB"}
# Huge values are sent as a whole input or state and as each field one level inside it (once
# per field over all callbacks: what they test is the parse, and they cost a few MB each);
# deeper fields get the small ones. A background callback starts a process per call, so it
# gets the hostile values as its inputs and, small ones only, one level inside them.
# A plausible click or hover event (what Plotly sends): coordinates, trace and point, custom data.
POINT_EVENT = {"points": [{"x": 1, "y": 2, "z": 0.5, "curveNumber": 0, "pointNumber": 3, "customdata": [3, 7]}]}
# An embedding point carries [image index, node, method]; a box selection lists such points.
EMBED_POINT_EVENT = {"points": [{"x": 0.5, "y": -1.0, "curveNumber": 0, "pointNumber": 3, "customdata": [7, "conv2", "pca"]}]}
EMBED_GRAPHS = ("embed-grid", "embed-anim")


# ---------------------------------------------------------------------------- file audit
class _OpenAudit:
    """Records the path of every ``open`` audit event while :meth:`recording` is active."""

    def __init__(self) -> None:
        self.active = False
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event != "open" or not args:
            return
        path = args[0]
        if isinstance(path, (str, bytes)):
            with self._lock:
                self.paths.append(path.decode(errors="replace") if isinstance(path, bytes) else path)

    @contextmanager
    def recording(self) -> Iterator[list[str]]:
        start = len(self.paths)
        self.active = True
        try:
            yield self.paths
        finally:
            self.active = False
            del self.paths[:start]


@pytest.fixture(scope="session")
def open_audit() -> _OpenAudit:
    """One audit hook per test session (hooks cannot be removed; it records only when asked)."""
    audit = _OpenAudit()
    sys.addaudithook(audit.hook)
    return audit


def _allowed_roots(*extra: Path) -> list[Path]:
    """The repo, the virtualenv, the stdlib, the import path, /proc, /sys, /dev and ``extra``.

    The import path counts as the app's own: a module imported lazily on the first such
    request makes the import system probe every ``sys.path`` entry (``python311.zip``...).
    """
    roots = {ROOT, Path(sys.prefix), Path("/proc"), Path("/sys"), Path("/dev"), *extra}
    roots.update(Path(entry) for entry in sys.path if entry and Path(entry).is_absolute())
    base = {"base": sys.base_prefix, "platbase": sys.base_prefix}
    for scheme in (sysconfig.get_paths(), sysconfig.get_paths(vars=base)):
        roots.update(Path(scheme[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in scheme)
    return [r.resolve() for r in roots]


def _outside(paths: list[str], roots: list[Path]) -> list[str]:
    bad = []
    for p in dict.fromkeys(paths):
        resolved = Path(p if Path(p).is_absolute() else Path.cwd() / p).resolve()
        if not any(resolved == r or r in resolved.parents for r in roots) or "passwd" in p:
            bad.append(p)
    return bad


# ---------------------------------------------------------------------------- the page's values
def _key_outputs(key: str) -> list[str]:
    """``"id.prop"`` of each output of a callback_map key (an output two callbacks set is ``id.prop@hash`` there)."""
    return [o.split("@")[0] for o in (key[2:-2].split("...") if key.startswith("..") else [key])]


def _ref(item: dict[str, Any]) -> str:
    return f"{item['id']}.{item['property']}"


def _layout_values(client) -> dict[str, Any]:
    """``{"id.prop": value}`` of every prop the served layout sets."""
    values: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for n in node:
                walk(n)
        elif isinstance(node, dict):
            props = node.get("props")
            if isinstance(props, dict):
                cid = props.get("id")
                if isinstance(cid, str):
                    values.update({f"{cid}.{k}": v for k, v in props.items() if k not in ("id", "children")})
                for v in props.values():
                    walk(v)

    walk(client.get("/_dash-layout").get_json())
    return values


def _merge(values: dict[str, Any], response) -> None:
    if response.status_code != 200:
        return
    body = response.get_json(silent=True) or {}
    for cid, props in (body.get("response") or {}).items():
        for prop, v in props.items():
            values[f"{cid}.{prop}"] = v


def _page_values(dash: DashClient, app, layout: dict[str, Any], tab: str) -> dict[str, Any]:
    """What a page opened on ``tab`` holds once its first callbacks ran (small N, so warm-up is quick)."""
    values = dict(layout)
    for spec in app.callback_map.values():
        for item in spec["inputs"] + spec["state"]:
            ref = _ref(item)
            if item["property"] in ("clickData", "hoverData", "selectedData"):
                values[ref] = copy.deepcopy(EMBED_POINT_EVENT if item["id"] in EMBED_GRAPHS else POINT_EVENT)
            elif item["property"] == "n_clicks":
                values[ref] = 1
    sync = next(k for k in app.callback_map if "url.search" in _key_outputs(k))
    values["url.search"] = f"?tab={tab}&n_rdm=10&n_embed=10"
    _merge(values, dash.call(_key_outputs(sync)[0], values, changed=["url.search"]))
    for _ in range(2):  # stores filled from stores (the embeddings gate fills its request from the view)
        for key, spec in app.callback_map.items():
            outs = _key_outputs(key)
            fills_a_store = any(o.endswith(".data") for o in outs)
            if key != sync and fills_a_store and not spec.get("background") and spec["inputs"]:
                _merge(values, dash.call(outs[0], values, changed=[_ref(spec["inputs"][0])]))
    return values


def _nested_paths(value: Any, depth: int = 3) -> Iterator[tuple[Any, ...]]:
    """Paths (dict keys, list indices) to every sub-value of ``value``, down to ``depth`` levels."""
    if depth == 0:
        return
    items = value.items() if isinstance(value, dict) else enumerate(value[:2]) if isinstance(value, list) else ()
    for k, v in items:
        yield (k,)
        for rest in _nested_paths(v, depth - 1):
            yield (k, *rest)


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    out = copy.copy(value)
    out[path[0]] = _replace(value[path[0]], path[1:], new)
    return out


# ---------------------------------------------------------------------------- checks
class _TimedClient:
    """Flask's test client, timing each POST (a background callback's start and each of its polls)."""

    def __init__(self, client) -> None:  # noqa: ANN001 - werkzeug's FlaskClient
        self._client = client
        self.seconds: list[float] = []

    def post(self, *args: Any, **kwargs: Any):  # noqa: ANN202
        t0 = time.perf_counter()
        try:
            return self._client.post(*args, **kwargs)
        finally:
            self.seconds.append(time.perf_counter() - t0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _Tally:
    def __init__(self, client: _TimedClient) -> None:
        self.client = client
        self.count = 0
        self.max_s = 0.0
        self.slowest = ""
        self.max_job_s = 0.0
        self.retried = 0
        self.max_final_s = 0.0
        self.problems: list[str] = []
        self.statuses: dict[int, int] = {}
        self.per_callback: dict[str, int] = {}

    def post(self, label: str, send, resend) -> None:  # noqa: ANN001 - thunks returning a Flask response
        """Send, time and check one forged request.

        ``resend`` posts the same request as different bytes (the response cache cannot
        replay it) and only the start of a background job: a slow answer is timed once
        more, so that a moment of contention on a shared machine is not taken for a slow
        path; a slow path is slow both times.
        """
        self.client.seconds = []
        t0 = time.perf_counter()
        r = send()
        total = time.perf_counter() - t0
        seconds = max(self.client.seconds)
        self.count += 1
        self.per_callback[label.split()[0]] = self.per_callback.get(label.split()[0], 0) + 1
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
        if seconds > self.max_s:
            self.max_s, self.slowest = seconds, label
        if len(self.client.seconds) > 1:  # a background job: started, then polled
            self.max_job_s = max(self.max_job_s, total)
            if total > JOB_LIMIT_S:
                self.problems.append(f"{label}: the job took {total:.2f} s")
        text = r.get_data(as_text=True)
        if seconds > LIMIT_S:
            self.retried += 1
            self.client.seconds = []
            resend()
            again = max(self.client.seconds)
            if again > LIMIT_S:
                self.problems.append(f"{label}: {seconds:.2f} s, then {again:.2f} s")
            seconds = again
        self.max_final_s = max(self.max_final_s, seconds)
        if "Traceback" in text or 'File "' in text:
            self.problems.append(f"{label}: traceback in the answer: {text[:200]!r}")
        if r.status_code >= 500:
            self.problems.append(f"{label}: HTTP {r.status_code}: {text[:200]!r}")
        elif r.status_code not in (200, 204) and not 400 <= r.status_code < 500:
            self.problems.append(f"{label}: unexpected HTTP {r.status_code}")
        if "a" * 10_000 in text or len(text) > 20 << 20:
            self.problems.append(f"{label}: the answer echoes the payload ({len(text)} chars)")
        answer = r.get_json(silent=True) if r.status_code == 200 else None
        answer = answer if isinstance(answer, dict) else {}
        if r.status_code == 200 and "response" not in answer and not {"cacheKey", "job"} <= set(answer):
            self.problems.append(f"{label}: a 200 without a Dash response: {text[:200]!r}")


@pytest.fixture(scope="module")
def forged_app(engine, tmp_path_factory):
    cache = tmp_path_factory.mktemp("forged-cache")
    app = create_app(Settings(warm=False, cache_dir=str(cache)), engine=engine)
    return app, [cache, tmp_path_factory.getbasetemp()]


#: The forged inputs are split into this many tests, so that they spread over test processes.
SHARDS = 6


def _shard(app, shard: int) -> dict[str, set[tuple[int, str]]]:
    """``{callback key: (index of an input or state, forged value's name)}`` that ``shard`` sends.

    Every ``SHARDS``-th (callback, input, value) triple, sorted: a callback with many inputs
    (the RDM grid's configuration) or a background one (a job per request) is spread over
    the shards. A callback's malformed envelopes go with its first triple.
    """
    triples = [(key, i, name) for key in sorted(app.callback_map)
               for i in range(len(app.callback_map[key]["inputs"]) + len(app.callback_map[key]["state"])) for name in FORGED]
    mine: dict[str, set[tuple[int, str]]] = {}
    for key, i, name in triples[shard::SHARDS]:
        mine.setdefault(key, set()).add((i, name))
    return mine


@pytest.fixture(scope="module")
def page(forged_app):
    """The served layout's values and the values a real page sends in each tab (warm-up, untimed)."""
    app, _ = forged_app
    dash = DashClient(app)
    layout = _layout_values(dash.client)
    return {tab: _page_values(dash, app, layout, tab) for tab in TABS}


@pytest.mark.parametrize("shard", range(SHARDS))
def test_forged_payloads_to_every_callback(forged_app, page, open_audit, shard) -> None:
    app, app_dirs = forged_app
    by_tab = page
    dash = DashClient(app)
    dash.client = _TimedClient(dash.client)
    tally = _Tally(dash.client)
    huge_sent: set[tuple[str, tuple[Any, ...]]] = set()
    roots = _allowed_roots(*app_dirs)
    mine = _shard(app, shard)
    with open_audit.recording() as opened:
        for key, forged in mine.items():
            spec = app.callback_map[key]
            first = _key_outputs(key)[0]
            slots = [(_ref(i), True) for i in spec["inputs"]] + [(_ref(s), False) for s in spec["state"]]
            base = _base_for(dash, first, slots, by_tab)
            background = bool(spec.get("background"))
            for i, (ref, is_input) in enumerate(slots):
                changed = [ref] if is_input else [slots[0][0]]
                for path in [(), *_nested_paths(base.get(ref), 1 if background else 3)]:
                    for name, value in FORGED.items():
                        if (i, name) not in forged:
                            continue
                        if name in HUGE and path and (background or len(path) > 1 or (ref, path) in huge_sent):
                            continue
                        if name in HUGE:
                            huge_sent.add((ref, path))
                        values = {**base, ref: _replace(base.get(ref), path, value)}
                        label = f"{first} {ref}{''.join(f'[{p!r}]' for p in path)}={name}"
                        body = dash.payload(first, values, changed)
                        tally.post(
                            label,
                            lambda values=values, changed=changed, first=first: dash.call(first, values, changed),
                            lambda body=body: _post(dash, json.dumps(body, separators=(",", ":")).encode()),
                        )
            for label, body in _malformed(dash, first, base) if (0, next(iter(FORGED))) in forged else ():
                send, resend = (lambda body=body: _post(dash, body)), (lambda body=body: _post(dash, body + b" "))
                tally.post(f"{first} malformed: {label}", send, resend)
        canary = Path(app_dirs[0]) / "canary.txt"
        canary.write_text("the audit hook sees this open")
        recorded = list(opened)
        outside = _outside(opened, roots)
    assert str(canary) in recorded, "the audit hook recorded nothing"
    assert _outside(["/etc/passwd", str(canary)], roots) == ["/etc/passwd"]
    print(
        f"\nforged payloads: {tally.count}; slowest answer {tally.max_s * 1000:.0f} ms ({tally.slowest}); "
        f"{tally.retried} over {LIMIT_S:g} s timed again, slowest after that {tally.max_final_s * 1000:.0f} ms; "
        f"slowest background job {tally.max_job_s:.2f} s; statuses {tally.statuses}; "
        f"per callback {tally.per_callback}"
    )
    assert set(tally.per_callback) == {_key_outputs(k)[0] for k in mine}
    assert tally.count >= 100
    assert not outside, f"files opened outside the app's folders: {outside[:20]}"
    assert not tally.problems, f"{len(tally.problems)} bad answers of {tally.count}:\n" + "\n".join(tally.problems[:40])


def _post(dash: DashClient, body: bytes):
    """POST raw bytes (one request: a background job's handle is not polled)."""
    return dash.client.post(ENDPOINT, data=body, content_type="application/json")


def _base_for(dash: DashClient, first: str, slots: list[tuple[str, bool]], by_tab: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The page values of the first tab in which this callback updates its first output (warm-up, untimed)."""
    for values in by_tab.values():
        r = dash.call(first, values, [slots[0][0]])
        body = (r.get_json(silent=True) or {}) if r.status_code == 200 else {}
        cid, prop = first.rsplit(".", 1)
        if prop in (body.get("response") or {}).get(cid, {}):
            return values
    return by_tab[TABS[0]]


def _malformed(dash: DashClient, first: str, base: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    real = dash.payload(first, base)
    yield "not JSON", b"this is not JSON {"
    yield "JSON array", b"[1, 2, 3]"
    yield "JSON string", b'"../../etc/passwd"'
    yield "JSON null", b"null"
    yield "empty object", b"{}"
    yield "nested past the parser", b"[" * 100_000 + b"]" * 100_000
    for k in real:
        yield f"no {k}", json.dumps({kk: v for kk, v in real.items() if kk != k}).encode()
    yield "unknown output", json.dumps({**real, "output": "no-such-graph.figure"}).encode()
    yield "path as output", json.dumps({**real, "output": "../../etc/passwd"}).encode()
    yield "one input too few", json.dumps({**real, "inputs": real["inputs"][:-1]}).encode()
    yield "one input too many", json.dumps({**real, "inputs": real["inputs"] + real["inputs"][:1]}).encode()
    yield "input not an object", json.dumps({**real, "inputs": ["abc"] + real["inputs"][1:]}).encode()
    yield "input without property", json.dumps({**real, "inputs": [{"id": "x"}] + real["inputs"][1:]}).encode()
    unknown = {"id": "no-such", "property": "value", "value": 1}
    yield "input of an unknown component", json.dumps({**real, "inputs": [unknown] + real["inputs"][1:]}).encode()
    yield "inputs not a list", json.dumps({**real, "inputs": {"a": 1}}).encode()
    yield "changedPropIds numbers", json.dumps({**real, "changedPropIds": [1, 2]}).encode()
    yield "changedPropIds unknown", json.dumps({**real, "changedPropIds": ["no-such.value"]}).encode()
    yield "changedPropIds a string", json.dumps({**real, "changedPropIds": "abc"}).encode()
    yield "outputs of an unknown component", json.dumps({**real, "outputs": {"id": "no-such", "property": "value"}}).encode()
    yield "outputs a string", json.dumps({**real, "outputs": "abc"}).encode()
    yield "NaN everywhere", json.dumps({**real, "inputs": [{**i, "value": float("nan")} for i in real["inputs"]]}).encode()
