"""Callbacks as plain functions (figures' traces, messages for bad input), and their wiring through Dash's endpoint."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import urllib.parse

import numpy as np
import plotly.graph_objects as go
import pytest
from dash import html, no_update

from repgeom.ui import views
from repgeom.ui.callbacks import download, embeddings, models, paths, rdms, selection, sync
from repgeom.ui.callbacks.common import BUG_MESSAGE, guarded, parse_selection
from repgeom.ui.ids import CONTROL_IDS, GRAPH_IDS, ID, JOBS, preset_id
from repgeom.ui.state import View, default_nodes
from tests.dash_client import DashClient


def _view(engine, **changes):
    return View.parse(engine, {**View.default(engine).controls(), **changes}).controls()


def _text(component) -> str:
    """Everything a Dash component tree (or a plain value) would show, as one string."""
    return json.dumps(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component, default=_plain, ensure_ascii=False)


def _plain(value):
    return value.to_plotly_json() if hasattr(value, "to_plotly_json") else str(value)


def _sync_out(result) -> dict:
    head = dict(zip(["url", "view", "node_options", "node_hint", "message"], result[:5], strict=False))
    return {**head, **dict(zip(sync.CONTROLS, result[5:], strict=False))}


# ---------------------------------------------------------------------------- sync: URL, controls, view store
def test_sync_parses_the_url_into_controls_and_view(engine):
    out = _sync_out(sync.sync(engine, ID.URL, "?model=feedforward&nodes=conv1,fc2&n_rdm=5", {}))
    assert out["model"] == "feedforward" and out["nodes"] == ["conv1", "fc2"]
    assert out["view"]["n_rdm"] == 5 and out["url"] is no_update and out["message"] == ""
    assert [o["value"] for o in out["node_options"]] == engine.nodes("feedforward")
    assert out["node_hint"] == ""  # a feedforward net has no recurrent steps
    assert _sync_out(sync.sync(engine, ID.URL, "", {}))["node_hint"] == "recurrent steps: conv2, conv2_1, conv2_2, conv2_3, conv2_4"


def test_sync_falls_back_to_the_defaults_on_a_bad_link_with_a_warning(engine):
    out = _sync_out(sync.sync(engine, None, "?model=alexnet", {}))
    assert out["view"] == View.default(engine).controls()
    assert "The link's settings were not used: unknown model 'alexnet'" in _text(out["message"]) and "warning" in _text(out["message"])


def test_sync_writes_a_control_change_to_the_url(engine):
    out = _sync_out(sync.sync(engine, ID.N_RDM, "", _view(engine, n_rdm=7)))
    assert urllib.parse.parse_qs(out["url"].lstrip("?")) == {"n_rdm": ["7"]}
    assert out["view"]["n_rdm"] == 7 and out["n_rdm"] is no_update  # the control already holds it


def test_sync_resets_the_nodes_when_the_model_changes(engine):
    controls = {**_view(engine), "model": "feedforward"}  # nodes still the recurrent steps
    out = _sync_out(sync.sync(engine, ID.MODEL, "", controls))
    assert out["nodes"] == list(default_nodes(engine, "feedforward")) == ["conv1", "conv2", "fc1", "fc2"]
    assert "model=feedforward" in out["url"] and out["node_hint"] == ""


@pytest.mark.parametrize(("change", "message"), [({"epsilon": 2.0}, "epsilon must be a number from 0 to 1"), ({"model": ["x"]}, "unknown model 'list'")])
def test_sync_refuses_a_bad_control_and_leaves_everything(engine, change, message):
    trigger = ID.MODEL if "model" in change else ID.EPSILON
    out = sync.sync(engine, trigger, "", {**_view(engine), **change})
    assert out[:4] == (no_update,) * 4 and all(v is no_update for v in out[5:])
    assert message in _text(out[4])


def test_a_preset_button_sets_the_path_models_from_the_manifest(engine):
    assert (engine.presets[0].label, engine.presets[0].models) == ("feedforward vs recurrent", ("feedforward", "recurrent"))
    out = _sync_out(sync.sync(engine, preset_id(0), "", _view(engine)))
    assert out["path_models"] == ["feedforward", "recurrent"] and out["tab"] == "paths"
    assert "path_models=feedforward%2Crecurrent" in out["url"]
    bad = sync.sync(engine, {"type": ID.PRESET, "index": 7}, "", _view(engine))
    assert bad[1] is no_update and f"no such preset; there are {len(engine.presets)}" in _text(bad[4])


def test_a_preset_with_a_model_that_did_not_load_is_refused(engine, monkeypatch):
    from repgeom.core.checkpoints import Preset

    monkeypatch.setattr(engine, "presets", (Preset("ff vs resnet", ("feedforward", "resnet18")),))
    out = sync.sync(engine, preset_id(0), "", _view(engine))
    assert out[1] is no_update and "preset 'ff vs resnet' needs resnet18, which did not load" in _text(out[4])


# ---------------------------------------------------------------------------- views
def test_rdm_figures_for_the_default_view(engine):
    grid, slider, message = rdms.rdm_figures(engine, _view(engine, n_rdm=4), [])
    assert isinstance(grid, go.Figure) and [t.type for t in grid.data] == ["heatmap"] * 5
    assert np.asarray(grid.data[0].z).shape == (40, 40) and message == ""
    assert [f.name for f in slider.frames] == ["conv2", "conv2_1", "conv2_2", "conv2_3", "conv2_4"]


def test_inactive_tabs_are_not_computed(engine):
    view = _view(engine)  # the RDM tab
    assert rdms.rdm_figures(engine, None, []) == (no_update,) * 3
    assert paths.path_figure(engine, view) == (no_update,) * 5
    assert paths.survive_figure(engine, view) == (no_update,) * 2
    assert models.models_panel(engine, view) == (no_update,) * 2
    assert models.metrics_gate(engine, view) == (no_update,) * 4
    assert models.metrics_job(engine, print, {"view": view}) == (no_update,) * 2
    assert embeddings.embedding_request(engine, view, []) is no_update
    assert embeddings.embedding_figures(engine, print, {"view": view, "selection": []}) == (no_update,) * 4
    assert rdms.difference_gate(engine, {**view, "tab": "paths"}) == (no_update,) * 4
    assert rdms.difference_job(engine, print, {"view": {**view, "tab": "paths"}}) == (no_update,) * 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "../../etc/passwd"}, "unknown model"),
        ({"n_rdm": 10**6}, "from 1 to 100"),
        ({"epsilon": "x"}, "epsilon"),
        ({"nodes": ["nope"]}, "unknown node"),
    ],
)
def test_a_forged_view_gives_a_message_and_leaves_the_figures(engine, change, message):
    grid, slider, text = rdms.rdm_figures(engine, {**_view(engine), **change}, [])
    assert grid is no_update and slider is no_update
    assert isinstance(text, html.Div) and message in _text(text) and "error" in text.className
    assert "must be an object" in _text(rdms.rdm_figures(engine, ["not", "a", "view"], [])[2])


def test_a_bug_gives_a_generic_message_and_a_log_line(engine, monkeypatch, caplog):
    monkeypatch.setattr(views, "rdm_views", lambda *a, **k: 1 / 0)
    grid, slider, text = rdms.rdm_figures(engine, _view(engine), [])
    assert grid is no_update and BUG_MESSAGE in _text(text) and "ZeroDivisionError" not in _text(text)
    assert "callback rdm_figures failed" in caplog.text and "ZeroDivisionError" in caplog.text


def test_guard_puts_the_message_at_its_place():
    from repgeom.core.errors import RepgeomError

    @guarded(4, 1)
    def fails():
        raise RepgeomError("n must be 3")

    out = fails()
    assert len(out) == 4 and out[0] is no_update and out[2] is no_update and "n must be 3" in _text(out[1])


def test_path_figure(engine):
    fig, to_labels, shepard, note, message = paths.path_figure(engine, _view(engine, tab="paths", n_embed=5, path_models=["feedforward", "recurrent"]))
    names = [t.name for t in fig.data]
    assert "feedforward" in names and "recurrent" in names and "labels" in names and message == ""
    assert len(fig.frames) == 22
    # bootstrap ellipses and the intervals on hover; the seed band of feedforward (it has a second seed)
    assert any(t.type == "scatter" and t.mode == "lines" and "95 % ellipses" in t.name for t in fig.data)
    assert "95 % CI" in str(fig.data[0].customdata[0][1]) and "20 bootstrap samples" in fig.layout.title.text
    line = next(t for t in fig.data if t.name == "recurrent")
    assert "to labels" in line.customdata[0][1] and "95 % CI" in line.customdata[0][1] and "nearest on the plot" in line.customdata[0][1]
    assert "feedforward ± seed variability" in [t.name for t in to_labels.data]
    assert "feedforward_seed2" in _text(note) and "20 bootstrap samples" in _text(note)
    assert shepard.data[0].type == "scatter" and "rad" in shepard.layout.xaxis.title.text


def test_embeddings_request_gate_and_job_report_progress(engine):
    view = _view(engine, tab="embeddings", n_embed=3, embed_methods=["pca", "mds"], nodes=["conv2", "conv2_4"])
    request = embeddings.embedding_request(engine, view, [7, True, -1, "x"])
    default_size = {"width": 1366, "height": 768}  # no window size reported
    assert request == {"view": view, "selection": [7], "highlight": [], "group": None, "viewport": default_size}
    assert embeddings.embedding_request(engine, {**view, "n_embed": -5}, []) is no_update  # a bad view starts no job
    seen = []
    grid, anim, shepard, message = embeddings.embedding_figures(engine, seen.append, request)
    assert len([t for t in grid.data if t.name == "0"]) == 4 and len(anim.frames) == 2 and message == ""
    assert "Kruskal stress-1" in shepard.layout.title.text and len(shepard.data) == 4  # two MDS panels, each with its diagonal
    assert seen[0] == ("0", "4", "0/4 · PCA of conv2") and seen[-1] == ("4", "4", "drawing")


def test_a_progress_store_that_fails_does_not_fail_the_job(engine):
    view = _view(engine, tab="embeddings", n_embed=2, embed_methods=["pca"], anim_method="pca", nodes=["conv2"])

    def broken(_value):
        raise OSError("disk full")

    grid, _anim, _shepard, message = embeddings.embedding_figures(engine, broken, {"view": view, "selection": []})
    assert isinstance(grid, go.Figure) and message == ""


def test_models_panel(engine):
    view = _view(engine, tab="models", n_rdm=3)
    table, message = models.models_panel(engine, view)
    assert "2,650" in _text(table) and [r["model"] for r in views.models_rows(engine)] == engine.model_ids
    metrics, message, request, abandon = models.metrics_gate(engine, view)
    if request is not no_update:  # not cached yet on the session's engine: a job, model by model
        steps = []
        metrics, message = models.metrics_job(engine, steps.append, request)
        assert [s[2].split(" · ")[-1] for s in steps] == [f"every node's RDM of {m}" for m in views.dataset_models(engine, View.parse(engine, view))]
        metrics, message, request, abandon = models.metrics_gate(engine, view)
    assert request is no_update and isinstance(abandon, str)  # computed: answered at once
    mnist = [m for m in engine.model_ids if engine.dataset_of(m).id == engine.dataset_of(engine.defaults.model).id]
    assert len(mnist) >= 2 and message == ""
    assert [t.name for t in metrics.data[::2]] == views.dataset_models(engine, View.parse(engine, _view(engine, tab="models")))
    assert sorted(t.name for t in metrics.data[::2]) == sorted(mnist)  # every model of the dataset, none of another


def _side_by_side(engine, view) -> tuple:
    """The side-by-side figure and message as a page gets them: from the gate, or from the job it requests."""
    fig, message, request, abandon = models.side_by_side_gate(engine, view)
    if request is no_update:
        assert isinstance(abandon, str)  # answered at once: a job still running for an older view is cancelled
        return fig, message
    assert fig is no_update and message == "" and abandon is no_update
    steps = []
    fig, message = models.side_by_side_job(engine, steps.append, request)
    shown = View.parse(engine, view)
    assert [s[2].split(" · ")[-1] for s in steps] == [f"RDMs of {m}" for m in views.side_models(engine, shown)]
    assert models.side_by_side_gate(engine, view)[2] is no_update, "computed once, then answered at once"
    return fig, message


def test_models_side_by_side_share_one_scale(engine):
    view = _view(engine, tab="models", n_rdm=3, model="feedforward", nodes=["conv1", "fc2"], path_models=["feedforward", "recurrent"])
    fig, message = _side_by_side(engine, view)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert message == "" and {t.coloraxis for t in heat} == {"coloraxis"}
    assert [t.name for t in heat][:2] == ["feedforward/conv1", "feedforward/fc2"]
    assert all(t.name.startswith("recurrent/") for t in heat[2:]) and len(heat) > 2
    spec = engine.spec(3)
    values = [engine.rdm(*t.name.split("/"), spec, "correlation").matrix for t in heat]
    assert fig.layout.coloraxis.cmin == pytest.approx(min(v.min() for v in values))
    assert fig.layout.coloraxis.cmax == pytest.approx(max(v.max() for v in values))
    # one path model only: the dataset's next model joins, so two are always compared
    alone, _ = _side_by_side(engine, _view(engine, tab="models", n_rdm=3))
    assert len({t.name.split("/")[0] for t in alone.data if t.type == "heatmap"}) == 2
    assert models.side_by_side_gate(engine, _view(engine, tab="rdms")) == (no_update,) * 4
    assert models.side_by_side_job(engine, print, {"view": _view(engine, tab="rdms")}) == (no_update,) * 2
    bad = models.side_by_side_gate(engine, {**view, "n_rdm": 10**9})
    assert bad[0] is no_update and "images per class" in _text(bad[1])
    assert models.side_by_side_job(engine, print, {"view": {**view, "n_rdm": 10**9}})[0] is no_update


def test_uncached_side_by_side_is_a_job_with_progress(engine):
    # 11 per class: no other test computes it
    view = _view(engine, tab="models", n_rdm=11, model="recurrent", path_models=["recurrent", "feedforward", "robust"])
    fig, message, request, abandon = models.side_by_side_gate(engine, view)
    assert request == {"view": View.parse(engine, view).controls()} and fig is no_update and message == ""
    steps = []
    fig, message = models.side_by_side_job(engine, steps.append, request)
    assert [s[:2] for s in steps] == [("0", "3"), ("1", "3"), ("2", "3")]
    assert {t.name.split("/")[0] for t in fig.data if t.type == "heatmap"} == {"recurrent", "feedforward", "robust"} and message == ""

# ---------------------------------------------------------------------------- selection, pair, hover
def test_a_heatmap_click_selects_a_pair_and_the_pair_panel_follows(engine):
    view = _view(engine, n_rdm=20)
    stim = engine.stimuli(engine.spec(20))
    sel = selection.select(engine, ID.RDM_GRID, {"points": [{"x": 95, "y": 80, "curveNumber": 0}]}, [], view)
    assert sel == [int(stim.indices[80]), int(stim.indices[95])]
    fig, message, block = selection.pair(engine, sel, view)
    assert np.asarray(fig.data[0].y).shape == (22,) and "(class 4)" in fig.layout.title.text and message == ""
    assert fig.data[0].line.color == engine.entry("recurrent").color
    assert selection.select(engine, ID.CLEAR_SELECTION, None, sel, view) == []
    empty, _, _ = selection.pair(engine, [], view)
    assert empty["data"] == [] and "no pair" in empty["layout"]["annotations"][0]["text"]


def test_a_point_click_joins_the_selection(engine):
    view = _view(engine)
    stim = engine.stimuli(engine.spec(20))
    a, b, c = (int(stim.indices[i]) for i in (0, 50, 150))
    point = lambda t: {"points": [{"customdata": [t, "conv2_4", "tsne"]}]}  # noqa: E731
    assert selection.select(engine, ID.EMBED_GRID, point(b), [a], view) == [a, b]
    assert selection.select(engine, ID.EMBED_ANIM, point(c), [a, b], view) == [b, c]


def test_hover_shows_both_images_and_the_real_dissimilarity(engine):
    panel = selection.hover(engine, ID.RDM_GRID, {"points": [{"x": 3, "y": 150, "curveNumber": 4, "z": 0.5}]}, _view(engine))
    text = _text(panel)
    assert text.count("data:image/png;base64") == 2 and "class 0 · image #" in text and "class 7 · image #" in text and "conv2_4" in text
    real = engine.rdm("recurrent", "conv2_4", engine.spec(20), "correlation").matrix[150, 3]
    assert f"{real:.4g}" in text
    stim = engine.stimuli(engine.spec(50))
    one = _text(selection.hover(engine, ID.EMBED_GRID, {"points": [{"customdata": [int(stim.indices[0]), "conv2_1", "mds"]}]}, _view(engine)))
    assert one.count("data:image/png;base64") == 1 and "MDS of recurrent · node conv2_1" in one


@pytest.mark.parametrize(
    "event",
    [
        None,
        {},
        {"points": "x"},
        {"points": [{"x": -1, "y": 10**9}]},
        {"points": [{"x": "a"}]},
        {"points": [[1, 2]]},
        {"points": [{"x": True, "y": 0}]},
        {"points": [{"customdata": [0, 10**9]}]},
        {"points": [{"customdata": [10**9, "conv2", "pca"]}]},
        {"points": [{"customdata": {"0": 3, "1": "conv2", "2": "pca"}}]},
        {"points": [{"customdata": [3, 4, "pca"]}]},
    ],
)
def test_malformed_click_and_hover_events_change_nothing(engine, event):
    view = _view(engine)
    for graph in (ID.RDM_GRID, ID.EMBED_GRID):
        assert selection.select(engine, graph, event, [], view) is no_update
        assert selection.hover(engine, graph, event, view) is no_update
    assert selection.select(engine, "no-such-graph", {"points": [{"x": 1, "y": 1}]}, [], view) is no_update


def test_selection_store_parse_drops_what_is_not_an_index():
    assert parse_selection([1, True, -3, "x", 2.0, 10**7, 5]) == [1, 5]
    assert parse_selection({"a": 1}) == [] and parse_selection([0] * 10**5) == []


# ---------------------------------------------------------------------------- downloads
def test_download_is_the_engine_export(engine):
    data, message = download.download(engine, _view(engine, n_rdm=2, nodes=["conv2", "conv2_4"]))
    assert data["filename"] == "repgeom-recurrent-2pc-clean.npz" and message == ""
    z = np.load(io.BytesIO(base64.b64decode(data["content"])))
    assert z["rdm/recurrent/conv2"].shape == (20, 20) and list(z["path/names"])[-1] == "labels"
    assert download.download(engine, None) == (no_update, no_update)


def test_figure_downloads_switch_between_png_and_svg(engine):
    out = download.graph_configs(engine, "svg", _view(engine))
    assert set(out) == set(GRAPH_IDS) and all(v["toImageButtonOptions"]["format"] == "svg" for v in out.values())
    assert download.graph_configs(engine, "exe", _view(engine)) is no_update
    assert download.graph_configs(engine, ["svg"], _view(engine)) is no_update


def test_large_rdms_are_sent_as_block_means(engine):
    view = _view(engine, n_rdm=100)  # N = 1000 stimuli, 5 nodes
    grid, slider, _ = rdms.rdm_figures(engine, view, [])
    assert len(grid.to_json()) < 3_000_000 and len(slider.to_json()) < 3_000_000
    side = np.asarray(grid.data[0].z).shape[0]
    assert side < 1000 and side * side * 6 <= views.HEATMAP_CELLS
    assert "block means" in grid.layout.title.text
    # a click on a cell selects its block: every stimulus of its row run and of its column run
    sel = selection.select(engine, ID.RDM_GRID, {"points": [{"x": side - 1, "y": 0}]}, [], view)
    stim = engine.stimuli(engine.spec(100))
    rows, cols = sel["block"]["rows"], sel["block"]["cols"]
    assert rows[0] == int(stim.indices[0]) and len(rows) > 1 and cols[-1] == int(stim.indices[-1])
    assert {int(stim.labels[list(stim.indices).index(c)]) for c in cols} == {9}


# ---------------------------------------------------------------------------- the wiring, over HTTP
def _layout_ids(node) -> set:
    """Every component id in a layout serialised as the browser gets it (dict ids as Dash writes them)."""
    found = set()
    if isinstance(node, list):
        for n in node:
            found |= _layout_ids(n)
    elif isinstance(node, dict):
        props = node.get("props", {})
        cid = props.get("id") if isinstance(props, dict) else None
        if cid is not None:
            found.add(json.dumps(cid, sort_keys=True, separators=(",", ":")) if isinstance(cid, dict) else cid)
        for v in node.values():
            found |= _layout_ids(v)
    return found


def test_every_callback_id_is_in_the_layout_and_in_ids(app):
    in_layout = _layout_ids(app.server.test_client().get("/_dash-layout").get_json())
    known = {v for k, v in vars(ID).items() if k.isupper()} | {i for job in JOBS.values() for i in dataclasses.astuple(job)}
    for key, spec in app.callback_map.items():
        outs = [f"{o.component_id}.{o.component_property}" for o in (spec["output"] if isinstance(spec["output"], list) else [spec["output"]])]
        refs = [f"{i['id']}.{i['property']}" for i in spec["inputs"] + spec["state"]] + outs
        for ref in refs:
            cid = ref.rsplit(".", 1)[0]
            assert cid in in_layout, f"{key}: {cid} is not in the layout"
            assert cid in known or json.loads(cid)["type"] in known, f"{key}: {cid} is not from ids.py"


def test_callback_graph(app):
    outputs = {k.strip(".").split("...")[0].split("@")[0] for k in app.callback_map}
    assert {
        "url.search",
        "rdm-grid.figure",
        "embed-grid.figure",
        "path-graph.figure",
        "models-table.children",
        "selection.data",
        "pair-graph.figure",
        "hover-panel.children",
        "download.data",
    } <= outputs
    synced = app.callback_map[next(k for k in app.callback_map if k.startswith("..url.search"))]
    inputs = {f"{i['id']}.{i['property']}" for i in synced["inputs"]}
    assert {f"{cid}.value" for cid in CONTROL_IDS.values()} <= inputs and "url.search" in inputs
    for key, spec in app.callback_map.items():
        job = spec.get("background") is not None  # a job's input is its gate's request
        if key.startswith(("..rdm-grid.figure", "..path-graph.figure", "..models-table.children", "embed-request.data")) and not job:
            assert {"id": ID.VIEW, "property": "data"} in spec["inputs"]
    # the embeddings are a background job with progress and cancel, started only through the gate
    embed = app.callback_map[next(k for k in app.callback_map if k.startswith("..embed-grid.figure"))]
    assert embed["inputs"] == [{"id": ID.EMBED_REQUEST, "property": "data"}]
    # every view that may be slow has a job with progress, Cancel, and the gate's abandon store (which cancels it too)
    for name, job in JOBS.items():
        spec = next(v for v in app.callback_map.values() if v.get("background") and v["inputs"] == [{"id": job.request, "property": "data"}])
        assert spec["background"]["cancel"] == [{"id": job.cancel, "property": "n_clicks"}, {"id": job.abandon, "property": "data"}], name
        assert [p.component_id for p in spec["background"]["progress"]] == [job.progress] * 2 + [job.text], name


def test_page_and_health(app):
    c = app.server.test_client()
    assert c.get("/").status_code == 200
    health = c.get("/healthz")
    assert health.status_code == 200 and health.get_json()["status"] == "ok"
    assert "version" not in health.get_data(as_text=True).lower()


def test_sync_through_the_endpoint_reads_which_input_fired(dash, engine):
    out = dash.outputs("url.search", {"url.search": "?model=feedforward&n_rdm=5"}, changed=[])
    assert out["model.value"] == "feedforward" and out["view.data"]["n_rdm"] == 5
    values = {f"{cid}.value": v for cid, v in zip(CONTROL_IDS.values(), _view(engine).values(), strict=False)}
    button = json.dumps(preset_id(0), sort_keys=True, separators=(",", ":"))
    values[f"{button}.n_clicks"] = 1
    out = dash.outputs("url.search", values, changed=[f"{button}.n_clicks"])
    assert out["path-models.value"] == ["feedforward", "recurrent"] and out["tab.value"] == "paths"
    assert out["nodes-hint.children"].startswith("recurrent steps: conv2")


def test_a_forged_view_over_http_is_a_200_with_a_message(dash, engine):
    r = dash.call("rdm-grid.figure", {"view.data": {**_view(engine), "model": "../../etc/passwd"}, "selection.data": []})
    assert r.status_code == 200
    body = r.get_json()["response"]
    assert "unknown model" in json.dumps(body["rdm-message"]["children"]) and "rdm-grid" not in body


def test_clicks_and_hovers_reach_the_right_graph_over_http(dash, engine):
    view = _view(engine, n_rdm=20)
    out = dash.outputs(
        "selection.data", {"rdm-slider.clickData": {"points": [{"x": 95, "y": 80}]}, "view.data": view, "selection.data": []}, changed=["rdm-slider.clickData"]
    )
    stim = engine.stimuli(engine.spec(20))
    assert out["selection.data"] == [int(stim.indices[80]), int(stim.indices[95])]
    out = dash.outputs(
        "hover-panel.children", {"rdm-grid.hoverData": {"points": [{"x": 3, "y": 150, "curveNumber": 4}]}, "view.data": view}, changed=["rdm-grid.hoverData"]
    )
    assert json.dumps(out["hover-panel.children"]).count("data:image/png;base64") == 2
    configs = dash.outputs("graph-configs.data", {"image-format.value": "svg", "view.data": view})["graph-configs.data"]
    assert configs["pair-graph"]["toImageButtonOptions"]["format"] == "svg"


def test_the_embeddings_run_as_a_polled_background_job(dash, engine):
    view = _view(engine, tab="embeddings", n_embed=3, embed_methods=["pca"], anim_method="pca", nodes=["conv2", "conv2_4"])
    request = dash.outputs("embed-request.data", {"view.data": view, "selection.data": [7]})["embed-request.data"]
    out = dash.outputs("embed-grid.figure", {"embed-request.data": request})
    assert dash.polls >= 1, "the embeddings ran as a background job and were polled for"
    assert len(out["embed-anim.figure"]["frames"]) == 2
    assert out["embed-message.children"] == ""


def test_download_over_http(dash, engine):
    """The click's gate starts a job (nothing is cached for this view), which sends the file."""
    out = dash.outputs(
        "download.data", {"download-button.n_clicks": 1, "view.data": _view(engine, n_rdm=2, nodes=["conv2"], n_embed=3)},
        changed=["download-button.n_clicks"], follow=True,
    )
    assert dash.polls >= 1, "the download ran as a background job and was polled for"
    z = np.load(io.BytesIO(base64.b64decode(out["download.data"]["content"])))
    assert z["rdm/recurrent/conv2"].shape == (20, 20)


