"""Figure builders: trace types, axis order, labels (synthetic inputs, no engine)."""

from __future__ import annotations

import ast
import base64
import io
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from repgeom.core.embedding import Embedding
from repgeom.core.paths import RepPath
from repgeom.core.rdm import RDM
from repgeom.figures import block_figure, embedding_animation, embedding_grid, metrics_figure, pair_figure, path_figure, rdm_grid, rdm_models, rdm_slider
from repgeom.figures.images import image_data_uri
from repgeom.figures.rdm import MAX_TICK_LABELS, class_ticks
from repgeom.figures.style import CLASS_COLORS, MODEL_PALETTE, TITLE_GAP_PX, class_colors, model_colors
from repgeom.pipeline import NodeMetrics

FIGURES = Path(__file__).resolve().parents[2] / "repgeom" / "figures"

LABELS = np.repeat(np.arange(10), 3)


def _rdms(k=3):
    rng = np.random.default_rng(0)
    out = []
    for i in range(k):
        m = rng.random((30, 30)) * (i + 1)
        m = (m + m.T) / 2
        np.fill_diagonal(m, 0)
        out.append(RDM(m, "recurrent", f"conv2_{i}", "correlation", LABELS))
    return out


def test_class_ticks_sit_at_block_centres():
    centres, texts, bounds = class_ticks(LABELS)
    assert centres[:2] == [1.0, 4.0] and texts == [str(d) for d in range(10)]
    assert bounds[0] == 2.5 and len(bounds) == 9


def test_class_ticks_write_class_names_and_thin_them_when_there_are_many():
    names = [f"class-{k}" for k in range(10)]
    assert class_ticks(LABELS, names)[1] == names
    many = np.repeat(np.arange(100), 2)
    centres, texts, bounds = class_ticks(many, [f"c{k}" for k in range(100)])
    assert len(centres) == len(texts) == 100 and len(bounds) == 99
    shown = [t for t in texts if t]
    assert 1 < len(shown) <= MAX_TICK_LABELS and texts[0] == "c0" and texts[5] == "c5" and texts[1] == ""


def test_rdm_grid_one_heatmap_per_node_rows_from_top_shared_scale():
    rdms = _rdms()
    fig = rdm_grid(rdms, normalise="per")
    assert [t.type for t in fig.data] == ["heatmap"] * 3
    assert all(t.coloraxis == "coloraxis" for t in fig.data)
    assert [a.text for a in fig.layout.annotations] == ["conv2_0", "conv2_1", "conv2_2"]
    assert fig.layout.yaxis.autorange == "reversed"
    assert list(fig.layout.xaxis.ticktext) == [str(d) for d in range(10)]
    for t, _r in zip(fig.data, rdms, strict=False):
        assert np.max(t.z) == pytest.approx(1.0)  # each divided by its own max, as the seed
        assert "of the max" in t.hovertemplate
    assert "correlation distance" in fig.layout.coloraxis.colorbar.title.text
    assert fig.layout.coloraxis.colorscale is not None
    grid_lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(grid_lines) == 3 * 2 * 9


def test_rdm_grid_shared_scale_keeps_raw_values_and_marks_selection():
    rdms = _rdms()
    fig = rdm_grid(rdms, normalise="shared", selection=[4, 20])
    np.testing.assert_allclose(fig.data[2].z, rdms[2].matrix, rtol=1e-6)
    assert fig.layout.coloraxis.cmax == pytest.approx(max(r.matrix.max() for r in rdms))
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == 3 * 2 and {(r.x0 + 0.5, r.y0 + 0.5) for r in rects} == {(20, 4), (4, 20)}


def test_block_means_keep_class_structure():
    rdm = _rdms(1)[0]
    small = rdm.reduced(10)
    assert small.matrix.shape == (10, 10) and list(small.labels) == list(range(10))
    assert small.matrix[0, 1] == pytest.approx(rdm.matrix[0:3, 3:6].mean())
    assert list(small.bins) == list(range(0, 31, 3))
    assert rdm.reduced(30) is rdm
    fig = rdm_grid([small])
    assert list(fig.layout.xaxis.ticktext) == [str(d) for d in range(10)]


def test_rdm_slider_has_a_frame_and_step_per_node():
    fig = rdm_slider(_rdms(), active=2)
    assert [f.name for f in fig.frames] == ["conv2_0", "conv2_1", "conv2_2"]
    assert [s.label for s in fig.layout.sliders[0].steps] == ["conv2_0", "conv2_1", "conv2_2"]
    assert fig.layout.sliders[0].active == 2
    assert fig.layout.updatemenus[0].buttons[0].label.endswith("play")


def _emb(node, method="pca", shift=0.0):
    rng = np.random.default_rng(len(node))
    return Embedding(
        rng.normal(size=(30, 2)) + shift, method, "recurrent", node, LABELS, 0.9, 0.2 if method == "mds" else None, 40.0 if method == "tsne" else None
    )


