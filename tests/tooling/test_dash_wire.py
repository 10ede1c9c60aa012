"""The one Dash wire client: bodies from the callback graph, answers, background jobs, the real app's graph."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.dash_wire import (
    CallbackGraph,
    DashClient,
    WireError,
    check_answer,
    decode,
    job_handle,
    layout_components,
    message_of,
    poll_body,
    poll_job,
    split_outputs,
    still_running,
)


def _dep(outputs, inputs, state=(), background=None):
    out = outputs[0] if len(outputs) == 1 else ".." + "...".join(outputs) + ".."
    split = lambda p: {"id": p.split(".")[0], "property": p.split(".")[1]}  # noqa: E731
    return {"output": out, "inputs": [split(i) for i in inputs], "state": [split(s) for s in state],
            "background": background}


DEPS = [
    _dep(["url.search", "view.data"], ["url.search", "model.value"]),
    _dep(["rdm-grid.figure", "rdm-message.children"], ["view.data", "selection.data"]),
    _dep(["embed-request.data"], ["view.data", "selection.data"]),
    _dep(["embed-grid.figure", "embed-message.children"], ["embed-request.data"], background={"interval": 250}),
    _dep(["hover-panel.children"], ["rdm-grid.hoverData"], state=["view.data"]),
]


def test_split_outputs_of_one_and_of_several():
    assert split_outputs("a.b") == [("a", "b")]
    assert split_outputs("..a.x...b-c.y.z..") == [("a", "x"), ("b-c.y", "z")]


def test_payload_is_what_the_renderer_posts():
    graph = CallbackGraph(DEPS)
    one = graph.payload("hover-panel.children", {"rdm-grid.hoverData": {"points": []}, "view.data": {"tab": "rdms"}})
    assert one == {
        "output": "hover-panel.children",
        "outputs": {"id": "hover-panel", "property": "children"},
        "inputs": [{"id": "rdm-grid", "property": "hoverData", "value": {"points": []}}],
        "state": [{"id": "view", "property": "data", "value": {"tab": "rdms"}}],
        "changedPropIds": ["rdm-grid.hoverData"],
    }
    multi = json.loads(graph.body("rdm-grid.figure", {"view.data": {}}, changed=[]))
    assert multi["output"] == "..rdm-grid.figure...rdm-message.children.."
    assert multi["outputs"] == [{"id": "rdm-grid", "property": "figure"}, {"id": "rdm-message", "property": "children"}]
    assert [i["value"] for i in multi["inputs"]] == [{}, None] and multi["changedPropIds"] == []
    with pytest.raises(WireError, match="no callback with first output nowhere.figure; it has: embed-grid.figure"):
        graph.payload("nowhere.figure", {})


def test_dict_ids_are_named_by_sorted_json_and_sent_as_objects():
    dep = {"output": "..url.search...view.data..", "state": [],
           "inputs": [{"id": "url", "property": "search"}, {"id": {"type": "preset", "index": 0}, "property": "n_clicks"}]}
    graph = CallbackGraph([dep])
    button = '{"index":0,"type":"preset"}.n_clicks'
    assert graph["url.search"].inputs == ("url.search", button)
    body = graph.payload("url.search", {button: 3}, changed=[button])
    assert body["inputs"][1] == {"id": {"type": "preset", "index": 0}, "property": "n_clicks", "value": 3}
    assert body["changedPropIds"] == [button]
    found = layout_components({"type": "Button", "props": {"id": {"type": "preset", "index": 0}, "n_clicks": 0}})
    assert list(found) == ['{"index":0,"type":"preset"}']


def test_graph_finds_the_chain_through_a_gate_to_a_background_figure():
    graph = CallbackGraph(DEPS)
    chain = graph.chain("view.data", "embed-grid.figure")
    assert [cb.key for cb in chain] == ["embed-request.data", "embed-grid.figure"]
    assert chain[-1].interval_ms == 250 and chain[0].interval_ms is None
    assert [cb.key for cb in graph.chain("view.data", "rdm-grid.figure")] == ["rdm-grid.figure"]
    assert {cb.key for cb in graph.triggered_by({"view.data"})} == {"rdm-grid.figure", "embed-request.data"}
    with pytest.raises(WireError, match="no callback chain"):
        graph.chain("view.data", "nowhere.figure")


def test_answers_handles_and_polls_are_told_apart():
    outputs = (("rdm-grid", "figure"), ("rdm-message", "children"))
    good = json.dumps({"multi": True, "response": {"rdm-grid": {"figure": {}}, "rdm-message": {"children": None}}})
    told = json.dumps({"multi": True, "response": {"rdm-grid": {"figure": {}}, "rdm-message": {"children": "boom"}}})
    assert check_answer(200, good.encode(), outputs) is None
    assert check_answer(200, told.encode(), outputs) == 'message: "boom"'
    assert check_answer(204, b"", outputs) == "HTTP 204" and check_answer(200, b"<html>", outputs) == "not a Dash response"
    assert check_answer(200, b'{"response": {"rdm-message": {}}}', outputs) == "no rdm-grid.figure in the response"
    answer = {"x-message": {"children": ["a"]}, "nodes-hint": {"children": "steps: conv2"}}
    assert message_of(answer, [("y", "figure"), ("nodes-hint", "children"), ("x-message", "children")]) == 'message: ["a"]'
    assert message_of(answer, [("nodes-hint", "children")]) is None  # a hint is content, not a message

    started = json.dumps({"cacheKey": "k.sig", "job": "123.sig", "cancel": []}).encode()
    assert job_handle(200, started) == {"cacheKey": "k.sig", "job": "123.sig"}
    assert job_handle(200, good.encode()) is None and job_handle(500, started) is None
    assert still_running(200, json.dumps({"multi": True, "progress": {"p": 1}}).encode())
    assert not still_running(200, good.encode()) and not still_running(204, b"")


def test_poll_job_nulls_the_values_and_polls_until_an_answer():
    body = CallbackGraph(DEPS).body("embed-grid.figure", {"embed-request.data": {"view": 1}})
    sent = []

    def send(blank, query):
        sent.append((json.loads(blank), query))
        done = len(sent) == 3
        return 200, json.dumps({"response": {"embed-grid": {"figure": 1}}} if done else {"progress": 1}).encode()

    status, data, polls = poll_job(send, body, {"cacheKey": "k", "job": "1"}, 0.0, 10.0, sleep=lambda s: None)
    assert (status, polls) == (200, 3) and json.loads(data)["response"]["embed-grid"]["figure"] == 1
    assert all(q == {"cacheKey": "k", "job": "1"} for _, q in sent)
    assert all(b == json.loads(poll_body(body)) for b, _ in sent) and sent[0][0]["inputs"][0]["value"] is None
    with pytest.raises(TimeoutError, match="background job not done after -1 s"):
        poll_job(lambda b, q: (200, b"{}"), body, {"cacheKey": "k", "job": "1"}, 0.0, -1.0, sleep=lambda s: None)


def test_layout_components_and_decode():
    layout = {"props": {"children": [{"type": "Dropdown", "props": {"id": "model", "options": [1, 2]}},
                                     {"type": "Div", "props": {"children": {"type": "Input",
                                                                           "props": {"id": "n-rdm", "value": 5}}}}]},
              "type": "Div"}
    found = layout_components(layout)
    assert found == {"model": ("Dropdown", {"id": "model", "options": [1, 2]}),
                     "n-rdm": ("Input", {"id": "n-rdm", "value": 5})}
    import base64

    arr = np.arange(6, dtype="f4").reshape(2, 3)
    typed = {"dtype": "f4", "bdata": base64.b64encode(arr.tobytes()).decode(), "shape": "2, 3"}
    assert np.array_equal(decode(typed), arr) and np.array_equal(decode([1, 2]), [1, 2])


# ---------------------------------------------------------------------------- the real app
@pytest.fixture(scope="module")
def dash(engine):
    from repgeom.settings import Settings
    from repgeom.ui import create_app

    return DashClient(create_app(Settings(warm=False), engine=engine))


def test_the_graph_read_over_http_matches_the_apps_callback_map(dash):
    callback_map = dash.app.callback_map
    assert {cb.output for cb in dash.graph.callbacks.values()} == set(callback_map)
    # the browser's own callbacks are told apart, and no chain follows them
    assert "viewport.data" in dash.graph.browser_side and "graph-configs.data" not in dash.graph.browser_side
    assert not {cb.output for cb in dash.graph.triggered_by({"url.search", "graph-configs.data"})} & dash.graph.browser_side
    for cb in dash.graph.callbacks.values():
        spec = callback_map[cb.output]
        assert list(cb.inputs) == [f"{i['id']}.{i['property']}" for i in spec["inputs"]]
        assert list(cb.state) == [f"{s['id']}.{s['property']}" for s in spec["state"]]


def test_every_tab_the_load_test_visits_has_a_chain_from_the_view(dash):
    from benchmarks.loadtest import ACTIONS

    targets = {"rdms": "rdm-grid.figure", "embeddings": "embed-grid.figure", "paths": "path-graph.figure",
               "models": "models-table.children"}  # as benchmarks/locustfile.py TARGET (which imports gevent)
    for target in targets.values():
        assert dash.graph.chain("view.data", target)[-1].key == target
    sync = dash.graph["url.search"]
    fields = ("tab", "model", "nodes", "n_rdm", "n_embed", "condition", "epsilon", "rdm_method", "embed_methods")
    assert {f.replace("_", "-") + ".value" for f in fields} <= set(sync.inputs), sync.inputs
    assert any(p.endswith(".n_clicks") for p in sync.inputs), "no preset button (feedforward vs recurrent)"
    assert "nodes.options" in sync.output_props
    assert len(ACTIONS) == 9


def test_the_client_renders_the_first_view_and_a_background_figure(dash, engine):
    first = dash.outputs("url.search", {"url.search": ""}, changed=[])
    view = first["view.data"]
    assert view["tab"] == "rdms" and view["model"] and "nodes.options" in first
    request = dash.outputs("embed-request.data", {"view.data": {**view, "tab": "embeddings", "n_embed": 3,
                                                                 "embed_methods": ["pca"]}, "selection.data": []})
    out = dash.outputs("embed-grid.figure", request)
    assert dash.polls >= 1 and out["embed-grid.figure"]["data"]
