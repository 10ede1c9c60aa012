"""Point-level exploration of the embeddings, as plain functions: hover, pairs, neighbours, search, isolation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dash import no_update

from repgeom.core.neighbours import point_neighbours
from repgeom.ui import views
from repgeom.ui.callbacks import embeddings, selection
from repgeom.ui.ids import ID
from repgeom.ui.state import View

RINGS = ("selected", "search matches")


def _view(engine, **changes):
    return View.parse(engine, {**View.default(engine).controls(), "tab": "embeddings", **changes}).controls()


def _text(component) -> str:
    return json.dumps(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component, default=_plain, ensure_ascii=False)


def _plain(value):
    return value.to_plotly_json() if hasattr(value, "to_plotly_json") else str(value)


def _point(figure, trace: int = 0, k: int = 0) -> dict:
    """The event Plotly sends for point ``k`` of ``trace``: the point's own customdata row, as JSON."""
    data = json.loads(figure.to_json())["data"]
    return {"points": [{"curveNumber": trace, "pointNumber": k, "customdata": data[trace]["customdata"][k]}]}


@pytest.fixture(scope="module")
def drawn(engine):
    """The embeddings job's figures for 3 per class, PCA and MDS of two nodes."""
    view = _view(engine, n_embed=3, embed_methods=["pca", "mds"], anim_method="pca", nodes=["conv2", "conv2_4"])
    request = embeddings.embedding_request(engine, view, [])
    grid, anim, _shepard, message = embeddings.embedding_figures(engine, lambda _p: None, request)
    assert message == ""
    return view, grid, anim


def test_hovering_a_drawn_point_shows_its_image_class_index_and_node(engine, drawn):
    view, grid, anim = drawn
    stim = engine.stimuli(engine.spec(3))
    names = engine.dataset_of("recurrent").class_names
    last = max(i for i, t in enumerate(grid.data) if t.name not in RINGS)  # the MDS of conv2_4, last class
    event = _point(grid, last, 1)
    idx = event["points"][0]["customdata"][0]
    row = int(np.flatnonzero(stim.indices == idx)[0])
    text = _text(selection.hover(engine, ID.EMBED_GRID, event, view))
    assert text.count("data:image/png;base64") == 1
    assert f"class {names[int(stim.labels[row])]} · image #{idx}" in text and "MDS of recurrent · node conv2_4" in text
    frame = {"points": [{"customdata": json.loads(anim.to_json())["frames"][1]["data"][2]["customdata"][0]}]}
    assert "PCA of recurrent · node conv2_4" in _text(selection.hover(engine, ID.EMBED_ANIM, frame, view))


def test_clicking_two_points_selects_a_pair_like_an_rdm_cell(engine, drawn):
    view, grid, _ = drawn
    a, b = _point(grid, 0, 0), _point(grid, 3, 2)
    ia, ib = a["points"][0]["customdata"][0], b["points"][0]["customdata"][0]
    sel = selection.select(engine, ID.EMBED_GRID, a, [], view)
    sel = selection.select(engine, ID.EMBED_GRID, b, sel, view)
    assert sel == [ia, ib]
    fig, message, block = selection.pair(engine, sel, view)
    assert message == "" and block == [] and f"stimulus {ia} (class" in fig.layout.title.text and f"vs {ib} (class" in fig.layout.title.text
    # the pair panel shows what the RDMs hold for that pair, at every node
    v = View.parse(engine, view)
    spec = v.spec(engine, max(v.n_rdm, v.n_embed))
    i, j = views.selection_rows(engine.stimuli(spec).indices, [ia, ib])
    expected = [float(r.matrix[i, j]) for r in engine.rdms("recurrent", None, spec)]
    np.testing.assert_allclose(np.asarray(fig.data[0].y, dtype=float), expected, rtol=1e-6)


def test_a_clicked_point_lists_its_neighbours_marking_what_the_plot_loses(engine, drawn):
    view, grid, _ = drawn
    mds = [i for i, t in enumerate(grid.data) if t.name == "4"][-1]  # class 4 in the MDS of conv2_4
    event = _point(grid, mds, 0)
    idx, node, method = event["points"][0]["customdata"]
    panel = selection.neighbours(engine, ID.EMBED_GRID, event, view)
    text = _text(panel)
    k = views.POINT_NEIGHBOURS
    assert text.count("data:image/png;base64") == 1 + 2 * k
    spec = engine.spec(3)
    stim = engine.stimuli(spec)
    names = engine.dataset_of("recurrent").class_names
    row = int(np.flatnonzero(stim.indices == idx)[0])
    emb = engine.embedding("recurrent", node, spec, method)
    nb = point_neighbours(engine.features("recurrent", node, spec).numpy(), emb.coords, row, k)
    for r, d in zip(nb.feature_rows, nb.feature_distances, strict=True):
        assert f"#{int(stim.indices[r])} ({names[int(stim.labels[r])]}) · {d:.3g} · " in text
    assert text.count("lost on the plot") == 2 * int(nb.lost.sum()) and text.count("stimulus-card neighbour lost") == 2 * int(nb.lost.sum())
    assert f"keeps {nb.kept} of its {k} nearest" in text and f"image #{idx}" in text


