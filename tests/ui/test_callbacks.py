"""Callbacks through Dash's real endpoint: good inputs draw, bad inputs give a message, never a 500."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from repgeom.ui.ids import CONTROL_IDS, ID
from tests.dash_client import decode
from repgeom.ui.state import View


def _view(engine, **changes):
    return View.parse(engine, {**View.default(engine).controls(), **changes}).controls()


def test_callback_graph(app):
    outputs = {k.strip(".").split("...")[0] for k in app.callback_map}
    assert {"url.search", "rdm-grid.figure", "embed-grid.figure", "path-graph.figure", "models-table.children",
            "selection.data", "pair-graph.figure", "hover-panel.children", "download.data"} <= outputs
    sync = app.callback_map[next(k for k in app.callback_map if k.startswith("..url.search"))]
    inputs = {f"{i['id']}.{i['property']}" for i in sync["inputs"]}
    assert {f"{cid}.value" for cid in CONTROL_IDS.values()} <= inputs and "url.search" in inputs
    for key, spec in app.callback_map.items():
        if key.startswith(("..rdm-grid.figure", "..path-graph.figure", "..models-table.children", "embed-request.data")):
            assert {"id": ID.VIEW, "property": "data"} in spec["inputs"]
    # the embeddings are a background job with progress and cancel, started only through the gate
    embed = app.callback_map[next(k for k in app.callback_map if k.startswith("..embed-grid.figure"))]
    assert embed["inputs"] == [{"id": ID.EMBED_REQUEST, "property": "data"}]
    assert embed["background"]["cancel"] == [{"id": ID.EMBED_CANCEL, "property": "n_clicks"}]
    assert [p.component_id for p in embed["background"]["progress"]] == [ID.EMBED_PROGRESS] * 2 + [ID.EMBED_PROGRESS_TEXT]


def test_page_and_health(app):
    c = app.server.test_client()
    assert c.get("/").status_code == 200
    health = c.get("/healthz")
    assert health.status_code == 200 and health.get_json()["status"] == "ok"
    assert "version" not in health.get_data(as_text=True).lower()


def test_initial_sync_parses_the_url_into_controls_and_view(dash, engine):
    values = {"url.search": "?model=feedforward&nodes=conv1,fc2&n_rdm=5"}
    out = dash.outputs("url.search", values, changed=[])
    assert out["model.value"] == "feedforward" and out["nodes.value"] == ["conv1", "fc2"]
    assert out["view.data"]["n_rdm"] == 5
    assert [o["value"] for o in out["nodes.options"]][:3] == ["input", "conv1", "relu"]


def test_bad_link_falls_back_to_defaults_with_a_message(dash):
    out = dash.outputs("url.search", {"url.search": "?model=alexnet"}, changed=[])
    assert out["model.value"] == "recurrent"
    assert "unknown model 'alexnet'" in json.dumps(out["global-message.children"])


def test_control_change_updates_url_and_view(dash, engine):
    values = {f"{cid}.value": v for cid, v in zip(CONTROL_IDS.values(), _view(engine, n_rdm=7).values())}
    values["url.search"] = ""
    out = dash.outputs("url.search", values, changed=["n-rdm.value"])
    assert urllib.parse.parse_qs(out["url.search"].lstrip("?")) == {"n_rdm": ["7"]}
    assert out["view.data"]["n_rdm"] == 7


def test_model_change_resets_nodes_to_that_models_defaults(dash, engine):
    controls = _view(engine)
    controls["model"] = "feedforward"  # nodes still the recurrent steps
    values = {f"{cid}.value": controls[name] for name, cid in CONTROL_IDS.items()}
    out = dash.outputs("url.search", values, changed=["model.value"])
    assert out["nodes.value"] == ["conv1", "conv2", "fc1", "fc2"]
    assert "model=feedforward" in out["url.search"]


def test_ff_vs_rec_button_sets_the_path_models(dash, engine):
    values = {f"{cid}.value": v for cid, v in zip(CONTROL_IDS.values(), _view(engine).values())}
    values["ff-vs-rec.n_clicks"] = 1
    out = dash.outputs("url.search", values, changed=["ff-vs-rec.n_clicks"])
    assert out["path-models.value"] == ["feedforward", "recurrent"] and out["tab.value"] == "paths"


def test_rdm_figures_for_the_default_view(dash, engine):
    out = dash.outputs("rdm-grid.figure", {"view.data": _view(engine, n_rdm=4), "selection.data": []})
    grid = out["rdm-grid.figure"]
    assert [t["type"] for t in grid["data"]] == ["heatmap"] * 5
    assert decode(grid["data"][0]["z"]).shape == (40, 40)
    assert out["rdm-message.children"] == ""
    assert [f["name"] for f in out["rdm-slider.figure"]["frames"]] == ["conv2", "conv2_1", "conv2_2", "conv2_3", "conv2_4"]


def test_inactive_tab_is_not_computed(dash, engine):
    assert dash.outputs("embed-request.data", {"view.data": _view(engine), "selection.data": []}) == {}
    assert dash.outputs("embed-grid.figure", {"embed-request.data": {"view": _view(engine), "selection": []}}) == {}


def test_path_figure(dash, engine):
    out = dash.outputs("path-graph.figure", {"view.data": _view(engine, tab="paths", n_embed=5, path_models=["feedforward", "recurrent"])})
    fig = out["path-graph.figure"]
    names = [t.get("name") for t in fig["data"]]
    assert "feedforward" in names and "recurrent" in names and "labels" in names
    assert len(fig["frames"]) == 22


def test_embeddings_and_models_tab(dash, engine):
    view = _view(engine, tab="embeddings", n_embed=3, embed_methods=["pca", "mds"], nodes=["conv2", "conv2_4"])
    request = dash.outputs("embed-request.data", {"view.data": view, "selection.data": [7]})["embed-request.data"]
    assert request == {"view": view, "selection": [7]}
    out = dash.outputs("embed-grid.figure", {"embed-request.data": request})
    assert dash.polls >= 1, "the embeddings ran as a background job and were polled for"
    assert len([t for t in out["embed-grid.figure"]["data"] if t["name"] == "0"]) == 4
    assert len(out["embed-anim.figure"]["frames"]) == 2
    out = dash.outputs("models-table.children", {"view.data": _view(engine, tab="models", n_rdm=3)})
    assert "2,650" in json.dumps(out["models-table.children"])
    assert len(out["metrics-graph.figure"]["data"]) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [({"model": "../../etc/passwd"}, "unknown model"), ({"n_rdm": 10**6}, "from 1 to 100"), ({"epsilon": "x"}, "epsilon"), ({"nodes": ["nope"]}, "unknown node")],
)
def test_forged_view_gives_a_message_not_an_error(dash, engine, change, message):
    forged = {**_view(engine), **change}
    r = dash.call("rdm-grid.figure", {"view.data": forged, "selection.data": []})
    assert r.status_code == 200
    body = r.get_json()["response"]
    assert message in json.dumps(body["rdm-message"]["children"])
    assert "rdm-grid" not in body  # the figure is left as it was


def test_clicks_select_a_pair_and_the_pair_panel_follows_it(dash, engine):
    view = _view(engine, n_rdm=20)
    out = dash.outputs("selection.data", {"rdm-grid.clickData": {"points": [{"x": 95, "y": 80, "curveNumber": 0}]}, "view.data": view, "selection.data": []}, changed=["rdm-grid.clickData"])
    stim = engine.stimuli(engine.spec(20))
    sel = out["selection.data"]
    assert sel == [int(stim.indices[80]), int(stim.indices[95])]
    pair = dash.outputs("pair-graph.figure", {"selection.data": sel, "view.data": view})
    fig = pair["pair-graph.figure"]
    assert decode(fig["data"][0]["y"]).shape == (22,) and "digit 4" in fig["layout"]["title"]["text"]
    cleared = dash.outputs("selection.data", {"clear-selection.n_clicks": 1, "view.data": view, "selection.data": sel}, changed=["clear-selection.n_clicks"])
    assert cleared["selection.data"] == []


def test_hover_shows_both_images(dash, engine):
    view = _view(engine)
    out = dash.outputs("hover-panel.children", {"rdm-grid.hoverData": {"points": [{"x": 3, "y": 150, "curveNumber": 4, "z": 0.5}]}, "view.data": view}, changed=["rdm-grid.hoverData"])
    text = json.dumps(out["hover-panel.children"])
    assert text.count("data:image/png;base64") == 2 and "digit 0" in text and "digit 7" in text and "conv2_4" in text
    real = engine.rdm("recurrent", "conv2_4", engine.spec(20), "correlation").matrix[150, 3]
    assert f"{real:.4g}" in text


@pytest.mark.parametrize("event", [None, {}, {"points": "x"}, {"points": [{"x": -1, "y": 10**9}]}, {"points": [{"x": "a"}]}, {"points": [[1, 2]]}])
def test_malformed_click_and_hover_events_are_ignored(dash, engine, event):
    view = _view(engine)
    assert dash.outputs("selection.data", {"rdm-grid.clickData": event, "view.data": view, "selection.data": []}, changed=["rdm-grid.clickData"]) == {}
    assert dash.outputs("hover-panel.children", {"rdm-grid.hoverData": event, "view.data": view}, changed=["rdm-grid.hoverData"]) == {}


def test_download_is_the_engine_export(dash, engine, tmp_path):
    import base64
    import io

    import numpy as np

    out = dash.outputs("download.data", {"download-button.n_clicks": 1, "view.data": _view(engine, n_rdm=2, nodes=["conv2", "conv2_4"])}, changed=["download-button.n_clicks"])
    data = out["download.data"]
    assert data["filename"].endswith(".npz") and data["base64"]
    z = np.load(io.BytesIO(base64.b64decode(data["content"])))
    assert z["rdm/recurrent/conv2"].shape == (20, 20) and list(z["path/names"])[-1] == "labels"


def test_large_rdms_are_sent_as_block_means_each_figure_under_3mb(dash, engine):
    view = _view(engine, n_rdm=100)  # N = 1000 stimuli, 5 nodes
    r = dash.call("rdm-grid.figure", {"view.data": view, "selection.data": []})
    assert r.status_code == 200
    body = r.get_json()["response"]
    grid = body["rdm-grid"]["figure"]
    assert len(json.dumps(grid)) < 3_000_000 and len(json.dumps(body["rdm-slider"]["figure"])) < 3_000_000
    side = decode(grid["data"][0]["z"]).shape[0]
    assert side < 1000 and side * side * 6 <= 250_000
    assert "block means" in grid["layout"]["title"]["text"]
    # a click on a block selects the first stimuli of the two blocks
    out = dash.outputs("selection.data", {"rdm-grid.clickData": {"points": [{"x": side - 1, "y": 0}]}, "view.data": view, "selection.data": []}, changed=["rdm-grid.clickData"])
    stim = engine.stimuli(engine.spec(100))
    assert out["selection.data"][0] == int(stim.indices[0]) and stim.labels[list(stim.indices).index(out["selection.data"][1])] == 9


def test_repeated_requests_are_replayed_byte_for_byte(engine):
    from repgeom.settings import Settings
    from repgeom.ui import create_app
    from tests.dash_client import DashClient

    app = create_app(Settings(warm=False, response_cache_bytes=64 << 20), engine=engine)
    client = DashClient(app)
    body = {"view.data": _view(engine, n_rdm=3), "selection.data": []}
    first, second = client.call("rdm-grid.figure", body), client.call("rdm-grid.figure", body)
    assert first.status_code == second.status_code == 200 and first.data == second.data
    hits = [f for f in app.server.before_request_funcs[None] if f.__name__ == "_replay"]
    assert hits, "the response cache is installed"
    # a different body is computed afresh, and a forged one is not cached as a success
    other = client.call("rdm-grid.figure", {"view.data": _view(engine, n_rdm=4), "selection.data": []})
    assert other.data != first.data
    forged = {"view.data": {**_view(engine), "model": "nope"}, "selection.data": []}
    assert "unknown model" in client.call("rdm-grid.figure", forged).get_data(as_text=True)


def test_cache_folder_is_shared_between_app_instances(engine, tmp_path):
    from repgeom.settings import Settings
    from repgeom.ui import create_app
    from tests.dash_client import DashClient

    body = {"view.data": _view(engine, n_rdm=2), "selection.data": []}
    first = DashClient(create_app(Settings(warm=False, cache_dir=str(tmp_path)), engine=engine)).call("rdm-grid.figure", body)
    assert first.headers["X-Repgeom-Cache"] == "miss"
    files = list(tmp_path.glob("responses-*/*.bin"))
    assert len(files) == 1 and files[0].read_bytes() == first.data
    # a second worker (another app) replays the file: plant a marker to prove it was read
    files[0].write_bytes(first.data + b" ")
    second = DashClient(create_app(Settings(warm=False, cache_dir=str(tmp_path)), engine=engine)).call("rdm-grid.figure", body)
    assert second.data == first.data + b" " and second.headers["X-Repgeom-Cache"] == "shared"


def test_shared_cache_folder_is_bounded(tmp_path):
    import time

    from repgeom.shared_cache import FolderStore
    from repgeom.ui.response_cache import ResponseCache

    store = FolderStore(tmp_path, max_bytes=3000)
    cache = ResponseCache(1 << 20, store)
    for i in range(10):
        cache.put(bytes([i]) * 32, b"x" * 1000)
        time.sleep(0.01)  # distinct modification times
    sizes = sum(f.stat().st_size for f in tmp_path.glob("*.bin"))
    assert sizes <= 3000 and store.get((bytes([9]) * 32).hex()) is not None and store.get((bytes([0]) * 32).hex()) is None
    assert not list(tmp_path.glob(".*.part")), "no half-written files are left behind"


def test_figure_downloads_switch_between_png_and_svg(dash):
    out = dash.outputs("rdm-grid.config", {"image-format.value": "svg"})
    assert len(out) == 7 and all(v["toImageButtonOptions"]["format"] == "svg" for v in out.values())
    assert dash.outputs("rdm-grid.config", {"image-format.value": "exe"}) == {}


def test_a_failed_view_is_not_replayed_from_the_cache(engine, monkeypatch):
    from repgeom.settings import Settings
    from repgeom.ui import create_app, views
    from tests.dash_client import DashClient

    app = create_app(Settings(warm=False, response_cache_bytes=64 << 20), engine=engine)
    client = DashClient(app)
    body = {"view.data": _view(engine, n_rdm=6), "selection.data": []}
    real = views.rdm_views
    monkeypatch.setattr(views, "rdm_views", lambda *a, **k: 1 / 0)  # a bug, once
    failed = client.call("rdm-grid.figure", body)
    assert failed.status_code == 200 and "Something went wrong" in failed.get_data(as_text=True)
    assert "ZeroDivisionError" not in failed.get_data(as_text=True)
    monkeypatch.setattr(views, "rdm_views", real)
    again = client.call("rdm-grid.figure", body)
    assert again.headers["X-Repgeom-Cache"] == "miss" and "Something went wrong" not in again.get_data(as_text=True)