RINGS = ("selected", "search matches")


def test_embedding_grid_rows_methods_columns_nodes_coloured_by_class():
    grid = [[_emb("a", m), _emb("b", m)] for m in ("pca", "tsne")]
    fig = embedding_grid(grid, np.arange(30) + 100, selection=[3])
    digit_traces = [t for t in fig.data if t.name in [str(d) for d in range(10)]]
    assert len(digit_traces) == 4 * 10
    assert digit_traces[0].marker.color == CLASS_COLORS[0] and digit_traces[9].marker.color == CLASS_COLORS[9]
    assert sum(bool(t.showlegend) for t in digit_traces) == 10
    assert fig.layout.legend.title.text == "class" and digit_traces[4].hovertemplate.startswith("class 4<br>")
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0].startswith("a<br>") and "trustworthiness (k=5) 0.900" in titles[0] and "stress" not in titles[0] and "perp 40" in titles[2]
    assert "<b>PCA</b>" in titles and "<b>t-SNE</b>" in titles
    selected = [t for t in fig.data if t.name == "selected"]
    assert len(selected) == 4 and all(len(t.x) == 1 for t in selected)
    assert isinstance(digit_traces[0], go.Scatter)


def test_embedding_figures_take_the_class_names_and_colour_any_number_of_classes():
    names = ["airplane", "cat", "dog"]
    labels = np.repeat(np.arange(3), 4)
    e = Embedding(np.random.default_rng(0).normal(size=(12, 2)), "pca", "m", "n", labels, 0.9, None, None)
    fig = embedding_grid([[e]], np.arange(12), class_names=names)
    assert [t.name for t in fig.data if t.name not in RINGS] == names
    assert "class cat<br>" in fig.data[1].hovertemplate and fig.data[0].marker.color == CLASS_COLORS[0]
    anim = embedding_animation([e], np.arange(12), class_names=names)
    assert [t.name for t in anim.frames[0].data if t.name not in RINGS] == names
    many = np.arange(100)
    e100 = Embedding(np.random.default_rng(1).normal(size=(100, 2)), "pca", "m", "n", many, 0.9, None, None)
    fig = embedding_grid([[e100]], many, class_names=[f"c{k}" for k in range(100)])
    colours = [t.marker.color for t in fig.data if t.name not in RINGS]
    assert len(colours) == 100 and len(set(colours)) == 100
    with pytest.raises(ValueError, match="labels run from 0 to 2; 2 class names given"):
        embedding_grid([[e]], np.arange(12), class_names=["a", "b"])


@pytest.mark.parametrize("n", [2, 3, 10, 11, 37, 100])
def test_class_colours_for_2_to_100_classes(n):
    colours = class_colors(n)
    assert len(colours) == n and len(set(colours)) == n
    if n <= 10:
        assert colours == CLASS_COLORS[:n]  # colour-blind safe up to ten classes
    else:
        assert all(c.startswith("rgb(") for c in colours)
        assert colours[0] != colours[1]


def test_model_colours_come_from_the_caller_or_the_palette_by_position():
    assert model_colors(["a", "b", "c"], {"b": "#123456"}) == {"a": MODEL_PALETTE[0], "b": "#123456", "c": MODEL_PALETTE[2]}
    assert len(model_colors([f"m{k}" for k in range(20)])) == 20


def test_every_point_carries_its_image_index_node_and_method_as_plain_json():
    grid = [[_emb("a", m), _emb("b", m)] for m in ("pca", "mds")]
    fig = embedding_grid(grid, np.arange(30) + 100)
    points = [t for t in json.loads(fig.to_json())["data"] if t["name"] not in RINGS]
    # plain lists in what the browser gets: a typed array would reach the server as an object, without the ids
    assert all(isinstance(t["customdata"], list) and isinstance(t["customdata"][0], list) for t in points)
    assert all(isinstance(c[0], int) and isinstance(c[1], str) for t in points for c in t["customdata"])
    first = fig.data[0]
    assert [tuple(c) for c in first.customdata] == [(100 + r, "a", "pca") for r in np.flatnonzero(LABELS == 0)]
    last = [t for t in fig.data if t.name == "9"][-1]
    assert {tuple(c)[1:] for c in last.customdata} == {("b", "mds")}
    anim = embedding_animation([_emb("a"), _emb("b", shift=5)], np.arange(30) + 100)
    assert {c[1] for t in anim.frames[1].data if t.name not in RINGS for c in t.customdata} == {"b"}
    assert json.loads(fig.to_json())["data"][0]["customdata"][0] == [100, "a", "pca"]