def test_repeated_requests_are_replayed_byte_for_byte(engine):
    from repgeom.settings import Settings
    from repgeom.ui import create_app

    app = create_app(Settings(warm=False, response_cache_bytes=64 << 20), engine=engine)
    client = DashClient(app)
    body = {"view.data": _view(engine, n_rdm=3), "selection.data": []}
    first, second = client.call("rdm-grid.figure", body), client.call("rdm-grid.figure", body)
    assert first.status_code == second.status_code == 200 and first.data == second.data
    # a different body is computed afresh, and a forged one is not cached as a success
    other = client.call("rdm-grid.figure", {"view.data": _view(engine, n_rdm=4), "selection.data": []})
    assert other.data != first.data
    forged = {"view.data": {**_view(engine), "model": "nope"}, "selection.data": []}
    assert "unknown model" in client.call("rdm-grid.figure", forged).get_data(as_text=True)


def test_cache_folder_is_shared_between_app_instances(engine, tmp_path):
    from repgeom.settings import Settings
    from repgeom.ui import create_app

    body = {"view.data": _view(engine, n_rdm=2), "selection.data": []}
    first = DashClient(create_app(Settings(warm=False, cache_dir=str(tmp_path)), engine=engine)).call("rdm-grid.figure", body)
    assert first.headers["X-Repgeom-Cache"] == "miss"
    from repgeom.shared_cache import FolderStore

    files = list(tmp_path.glob("responses-*/*.bin"))
    assert len(files) == 1
    store = FolderStore(files[0].parent)
    assert store.get(files[0].stem) == first.data
    # a second worker (another app) replays the file: plant a marker to prove it was read
    store.put(files[0].stem, first.data + b" ")
    second = DashClient(create_app(Settings(warm=False, cache_dir=str(tmp_path)), engine=engine)).call("rdm-grid.figure", body)
    assert second.data == first.data + b" " and second.headers["X-Repgeom-Cache"] == "shared"


def test_a_failed_view_is_not_replayed_from_the_cache(engine, monkeypatch):
    from repgeom.settings import Settings
    from repgeom.ui import create_app

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


def test_a_preset_of_another_dataset_brings_the_view_to_that_dataset(engine):
    i = next(k for k, p in enumerate(engine.presets) if engine.dataset_of(p.models[0]).id != engine.dataset_of(engine.defaults.model).id)
    out = _sync_out(sync.sync(engine, preset_id(i), "", _view(engine)))
    assert out["path_models"] == list(engine.presets[i].models) and out["model"] == engine.presets[i].models[-1]
    view = View.parse(engine, {n: out[n] for n in out if n != "url"})
    assert view.spec(engine, 5).dataset == engine.dataset_of(engine.presets[i].models[0]).id
