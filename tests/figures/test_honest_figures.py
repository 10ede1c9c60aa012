"""Figures that say what is shown: landmarks, bootstrap ellipses and intervals, Shepard diagrams,
side-by-side comparisons, paths over training, difference RDMs, and their titles (synthetic inputs)."""

from __future__ import annotations

import numpy as np
import pytest

from repgeom.core.distortion import confidence_ellipse, neighbour_distortion, procrustes_align, shepard_pairs
from repgeom.core.embedding import Embedding
from repgeom.core.paths import RepPath
from repgeom.core.uncertainty import PathUncertainty
from repgeom.figures import (
    difference_figure,
    embedding_animation,
    labels_distance_figure,
    metrics_figure,
    path_figure,
    shepard_figure,
    survive_figure,
    training_path_figure,
)
from repgeom.figures.path import LANDMARK_SYMBOLS
from repgeom.pipeline import NodeMetrics

LABELS = np.repeat(np.arange(10), 3)


def _path(compare="cosine", seed=1):
    names = ["ff/input", "ff/fc1", "ff/fc2", "rec/input", "rec/conv2", "rec/softmax", "noise", "shuffled", "group:odd", "labels"]
    models = ["ff", "ff", "ff", "rec", "rec", "rec", "landmark", "landmark", "landmark", "labels"]
    nodes = [n.split("/")[-1] for n in names]
    coords = np.random.default_rng(seed).normal(size=(10, 2))
    d = np.sqrt(((coords[:, None] - coords[None]) ** 2).sum(-1)) * 1.1
    return RepPath(names, models, nodes, d, coords, 0.08, "euclidean", compare, np.array([0, 1, 2, 4, 5, 6, 7, 8, 9]))


def _uncertainty(path, b=20):
    rng = np.random.default_rng(2)
    k = len(path.names)
    dist = path.distances[None] + rng.normal(scale=0.01, size=(b, k, k))
    low, high = np.percentile(dist, [2.5, 97.5], axis=0)
    coords = path.coords[None] + rng.normal(scale=0.02, size=(b, k, 2))
    c = coords - coords.mean(0)
    return PathUncertainty(dist, low, high, coords, np.einsum("bki,bkj->kij", c, c) / (b - 1))


def test_path_figure_draws_landmarks_ellipses_intervals_and_names_its_basis():
    path = _path()
    unc = _uncertainty(path)
    ellipses = [confidence_ellipse(unc.ellipses[i], path.coords[i]) if i in path.display_rows else None for i in range(10)]
    fig = path_figure(path, uncertainty=unc, ellipses=ellipses, distortion=neighbour_distortion(path.distances, path.coords, 2))
    marks = {t.name: t for t in fig.data if t.name in ("noise", "shuffled", "group:odd", "labels", "input")}
    assert marks["noise"].marker.symbol == LANDMARK_SYMBOLS["noise"] and marks["shuffled"].marker.symbol == LANDMARK_SYMBOLS["shuffled"]
    assert marks["group:odd"].marker.symbol == LANDMARK_SYMBOLS["group"] and marks["labels"].marker.symbol == "star"
    assert len({marks[n].marker.symbol for n in marks}) == 5
    # the landmarks are rows of the matrix too (display rows: duplicate input dropped)
    heat = fig.data[0]
    assert np.asarray(heat.z).shape == (9, 9) and "noise" in "".join(fig.layout.yaxis.ticktext)
    lo, hi = unc.low[1, 9], unc.high[1, 9]
    assert f"95 % CI {lo:.3f}–{hi:.3f}" in heat.customdata[1][-1]
    # ellipses: one outline trace per model and one for the landmarks, each outline on its point's 1.96-sigma contour
    outlines = [t for t in fig.data if t.type == "scatter" and t.mode == "lines"]
    assert sorted(t.name for t in outlines) == ["ff · 95 % ellipses", "labels · 95 % ellipses", "landmark · 95 % ellipses", "rec · 95 % ellipses"]
    ff = next(t for t in outlines if t.name.startswith("ff"))
    first = np.array([ff.x[:49], ff.y[:49]]).T
    np.testing.assert_allclose(first, ellipses[0])
    line = next(t for t in fig.data if t.name == "rec")
    assert "to labels" in line.customdata[0][1] and "95 % CI" in line.customdata[0][1] and "Kruskal stress-1" in line.customdata[0][1]
    title = fig.layout.title.text
    for words in ("squared Euclidean distance / D", "cosine angle (rad)", "Kruskal stress-1 0.080", "20 bootstrap samples"):
        assert words in title
    assert fig.layout.xaxis2.title.text == "MDS dim 1 (rad)"


def test_labels_distance_figure_has_intervals_floors_and_the_seed_band():
    path = _path()
    unc = _uncertainty(path)
    fig = labels_distance_figure(path, unc, {"ff": {"fc1": 0.1, "fc2": 0.2}})
    ff = next(t for t in fig.data if t.name == "ff")
    np.testing.assert_allclose(np.asarray(ff.error_y.array) + ff.y, np.maximum(unc.high[[0, 1, 2], 9], ff.y))
    band = next(t for t in fig.data if t.name == "ff ± seed variability")
    assert band.fill == "toself" and list(band.x) == [1, 2, 2, 1]
    assert list(ff.x) == [0, 1, 2] and list(fig.layout.xaxis.ticktext) == ["input", "fc1", "fc2", "input", "conv2", "softmax"]
    assert band.y[0] == pytest.approx(path.to_labels[1] + 0.1) and band.y[2] == pytest.approx(path.to_labels[2] - 0.2)
    assert not any(t.name == "rec ± seed variability" for t in fig.data)
    floors = [a.text for a in fig.layout.annotations]
    assert any(t.startswith("noise ") for t in floors) and any(t.startswith("group:odd ") for t in floors)
    assert len(fig.layout.shapes) == 3
    assert "(rad)" in fig.layout.yaxis.title.text and fig.layout.xaxis.title.text.startswith("node (graph order")
    assert "seed" in fig.layout.title.text and "20 bootstrap samples" in fig.layout.title.text