def test_search_matches_are_ringed_and_an_isolated_group_dims_the_rest_in_every_panel():
    grid = [[_emb("a"), _emb("b")]]
    fig = embedding_grid(grid, np.arange(30), highlight=[0, 11], group=[0, 4])
    rings = [t for t in fig.data if t.name == "search matches"]
    assert len(rings) == 2 and all(len(t.x) == 2 for t in rings) and rings[0].showlegend and not rings[1].showlegend
    zero, one, two = fig.data[:3]  # class 0: rows 0, 1, 2; class 1: rows 3, 4, 5
    assert list(zero.selectedpoints) == [0] and list(one.selectedpoints) == [1] and list(two.selectedpoints) == []
    assert zero.unselected.marker.opacity < 0.2
    assert all(t.selectedpoints is not None for t in fig.data if t.name not in RINGS)
    plain = embedding_grid(grid, np.arange(30))
    assert all(t.selectedpoints is None for t in plain.data) and all(len(t.x) == 0 for t in plain.data if t.name == "search matches")
    anim = embedding_animation([_emb("a"), _emb("b")], np.arange(30), highlight=[5], group=[5])
    assert all(len([t for t in f.data if t.name == "search matches"][0].x) == 1 for f in anim.frames)
    assert [list(t.selectedpoints) for t in anim.frames[1].data if t.name not in RINGS][:3] == [[], [2], []]


def test_embedding_animation_frames_follow_nodes_with_fixed_axes():
    fig = embedding_animation([_emb("a"), _emb("b", shift=5)], np.arange(30))
    assert [f.name for f in fig.frames] == ["a", "b"]
    lo, hi = fig.layout.xaxis.range
    allc = np.concatenate([_emb("a").coords, _emb("b", shift=5).coords])
    assert lo <= allc.min() and hi >= allc.max()


def _path():
    names = ["feedforward/input", "feedforward/fc2", "recurrent/input", "recurrent/conv2", "recurrent/softmax", "labels"]
    models = [n.split("/")[0] for n in names]
    nodes = [n.split("/")[-1] for n in names]
    rng = np.random.default_rng(1)
    coords = rng.normal(size=(6, 2))
    d = np.sqrt(((coords[:, None] - coords[None]) ** 2).sum(-1))
    return RepPath(names, models, nodes, d, coords, 0.05, "euclidean", "cosine", np.array([0, 1, 3, 4, 5]))