def test_neighbours_never_start_an_embedding_and_bad_points_change_nothing(engine, drawn):
    view, _, _ = drawn
    stim = engine.stimuli(engine.spec(3))
    cold = _view(engine, n_embed=3, perplexity=6.25, nodes=["conv2"])
    event = {"points": [{"customdata": [int(stim.indices[0]), "conv2", "tsne"]}]}
    assert "not computed yet" in _text(selection.neighbours(engine, ID.EMBED_GRID, event, cold))
    outside = {"points": [{"customdata": [int(stim.indices.max()) + 1, "conv2", "pca"]}]}
    assert "not among the 30 embedded stimuli" in _text(selection.neighbours(engine, ID.EMBED_GRID, outside, view))
    assert "unknown node" in _text(selection.neighbours(engine, ID.EMBED_GRID, {"points": [{"customdata": [0, "fc9", "pca"]}]}, view)).lower()
    assert "choose from PCA" not in _text(selection.neighbours(engine, ID.EMBED_GRID, {"points": [{"customdata": [0, "conv2", "umap"]}]}, view))
    for bad in (None, {}, {"points": [{"customdata": [1, 2]}]}, {"points": [{"customdata": {"0": 1}}]}, {"points": [{"customdata": [True, "a", "b"]}]}):
        assert selection.neighbours(engine, ID.EMBED_GRID, bad, view) is no_update
    assert selection.neighbours(engine, ID.RDM_GRID, event, view) is no_update


def test_search_names_classes_and_indices_and_says_what_matched(engine):
    view = _view(engine, n_embed=3)
    stim = engine.stimuli(engine.spec(3))
    names = engine.dataset_of("recurrent").class_names
    idx = int(stim.indices[0])
    found, message = selection.search(engine, f"{names[3]}, #{idx}, #9999999", view)
    assert sorted(found) == sorted({*stim.indices[stim.labels == 3].tolist(), idx})
    assert f"class {names[3]}: 3 points" in message and f"#{idx}: found" in message and "#9999999: not among the 30" in message
    assert selection.search(engine, "", view) == ([], "") and selection.search(engine, None, view) == ([], "")
    for bad, said in [("giraffe", "neither a class"), ("a" * 500, "at most 400 characters"), (",".join(["1"] * 40), "at most 32 terms"), (7, "must be text")]:
        store, msg = selection.search(engine, bad, view)
        assert store is no_update and said in _text(msg)


def test_a_box_or_lasso_isolates_its_points_and_reset_shows_all(engine, drawn):
    view, grid, _ = drawn
    points = [_point(grid, t, 0)["points"][0] for t in (0, 1, 2)] + [{"curveNumber": 99, "pointNumber": 0}]  # a ring: no customdata
    group, message = selection.isolate(engine, ID.EMBED_GRID, {"points": points}, None, view)
    assert group == [p["customdata"][0] for p in points[:3]] and "3 points isolated on the PCA of conv2" in message
    assert selection.isolate(engine, ID.GROUP_RESET, {"points": points}, None, view) == (None, "")
    assert selection.isolate(engine, ID.EMBED_ANIM, None, None, view) == (no_update, no_update)  # a cleared selection
    assert selection.isolate(engine, ID.EMBED_GRID, {"points": []}, None, view) == (no_update, no_update)  # Plotly's clear on redraw
    store, msg = selection.isolate(engine, ID.EMBED_GRID, {"points": [{}] * 100_001}, None, view)
    assert store is no_update and "at most 100000 points" in _text(msg)


def test_the_job_draws_search_rings_and_the_isolated_group_in_every_panel(engine, drawn):
    view, _, _ = drawn
    stim = engine.stimuli(engine.spec(3))
    group = stim.indices[:4].tolist()
    hits = stim.indices[stim.labels == 1].tolist()
    request = embeddings.embedding_request(engine, view, [], hits, group)
    assert request["highlight"] == hits and request["group"] == group
    grid, anim, _, message = embeddings.embedding_figures(engine, lambda _p: None, request)
    assert message == ""
    rings = [t for t in grid.data if t.name == "search matches"]
    assert len(rings) == 4 and all(len(t.x) == 3 for t in rings)
    points = [t for t in grid.data if t.name not in RINGS]
    dimmed_in = {sum(len(t.selectedpoints) for t in points[p : p + 10]) for p in range(0, len(points), 10)}
    assert dimmed_in == {4}  # the group's four points are the only ones shown in full, in each panel
    assert all(sum(len(t.selectedpoints) for t in f.data if t.name not in RINGS) == 4 for f in anim.frames)
    # forged stores are dropped, not drawn
    forged = embeddings.embedding_request(engine, view, [], ["x", True, -1], {"a": 1})
    assert forged["highlight"] == [] and forged["group"] is None