def test_shepard_figure_plots_plotted_against_true():
    path = _path()
    true, plotted, _ = shepard_pairs(path.distances, path.coords)
    fig = shepard_figure([("path", true, plotted, 0.08), ("again", true, plotted, None)], "rad", "Shepard")
    np.testing.assert_allclose(fig.data[0].x, true)
    np.testing.assert_allclose(fig.data[0].y, plotted)
    assert fig.data[1].line.dash == "dash" and fig.layout.xaxis.title.text == "true (rad)" and fig.layout.yaxis.title.text == "plotted (rad)"
    assert "Kruskal stress-1 0.080" in fig.layout.annotations[0].text


def test_survive_figure_puts_the_aligned_paths_side_by_side():
    paths = [_path("cosine", 1), _path("corr_cov", 4), _path("cka", 5)]
    aligned = [procrustes_align(p.coords, paths[0].coords) for p in paths]
    fig = survive_figure(paths, aligned)
    assert [a.text.split("<br>")[0] for a in fig.layout.annotations] == ["cosine angle", "whitened-correlation angle", "linear-CKA angle"]
    rec3 = [t for t in fig.data if t.name == "rec"][2]
    np.testing.assert_allclose(np.array([rec3.x, rec3.y]).T, aligned[2][[3, 4, 5]])
    assert "Procrustes" in fig.layout.title.text and "rad" in fig.layout.title.text
    assert fig.layout.xaxis.range == fig.layout.xaxis3.range


def test_training_path_figure_animates_epoch_by_epoch():
    names = [f"m@{e}/{n}" for e in range(3) for n in ("a", "b")] + ["labels"]
    models = [n.split("/")[0] for n in names[:-1]] + ["labels"]
    nodes = [n.split("/")[-1] for n in names]
    coords = np.random.default_rng(0).normal(size=(7, 2))
    d = np.sqrt(((coords[:, None] - coords[None]) ** 2).sum(-1))
    path = RepPath(names, models, nodes, d, coords, 0.1, "correlation", "spearman", np.arange(7))
    fig = training_path_figure(path, "m", [0, 1, 2])
    assert [f.name for f in fig.frames] == ["0", "1", "2"]
    first = fig.frames[0].data
    assert len(first[0].x) == 2 and len(first[1].x) == 0 and first[0].line.width == 3
    last = fig.frames[2].data
    assert last[0].line.width == 1 and last[2].line.width == 3
    assert "epoch 2" in fig.layout.title.text and "Spearman angle (rad)" in fig.layout.title.text
    assert "correlation distance" in fig.layout.title.text
    with pytest.raises(ValueError, match="epochs"):
        training_path_figure(path, "m", [0, 1])


def test_difference_figure_greys_unreliable_cells_and_marks_blocks():
    rng = np.random.default_rng(0)
    diff = rng.uniform(-1, 1, size=(30, 30))
    diff = (diff + diff.T) / 2
    np.fill_diagonal(diff, 0)
    mask = np.abs(diff) > 0.3
    fig = difference_figure(diff, mask, LABELS, "ff/fc1", "ff2/fc1", "correlation", 50, [f"c{i}" for i in range(10)])
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.isnan(z[~mask]).all() and np.allclose(z[mask], diff[mask])
    assert fig.data[0].zmid == 0 and fig.data[0].zmin == -1 and fig.data[0].zmax == 1
    assert fig.layout.plot_bgcolor == "#C8C8C8" and len(fig.layout.shapes) == 2 * 9
    assert list(fig.layout.xaxis.ticktext) == [f"c{i}" for i in range(10)]
    assert "A = ff/fc1 minus B = ff2/fc1" in fig.layout.title.text and "50 bootstrap samples" in fig.layout.title.text
    assert "correlation distance" in fig.layout.title.text


def test_embedding_animation_says_its_scale():
    frames = [Embedding(np.random.default_rng(i).normal(size=(30, 2)) * (i + 1), "mds", "rec", f"n{i}", LABELS, 0.9, 0.1) for i in range(2)]
    true = embedding_animation(frames, np.arange(30), radii=[1.0, 5.0], rescaled=False, trust_k=5)
    assert "true scale, RMS radius 1" in true.layout.title.text and "RMS radius 5" in true.frames[1].layout.title.text
    assert "Kruskal stress-1 0.100" in true.layout.title.text and "trustworthiness (k=5)" in true.layout.title.text
    scaled = embedding_animation(frames, np.arange(30), radii=[1.0, 5.0], rescaled=True)
    assert "rescaled to unit RMS radius (this one's: 5)" in scaled.frames[1].layout.title.text


def test_metrics_figure_has_axis_titles_and_names_its_metric():
    fig = metrics_figure([NodeMetrics("rec", ["a", "b"], [0.1, 0.2], [0.0, 0.3])], method="euclidean")
    assert fig.layout.xaxis.title.text == "node (graph order)" and fig.layout.xaxis2.title.text == "node (graph order)"
    assert fig.layout.yaxis.title.text and fig.layout.yaxis2.title.text == "mean silhouette"
    assert "squared Euclidean distance / D" in fig.layout.title.text and "√" in fig.layout.title.text