def test_path_figure_matrix_path_square_star_and_frames():
    fig = path_figure(_path())
    heat = fig.data[0]
    assert heat.type == "heatmap" and np.asarray(heat.z).shape == (5, 5)
    lines = [t for t in fig.data if t.type == "scatter" and t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["feedforward", "recurrent"]
    assert len(lines[1].x) == 3
    square = next(t for t in fig.data if t.name == "input")
    star = next(t for t in fig.data if t.name == "labels")
    assert square.marker.symbol == "square" and star.marker.symbol == "star"
    assert [f.name for f in fig.frames] == ["1", "2", "3"]
    assert len(fig.frames[0].data[1].x) == 1
    assert "MDS Kruskal stress-1 0.050" in fig.layout.title.text
    assert "squared Euclidean distance / D" in fig.layout.title.text and "cosine angle (rad)" in fig.layout.title.text
    assert "to labels" in lines[0].customdata[0][1]
    coloured = path_figure(_path(), colors={"recurrent": "#ABCDEF"})
    lines = [t for t in coloured.data if t.type == "scatter" and t.mode == "lines+markers"]
    assert [t.line.color for t in lines] == [MODEL_PALETTE[0], "#ABCDEF"]
    assert "#ABCDEF" in "".join(coloured.layout.yaxis.ticktext)


def test_models_side_by_side_share_one_colour_scale():
    a = _rdms(3)
    b = [RDM(r.matrix * 5, "feedforward", f"fc{i}", r.method, r.labels) for i, r in enumerate(_rdms(2))]
    fig = rdm_models([a, b], "Viridis_r")
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 5 and {t.coloraxis for t in heat} == {"coloraxis"}  # one colour axis, so one colour bar
    assert [t.name for t in heat] == ["recurrent/conv2_0", "recurrent/conv2_1", "recurrent/conv2_2", "feedforward/fc0", "feedforward/fc1"]
    every = [r.matrix for r in a + b]
    assert fig.layout.coloraxis.cmin == pytest.approx(min(m.min() for m in every))
    assert fig.layout.coloraxis.cmax == pytest.approx(max(m.max() for m in every))  # b's largest: a's would look saturated
    np.testing.assert_allclose(heat[3].z, b[0].matrix, rtol=1e-6)  # raw values, not ÷ each panel's max
    titles = [t.text for t in fig.layout.annotations]
    assert titles[:3] == ["conv2_0", "conv2_1", "conv2_2"] and titles[3:5] == ["fc0", "fc1"]  # panels by node
    assert "<b>recurrent</b>" in fig.layout.yaxis.title.text and "<b>feedforward</b>" in fig.layout.yaxis4.title.text  # rows by model
    assert heat[0].xaxis == "x" and heat[3].xaxis == "x4"  # the second model sits on the second row of a 2 × 3 grid
    assert fig.layout.coloraxis.colorbar.title.text == "correlation distance (1 − r)"


def test_metrics_of_models_with_different_nodes_share_a_relative_depth_axis():
    ff = NodeMetrics("feedforward", ["conv1", "fc1", "fc2"], [0.1, 0.3, 0.5], [0.0, 0.2, 0.4])
    rec = NodeMetrics("recurrent", ["conv1", "conv2", "conv2_1", "fc"], [0.1, 0.2, 0.3, 0.6], [0.0, 0.1, 0.2, 0.5])
    fig = metrics_figure([ff, rec])
    assert [t.name for t in fig.data] == ["feedforward", "feedforward", "recurrent", "recurrent"]
    assert list(fig.data[0].x) == [0.0, 0.5, 1.0] and list(fig.data[2].x) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert list(fig.data[2].text) == rec.nodes and "%{text}" in fig.data[2].hovertemplate
    assert [t.showlegend for t in fig.data] == [True, False, True, False]
    assert fig.layout.xaxis.title.text.startswith("relative depth")


def test_metrics_and_pair_figures():
    m = NodeMetrics("recurrent", ["conv2", "conv2_1"], [0.1, 0.3], [0.0, 0.2])
    fig = metrics_figure([m], {"recurrent": "#ABCDEF"})
    assert [t.name for t in fig.data] == ["recurrent", "recurrent"] and list(fig.data[0].x) == ["conv2", "conv2_1"]
    assert fig.data[0].line.color == fig.data[1].line.color == "#ABCDEF"
    assert "silhouette by class" in [a.text for a in fig.layout.annotations]
    p = pair_figure("recurrent", ["a", "b"], [0.5, 0.9], (4, 9), ("cat", "dog"), "correlation", color="#ABCDEF")
    assert list(p.data[0].y) == [0.5, 0.9] and "stimulus 4 (class cat)<br>vs 9 (class dog)" in p.layout.title.text
    # every title line fits the inspector's graph (about 220 px at 13 px, so 30 characters)
    assert all(len(line.replace("<sup>", "").replace("</sup>", "")) <= 30 for line in p.layout.title.text.split("<br>"))
    assert p.layout.title.xanchor == "left" and p.layout.margin.t >= 3 * 20
    assert p.data[0].line.color == "#ABCDEF"


def _png(uri):
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    raw = base64.b64decode(uri.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(raw))


def test_grey_images_are_drawn_dark_on_white_and_enlarged_crisply():
    img = _png(image_data_uri(np.eye(28)[None]))
    assert img.mode == "L" and img.size == (84, 84)
    px = np.asarray(img)
    assert px[0, 0] == 0 and px[0, 3] == 255 and px[2, 2] == 0  # the diagonal is ink, 3 x 3 pixels a cell
    assert _png(image_data_uri(np.eye(28))).size == (84, 84)  # (H, W) is grey too
    assert _png(image_data_uri(np.zeros((1, 5, 7)))).size == (84, 60)


def test_colour_images_keep_their_colours_at_any_size():
    red = np.zeros((3, 32, 32), np.float32)
    red[0] = 1.0
    img = _png(image_data_uri(red))
    assert img.mode == "RGB" and img.size == (64, 64) and np.asarray(img)[5, 5].tolist() == [255, 0, 0]
    big = _png(image_data_uri(np.random.default_rng(0).random((3, 224, 160)), size=84))
    assert big.mode == "RGB" and big.size == (60, 84)


@pytest.mark.parametrize("shape", [(2, 8, 8), (4, 8, 8), (8,), (1, 1, 0, 3)])
def test_images_of_another_shape_are_refused(shape):
    with pytest.raises(ValueError, match="an image must be"):
        image_data_uri(np.zeros(shape))


def test_figure_modules_never_import_the_engine_or_the_numerics_at_run_time():
    for path in sorted(FIGURES.glob("*.py")):
        tree = ast.parse(path.read_text())
        guarded = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in guarded:
                module = "." * node.level + (node.module or "")
                assert not module.startswith(".."), f"{path.name} imports {module} outside TYPE_CHECKING"
                assert module.split(".")[0] not in ("torch", "dash", "repgeom"), f"{path.name} imports {module}"


# ----------------------------------------------------------------- layouts that scale (issue 13)
from repgeom.figures.path import MATRIX_DOMAIN, MAX_NODE_TICKS, PATH_DOMAIN, TICK_FONT_PX  # noqa: E402
from repgeom.figures.style import CONTROLS_PAD, MAX_GRID_COLS, grid_shape, wrap_label  # noqa: E402

#: The narrowest figure the dashboard draws (the main column at 1366 px, less padding), and a character's width at 14 px.
NARROW_PX, CHAR_PX = 780, 8.0


def _disjoint(boxes):
    """No two (x0, x1, y0, y1) boxes share any area."""
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if min(a[1], b[1]) - max(a[0], b[0]) > 1e-9 and min(a[3], b[3]) - max(a[2], b[2]) > 1e-9:
                return False
    return True


@pytest.mark.parametrize(("k", "shape"), [(1, (1, 1)), (2, (1, 2)), (3, (1, 3)), (4, (2, 2)), (5, (2, 3)), (22, (8, 3))])
def test_grids_wrap_into_rows_of_at_most_three(k, shape):
    assert grid_shape(k) == shape and shape[1] <= MAX_GRID_COLS


def test_long_node_names_break_at_separators():
    assert wrap_label("conv2_1") == "conv2_1"
    assert wrap_label("readout.classifier.final_linear_layer") == "readout.<br>classifier.final_<br>linear_layer"
    assert all(len(line) <= 18 for line in wrap_label("x" * 50).split("<br>"))


def _panel_boxes(fig):
    boxes = []
    for t in fig.data:
        xa = fig.layout["xaxis" + (t.xaxis or "x")[1:]]
        ya = fig.layout["yaxis" + (t.yaxis or "y")[1:]]
        boxes.append((*xa.domain, *ya.domain))
    return list(dict.fromkeys(boxes))


@pytest.mark.parametrize("k", [1, 5, 22])
def test_rdm_grid_wraps_with_readable_panels_and_titles_that_fit(k):
    fig = rdm_grid(_rdms(k))
    rows, cols = grid_shape(k)
    boxes = _panel_boxes(fig)
    assert len(boxes) == k and _disjoint(boxes)
    assert len({b[2] for b in boxes}) == rows and len({b[0] for b in boxes}) == cols
    width = (boxes[0][1] - boxes[0][0]) * (NARROW_PX - fig.layout.margin.l - fig.layout.margin.r - 100)  # less the colour bar
    height = (boxes[0][3] - boxes[0][2]) * (fig.layout.height - fig.layout.margin.t - fig.layout.margin.b)
    assert min(width, height) >= 180, (width, height)
    titles = [a for a in fig.layout.annotations if a.text]
    assert [a.text for a in titles] == [r.node for r in _rdms(k)]
    for a in titles:  # a title fits over its own panel, so it cannot reach a neighbour's
        assert max(len(line) for line in a.text.split("<br>")) * CHAR_PX <= width
    # the gap between rows holds a title; class names are written under the lowest panel of each column only
    if rows > 1:
        gap_px = (boxes[0][2] - boxes[cols][3]) * (fig.layout.height - fig.layout.margin.t - fig.layout.margin.b)
        assert gap_px >= 40
        assert list(fig.layout.xaxis.ticktext) == [""] * 10 and list(fig.layout[f"xaxis{k}"].ticktext) == [str(d) for d in range(10)]


@pytest.mark.parametrize("k", [1, 5, 22])
def test_embedding_grid_wraps_nodes_and_stacks_each_panels_measures(k):
    methods = ("pca", "mds", "tsne")
    grid = [[_emb(f"node_{j}", m) for j in range(k)] for m in methods]
    fig = embedding_grid(grid, np.arange(30))
    boxes = _panel_boxes(fig)
    assert len(boxes) == 3 * k and _disjoint(boxes)
    titles = [a.text for a in fig.layout.annotations if "<sup>" in a.text]
    assert len(titles) == 3 * k
    # every measure on a line of its own: "Kruskal stress-1 0.200" never runs into "trustworthiness"
    mds = [t for t in titles if "stress" in t]
    assert mds and all("<br><sup>Kruskal stress-1 0.200</sup>" in t for t in mds)
    assert all(max(len(p) for p in t.replace("<sup>", "").replace("</sup>", "").replace("<b>", "").replace("</b>", "").split("<br>")) <= 30 for t in titles)
    rows = len({b[2] for b in boxes})
    assert rows == (1 if k == 1 else 3 * grid_shape(k)[0])
    # the class legend lies under the panels, horizontally (it wraps; it never scrolls)
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y <= min(b[2] for b in boxes)
    if k > 1:
        assert sorted(a.text for a in fig.layout.annotations if a.textangle == -90) == sorted(["<b>PCA</b>", "<b>MDS</b>", "<b>t-SNE</b>"] * grid_shape(k)[0])


def test_path_figure_keeps_colour_bar_axis_titles_and_controls_apart():
    names = [f"m/n{k}" for k in range(30)] + ["labels"]
    rng = np.random.default_rng(2)
    coords = rng.normal(size=(31, 2))
    d = np.sqrt(((coords[:, None] - coords[None]) ** 2).sum(-1))
    path = RepPath(names, ["m"] * 30 + ["labels"], [n.split("/")[1] for n in names[:-1]] + ["labels"], d, coords, 0.1, "euclidean", "cosine", np.arange(31))
    fig = path_figure(path)
    heat = fig.data[0]
    assert tuple(fig.layout.xaxis.domain) == MATRIX_DOMAIN and tuple(fig.layout.xaxis2.domain) == PATH_DOMAIN
    # the colour bar sits in the gap between the panels; the path's dim-2 title is on the far side
    assert MATRIX_DOMAIN[1] <= heat.colorbar.x < PATH_DOMAIN[0] and fig.layout.yaxis2.side == "right"
    assert heat.colorbar.title.side == "top" and len(heat.colorbar.title.text) <= 4
    assert fig.layout.legend.x > 1.1  # right of the dim-2 axis title
    # node names: 12 px, at most MAX_NODE_TICKS written
    assert fig.layout.yaxis.tickfont.size == TICK_FONT_PX >= 12
    assert 0 < sum(bool(t) for t in fig.layout.yaxis.ticktext) <= MAX_NODE_TICKS and fig.layout.xaxis.showticklabels is False
    # the buttons' row is above the slider's row: the slider starts at least a button's height below them
    menu, slider = fig.layout.updatemenus[0], fig.layout.sliders[0]
    assert slider.pad.t - menu.pad.t >= 40 and slider.x >= menu.x and slider.pad.t - CONTROLS_PAD[1] == menu.pad.t - CONTROLS_PAD[0]
    assert fig.layout.margin.b >= slider.pad.t + 60
    # every step and Play redraw without a tween (a tween or a frame without redraw blanks the matrix)
    play = menu.buttons[0].args[1]
    assert play["frame"]["redraw"] is True and play["transition"]["duration"] == 0
    assert all(s.args[1]["frame"]["redraw"] is True and s.args[1]["transition"]["duration"] == 0 for s in slider.steps)
    assert all(0 not in f.traces for f in fig.frames)  # the frames leave the matrix's data alone


def test_projector_figures_have_large_type_no_small_print_and_the_okabe_ito_palette():
    from repgeom.figures.present import CLASS_SYMBOLS, FILL_MAX_PX, MIN_FONT_PX, OKABE_ITO, for_projector

    grid = [[_emb("a", m), _emb("b", m)] for m in ("pca", "mds")]
    original = embedding_grid(grid, np.arange(30))
    fig = for_projector(original)
    assert original.layout.font.size < MIN_FONT_PX  # the original is left as it was
    assert fig.layout.font.size >= MIN_FONT_PX and fig.layout.title.font.size >= MIN_FONT_PX and fig.layout.legend.font.size >= MIN_FONT_PX
    assert all(a.font.size >= MIN_FONT_PX and "<sup>" not in a.text for a in fig.layout.annotations)
    assert "<sup>" not in fig.layout.title.text
    classes = [t for t in fig.data if t.name in [str(d) for d in range(10)]]
    assert classes[0].marker.color == OKABE_ITO[0] and classes[3].marker.color == OKABE_ITO[3] and classes[3].marker.symbol == CLASS_SYMBOLS[3]
    assert len({t.marker.color for t in classes}) == 10
    # a path: model colours swapped (a manifest colour kept), every axis, colour bar, slider and button at 18 px
    path = for_projector(path_figure(_path(), colors={"recurrent": "#ABCDEF"}))
    lines = [t for t in path.data if t.type == "scatter" and t.mode == "lines+markers"]
    assert [t.line.color for t in lines] == [OKABE_ITO[0], "#ABCDEF"]
    assert path.layout.yaxis.tickfont.size >= MIN_FONT_PX and path.layout.xaxis2.title.font.size >= MIN_FONT_PX
    assert path.data[0].colorbar.tickfont.size >= MIN_FONT_PX
    assert path.layout.sliders[0].font.size >= MIN_FONT_PX and path.layout.updatemenus[0].font.size >= MIN_FONT_PX
    assert len(path.frames) == 3 and path.frames[0].data[0].line.color == OKABE_ITO[0]
    # a figure up to FILL_MAX_PX tall fills the screen (no fixed height); a tall grid keeps (and grows) its height
    assert path_figure(_path()).layout.height <= FILL_MAX_PX and path.layout.height is None
    tall = rdm_grid(_rdms(22))
    assert tall.layout.height > FILL_MAX_PX and for_projector(tall).layout.height > tall.layout.height
    assert for_projector(tall).layout.coloraxis.colorbar.tickfont.size >= MIN_FONT_PX



@pytest.mark.parametrize("names", [None, [f"{n} {k}" for k in range(3) for n in ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                                                                    "Sneaker", "Bag", "Ankle boot")]])
def test_a_projected_class_legend_runs_in_lines_above_the_title_which_moves_down_under_it(names):
    from repgeom.figures.present import for_projector

    labels = np.arange(30) % (10 if names is None else 30)
    e = Embedding(np.random.default_rng(0).normal(size=(30, 2)), "pca", "recurrent", "a", labels, 0.9)
    anim = embedding_animation([e], np.arange(30), class_names=names)
    assert anim.layout.legend.orientation is None  # a column right of the plot on a screen
    shown = for_projector(anim)
    legend, title = shown.layout.legend, shown.layout.title
    assert (legend.orientation, legend.yref, legend.y, legend.yanchor, legend.x, legend.xanchor) == ("h", "container", 1, "top", 0, "left")
    # the title drops by the legend's lines (one for ten digits, more for thirty long names), and the margin with it
    plain = for_projector(anim.update_layout(legend={"x": 1.02}))
    rows = (title.pad.t - plain.layout.title.pad.t - TITLE_GAP_PX) / 34
    assert rows == 1 if names is None else rows >= 3
    assert shown.layout.margin.t >= title.pad.t + 2 * 1.3 * title.font.size  # the plot starts under the title's two lines
    assert plain.layout.legend.orientation is None  # a legend its builder placed stays where it is