def test_a_block_mean_cell_says_it_is_a_block_and_shows_the_blocks_value_and_images(engine):
    """At 100 per class the map shows block means: the hover panel gives the same block mean, not one pair's value."""
    view = View.parse(engine, {**View.default(engine).controls(), "n_rdm": 100}).controls()
    v = View.parse(engine, view)
    spec = v.spec(engine, 100)
    stim = engine.stimuli(spec)
    names = engine.dataset_of("recurrent").class_names
    side = views.display_side(stim.n, len(v.nodes))
    assert side < stim.n  # block means are what the map shows
    rows, cols, binned = views.rdm_cell_blocks(engine, v, 3, 150)
    assert binned and rows[1] - rows[0] > 1 and cols[1] - cols[0] > 1
    full = engine.rdm("recurrent", v.nodes[4], spec, "correlation").matrix
    block = float(full[rows[0] : rows[1], cols[0] : cols[1]].mean())
    shown = float(engine.rdm("recurrent", v.nodes[4], spec, "correlation").reduced(side).matrix[150, 3])
    assert abs(block - shown) < 1e-9  # the heat map's cell is that block's mean
    text = _text(selection.hover(engine, "rdm-grid", {"points": [{"x": 3, "y": 150, "curveNumber": 4, "z": 0.5}]}, view))
    assert f"block mean of the correlation dissimilarity {shown:.4g} over {rows[1] - rows[0]} × {cols[1] - cols[0]} stimuli" in text
    assert f"{full[rows[0], cols[0]]:.4g} " not in text  # not the first pair's value
    row_class = names[int(stim.labels[rows[0]])]
    assert f"rows: class {row_class}" in text and "(shown as 0.5 of the node's max)" in text
    assert text.count("data:image/png;base64") == 2 * views.BLOCK_IMAGES
    assert text.count("row block 150 · class") == 2 * views.BLOCK_IMAGES and text.count("column block 3 · class") == 2 * views.BLOCK_IMAGES  # alt + caption
    last = int(stim.indices[rows[1] - 1])
    assert f"image #{last}" in text  # images from across the block, not only its first stimulus
    # the slider's map (no panel reported) says the shown value is a block mean too
    slider = _text(selection.hover(engine, "rdm-slider", {"points": [{"x": 3, "y": 150, "z": 0.25}]}, view))
    assert "block mean of the correlation dissimilarity 0.25 of the max over" in slider


