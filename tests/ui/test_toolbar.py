"""Every figure's toolbar: no cloud sharing, and a camera button that saves the chosen format under the view's name."""

from __future__ import annotations

import re

from dash import dcc, no_update

from repgeom.ui.callbacks import download
from repgeom.ui.ids import GRAPH_IDS, ID
from repgeom.ui.layout import build_layout, graph_config
from repgeom.ui.state import View


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    for c in children if isinstance(children, (list, tuple)) else [children] if children is not None else []:
        yield from _walk(c)


def test_no_toolbar_offers_plotlys_cloud(engine):
    config = graph_config()
    assert config["showSendToCloud"] is False and config["showEditInChartStudio"] is False
    assert {"sendChartToCloud", "sendDataToCloud", "editInChartStudio"} <= set(config["modeBarButtonsToRemove"])
    graphs = [c for c in _walk(build_layout(engine, View.default(engine))) if isinstance(c, dcc.Graph)]
    assert {g.id for g in graphs} == set(GRAPH_IDS)
    assert all(g.config["showSendToCloud"] is False and "sendChartToCloud" in g.config["modeBarButtonsToRemove"] for g in graphs)


def test_downloads_are_named_after_the_view(engine):
    view = View.parse(engine, {**View.default(engine).controls(), "model": "feedforward", "nodes": ["conv1", "fc2"], "rdm_method": "cosine"})
    configs = download.graph_configs(engine, "svg", view.controls())
    names = {g: c["toImageButtonOptions"]["filename"] for g, c in configs.items()}
    assert names[ID.RDM_GRID] == "repgeom_rdms_feedforward_conv1-to-fc2-2nodes_cosine"
    assert names[ID.EMBED_GRID] == "repgeom_embeddings_feedforward_conv1-to-fc2-2nodes_pca-mds-tsne"
    assert names[ID.PATH_GRAPH].startswith("repgeom_path_") and "euclidean_cosine" in names[ID.PATH_GRAPH]
    assert len(set(names.values())) == len(GRAPH_IDS), "two figures would download under one name"
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]{1,120}", n) for n in names.values())
    assert all(c["toImageButtonOptions"]["format"] == "svg" for c in configs.values())


def test_a_name_is_made_safe_from_what_the_view_holds(engine):
    view = View.parse(engine, {**View.default(engine).controls(), "hypotheses": ["odd=1,3,5|0,2"], "diff_a": "recurrent/conv2", "diff_b": "recurrent/add_3"})
    name = download.figure_filename(view, ID.DIFF_GRAPH)
    assert name == "repgeom_difference_recurrent-conv2_minus_recurrent-add_3_correlation"
    assert download.figure_filename(None, ID.PATH_GRAPH) == "repgeom_path"


def test_a_forged_format_or_view_changes_nothing(engine):
    good = View.default(engine).controls()
    for fmt in (None, "exe", ["svg"], {"png": 1}, "p" * 10_000):
        assert download.graph_configs(engine, fmt, good) is no_update
    for data in ("x", [1], {"model": "alexnet"}):
        assert download.graph_configs(engine, "png", data) is no_update
    assert set(download.graph_configs(engine, "png", None)) == set(GRAPH_IDS)


def test_the_configs_store_is_filled_through_dashs_endpoint(dash, engine):
    out = dash.outputs(f"{ID.GRAPH_CONFIGS}.data", {f"{ID.IMAGE_FORMAT}.value": "svg", f"{ID.VIEW}.data": View.default(engine).controls()})
    assert out[f"{ID.GRAPH_CONFIGS}.data"][ID.RDM_GRID]["toImageButtonOptions"]["format"] == "svg"


def test_the_clientside_callback_sets_every_graphs_config(app):
    wired = [c for c in app._callback_list if c.get("clientside_function")]
    outputs = [c["output"] for c in wired if ID.GRAPH_CONFIGS in str(c["inputs"])]
    assert len(outputs) == 1 and all(f"{g}.config" in outputs[0] for g in GRAPH_IDS)


def test_a_request_for_the_browsers_own_callback_is_a_400(dash):
    r = dash.call("rdm-grid.config", {f"{ID.GRAPH_CONFIGS}.data": {}})
    assert r.status_code == 400 and b"computed in the browser" in r.get_data()