# ----------------------------------------------------------------- grids laid out for the window (issue 13)
from repgeom.figures.style import MAX_PANEL_PX, MIN_PANEL_PX, grid_fit  # noqa: E402


def _columns(fig):
    return len({round(b[0], 6) for b in _panel_boxes(fig)})


@pytest.mark.parametrize(("width", "cols"), [(500, 1), (700, 2), (798, 3), (900, 3), (1000, 4), (1352, 4), (2000, 4)])
def test_a_grid_has_as_many_columns_as_its_width_holds_at_a_readable_side(width, cols):
    fit = grid_fit(22, width, chrome_x=200, gap_x=20)
    assert fit.cols == cols and fit.rows * fit.cols >= 22 and fit.rows * (fit.cols - 1) < 22
    assert MIN_PANEL_PX <= fit.side <= MAX_PANEL_PX and fit.cols <= MAX_GRID_COLS
    assert fit.cols * fit.side + (fit.cols - 1) * 20 <= width - 200  # the panels fit across
    # a panel one column more would be under the readable side (or past the column cap)
    assert fit.cols == MAX_GRID_COLS or (width - 200 - fit.cols * 20) / (fit.cols + 1) < MIN_PANEL_PX
    assert grid_fit(2, width, 200, 20).cols <= 2  # never more columns than panels