def test_clicking_a_block_mean_cell_selects_the_block_and_the_pair_panel_gives_its_mean_and_spread(engine):
    """At 100 per class a click on a cell selects its block: mean (the tooltip's value), SD and range at every node, images of both sides."""
    from repgeom.ui.callbacks import rdms, sync

    view = View.parse(engine, {**View.default(engine).controls(), "n_rdm": 100}).controls()
    v = View.parse(engine, view)
    spec = v.spec(engine, 100)
    stim = engine.stimuli(spec)
    side = views.display_side(stim.n, len(v.nodes))
    (r0, r1), (c0, c1), binned = views.rdm_cell_blocks(engine, v, 3, 150)
    assert binned
    sel = selection.select(engine, ID.RDM_GRID, {"points": [{"x": 3, "y": 150, "curveNumber": 4, "z": 0.5}]}, [1, 2], view)
    assert sel == {"block": {"rows": stim.indices[r0:r1].tolist(), "cols": stim.indices[c0:c1].tolist(), "node": v.nodes[4]}}

    fig, message, panel = selection.pair(engine, sel, view)
    assert message == ""
    nodes = engine.nodes("recurrent")
    full = engine.rdms("recurrent", nodes, spec, "correlation")
    blocks = [r.matrix[r0:r1, c0:c1] for r in full]  # two runs with no stimulus in common: every entry is a pair
    mean_line = next(t for t in fig.data if t.name == "block mean ± SD")
    np.testing.assert_allclose(np.asarray(mean_line.y, dtype=float), [b.mean() for b in blocks], rtol=1e-9)
    np.testing.assert_allclose(np.asarray(mean_line.error_y.array, dtype=float), [b.std() for b in blocks], rtol=1e-9)
    band = [t for t in fig.data if t.name != "block mean ± SD"]
    np.testing.assert_allclose(np.asarray(band[0].y, dtype=float), [b.max() for b in blocks], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(band[1].y, dtype=float), [b.min() for b in blocks], rtol=1e-12)
    assert f"block of {r1 - r0} × {c1 - c0} stimuli" in fig.layout.title.text

    text = _text(panel)
    k = nodes.index(v.nodes[4])
    reduced = full[k].reduced(side).matrix
    shown = float(reduced[150, 3])  # what the heat map's cell (and so its tooltip) holds
    assert f"A block of {r1 - r0} × {c1 - c0} stimuli, {(r1 - r0) * (c1 - c0)} pairs of different stimuli" in text
    assert f"At {v.nodes[4]}: block mean of the correlation dissimilarity {shown:.4g}" in text
    assert f"(shown as {shown / reduced.max():.4g} of the node's max)" in text
    assert f"SD over the pairs {blocks[k].std():.3g}; min {blocks[k].min():.4g}, max {blocks[k].max():.4g}" in text
    limit = views.single_pair_limit(engine, v)
    classes = len(engine.dataset_of("recurrent").class_names)
    at, above = limit * classes, (limit + 1) * classes
    assert views.display_side(at, len(v.nodes)) >= at and views.display_side(above, len(v.nodes)) < above  # the limit is the largest unbinned size
    assert f"set the RDMs' images per class to {limit} or fewer" in text
    assert text.count("data:image/png;base64") == 2 * views.BLOCK_IMAGES
    assert f"image #{int(stim.indices[r1 - 1])}" in text and f"image #{int(stim.indices[c1 - 1])}" in text  # across each run, not its first only

    # the maps mark the block (its cell and the mirrored one)
    grid, _slider, _ = rdms.rdm_figures(engine, {**view, "tab": "rdms"}, sel)
    marks = {(s.x0, s.y0) for s in grid.layout.shapes if s.type == "rect"}
    assert {(2.5, 149.5), (149.5, 2.5)} <= marks

    # a block is not kept in the link (a pair is), and a point click replaces it
    out = sync.sync(engine, ID.SELECTION, "?n_rdm=100&pair=1%2C2", view, selection=sel)
    assert out[0] == "?n_rdm=100"
    assert selection.select(engine, ID.EMBED_GRID, {"points": [{"customdata": [int(stim.indices[0]), "conv2", "pca"]}]}, sel, view) == [
        int(stim.indices[0])
    ]


def test_a_diagonal_block_leaves_out_its_self_pairs_from_the_spread(engine):
    view = View.parse(engine, {**View.default(engine).controls(), "n_rdm": 100}).controls()
    v = View.parse(engine, view)
    spec = v.spec(engine, 100)
    (r0, r1), _, _ = views.rdm_cell_blocks(engine, v, 40, 40)
    sel = selection.select(engine, ID.RDM_GRID, {"points": [{"x": 40, "y": 40, "curveNumber": 0}]}, [], view)
    _, _, panel = selection.pair(engine, sel, view)
    m = engine.rdm("recurrent", v.nodes[0], spec, "correlation").matrix[r0:r1, r0:r1]
    upper = m[np.triu_indices(r1 - r0, 1)]
    text = _text(panel)
    n = r1 - r0
    assert f"{n * (n - 1) // 2} pairs of different stimuli" in text
    assert f"block mean of the correlation dissimilarity {m.mean():.4g}" in text
    assert f"the mean is {upper.mean():.4g}; SD over the pairs {upper.std():.3g}; min {upper.min():.4g}, max {upper.max():.4g}" in text


def test_a_forged_block_is_refused_or_ignored(engine):
    from repgeom.ui.callbacks.common import parse_block

    view = View.parse(engine, {**View.default(engine).controls(), "n_rdm": 100}).controls()
    for forged in (
        {"block": None},
        {"block": {"rows": [], "cols": [1]}},
        {"block": {"rows": [True], "cols": [1]}},
        {"block": {"rows": [1], "cols": [-1]}},
        {"block": {"rows": [1], "cols": [10**12]}},
        {"block": {"rows": list(range(views.MAX_BLOCK + 1)), "cols": [1]}},
        {"block": {"rows": "1", "cols": [1]}},
        {"rows": [1], "cols": [2]},
    ):
        assert parse_block(forged) is None, forged
        fig, message, panel = selection.pair(engine, forged, view)
        assert message == "" and panel == [] and fig["data"] == [], forged  # no pair: the empty panel
    assert parse_block({"block": {"rows": [1, 1, 2], "cols": [3], "node": 7}}) == views.BlockSelection((1, 2), (3,), None)
    absent = {"block": {"rows": [999_999], "cols": [1], "node": "conv2"}}
    fig, message, panel = selection.pair(engine, absent, view)
    assert fig is no_update and "not all in the RDMs' current stimulus set; click a cell again" in _text(message)