@pytest.mark.parametrize("k", [1, 5, 22])
def test_a_grid_fitted_into_a_height_keeps_every_row_inside_it(k):
    fit = grid_fit(k, 1888, chrome_x=200, gap_x=20, height=930, chrome_y=150, gap_y=48)
    lines = fit.rows
    assert fit.rows * fit.cols >= k and 150 + lines * fit.side + (lines - 1) * 48 <= 930
    for cols in range(1, k + 1):  # no other column count gives larger panels that fit
        rows = -(-k // cols)
        assert min((1688 - (cols - 1) * 20) / cols, (780 - (rows - 1) * 48) / rows) <= fit.side + 1


def test_rdm_grid_follows_its_width_and_fits_a_projector_height():
    narrow, wide = rdm_grid(_rdms(22), width=700), rdm_grid(_rdms(22), width=1352)
    assert _columns(narrow) == 2 and _columns(wide) == 4 and _columns(rdm_grid(_rdms(22))) == 3
    assert wide.layout.height < narrow.layout.height
    fitted = rdm_grid(_rdms(22), width=1888, height=930)
    assert fitted.layout.height <= 930 and _columns(fitted) > 4
    boxes = _panel_boxes(fitted)
    assert len(boxes) == 22 and _disjoint(boxes)
    # presentation mode keeps a fitted grid's height (larger type takes room from the panels, not from the screen)
    from repgeom.figures.present import for_projector

    assert for_projector(fitted, keep_height=True).layout.height == fitted.layout.height


def test_embedding_grid_follows_its_width_and_titles_every_panels_axes():
    methods = ("pca", "mds", "tsne")
    grid = [[_emb(f"node_{j}", m) for j in range(22)] for m in methods]
    assert _columns(embedding_grid(grid, np.arange(30), width=1352)) == 4
    assert _columns(embedding_grid(grid, np.arange(30), width=560)) == 2
    fig = embedding_grid(grid, np.arange(30))
    layout = fig.to_plotly_json()["layout"]
    titled = {k: v["title"]["text"] for k, v in layout.items() if k[1:5] == "axis" and v.get("visible") is not False}
    assert len(titled) == 2 * 3 * 22
    assert sorted(set(titled.values())) == ["MDS dim 1", "MDS dim 2", "PC 1", "PC 2", "t-SNE dim 1", "t-SNE dim 2"]
    # a PCA that carries its variance shares names them
    shared = Embedding(_emb("a").coords, "pca", "recurrent", "a", LABELS, 0.9, explained=(0.342, 0.118))
    one = embedding_grid([[shared]], np.arange(30))
    assert (one.layout.xaxis.title.text, one.layout.yaxis.title.text) == ("PC 1 (34 % var.)", "PC 2 (12 %)")
    # the class legend starts under the lowest x-axis titles
    assert one.layout.legend.y < 0


def test_block_figure_draws_the_mean_with_sd_bars_inside_a_min_max_band():
    fig = block_figure("m", ["a", "b", "c"], [0.5, 0.6, 0.7], [0.1, 0.05, 0.2], [0.2, 0.4, 0.3], [0.9, 0.8, 1.1], "block of 5 × 5 stimuli", "correlation")
    high, low, mean = fig.data
    assert list(mean.y) == [0.5, 0.6, 0.7] and list(mean.error_y.array) == [0.1, 0.05, 0.2] and mean.error_y.visible
    assert list(low.y) == [0.2, 0.4, 0.3] and list(high.y) == [0.9, 0.8, 1.1] and low.fill == "tonexty"  # the band between max and min
    assert all(t.type == "scatter" for t in fig.data)  # inside the cartesian bundle
    assert fig.layout.title.text.startswith("block of 5 × 5 stimuli") and "SD" in fig.layout.title.text
    assert fig.layout.yaxis.title.text == "correlation dissimilarity"


def test_a_grid_that_cannot_fit_a_screen_readably_scrolls_instead_and_small_panels_name_fewer_classes():
    from repgeom.figures.style import MIN_FITTED_PX

    # 22 nodes × 3 methods into 930 px: panels would be tiny, so the grid scrolls as when exploring
    fit = grid_fit(22, 1888, chrome_x=84, gap_x=30, height=930, chrome_y=216, gap_y=112, rows_per_block=3)
    assert fit == grid_fit(22, 1888, chrome_x=84, gap_x=30) and fit.side >= MIN_PANEL_PX
    assert grid_fit(22, 1888, 200, 20, height=930, chrome_y=150, gap_y=48).side >= MIN_FITTED_PX  # an RDM grid fits
    # a fitted grid of small panels writes every other class name (room for a projector's type)
    small = rdm_grid(_rdms(22), width=1334, height=618)
    assert small.layout.height <= 618
    shown = [t for t in small.layout.yaxis.ticktext if t]
    assert 2 <= len(shown) < 10 and len(small.layout.yaxis.tickvals) == 10


def test_long_titles_wrap_at_spaces_and_the_top_margin_holds_every_line():
    from repgeom.figures.style import SUP_CHARS, TITLE_CHARS, base_layout, wrap_title

    words = " ".join(f"word{k}" for k in range(40))
    text = wrap_title(f"{words}<br><sup>{words} {words}</sup><br><i>kept whole: {words}</i>")
    lines = text.split("<br>")
    main = [ln for ln in lines if not ln.startswith(("<sup>", "<i>"))]
    sup = [ln for ln in lines if ln.startswith("<sup>")]
    assert " ".join(main) == words and all(len(ln) <= TITLE_CHARS for ln in main) and len(main) > 1
    assert all(ln.endswith("</sup>") and len(ln) - 11 <= SUP_CHARS for ln in sup) and len(sup) > 1
    assert " ".join(ln[5:-6] for ln in sup) == f"{words} {words}"
    assert lines[-1] == f"<i>kept whole: {words}</i>"  # a break is never put inside markup
    assert wrap_title("short<br><sup>short</sup>") == "short<br><sup>short</sup>"
    basis = "RDMs: squared Euclidean distance / D · cosine angle (rad) · MDS Kruskal stress-1 0.050"  # 85 characters
    assert wrap_title(f"<sup>{basis}</sup>").split("<br>") == [
        "<sup>RDMs: squared Euclidean distance / D · cosine angle (rad)</sup>", "<sup>MDS Kruskal stress-1 0.050</sup>"
    ]  # broken between its parts, not inside one

    one, three = base_layout(title="one line"), base_layout(title="a<br><sup>b</sup><br><sup>c</sup>")
    assert one["title"]["pad"]["t"] < three["title"]["pad"]["t"]  # Plotly lifts a multi-line title: it is padded back down
    assert three["margin"]["t"] > one["margin"]["t"] and base_layout(title="x", margin={"t": 200})["margin"]["t"] == 200
