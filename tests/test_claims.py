"""The seed's claims (seed-reference §6), checked on the shipped checkpoints and embedded probes."""

from __future__ import annotations

import numpy as np
import pytest

STEPS = ["conv2", "conv2_1", "conv2_2", "conv2_3", "conv2_4"]


def test_recurrent_block_contrast_grows_across_steps(engine):
    m = engine.node_metrics("recurrent", STEPS, engine.spec(20), "correlation")
    c = m.block_contrast
    assert c[-1] > 1.5 * c[0], c
    assert sum(b > a for a, b in zip(c, c[1:], strict=False)) >= 3, c


def test_recurrent_class_separation_grows_across_steps(engine):
    m = engine.node_metrics("recurrent", STEPS, engine.spec(50), "euclidean")
    s = m.silhouette
    assert s[-1] > s[0] + 0.05, s
    assert sum(b > a for a, b in zip(s, s[1:], strict=False)) >= 3, s


@pytest.mark.parametrize("model", ["feedforward", "recurrent", "robust", "feedforward_seed2"])
def test_path_ends_much_closer_to_labels_than_it_starts(engine, model):
    path = engine.path([model], None, engine.spec(50))
    to_labels = path.to_labels
    assert path.nodes[0] == "input" and path.nodes[-2] == "softmax"
    assert to_labels[-2] < 0.5 * to_labels[0], to_labels


def test_feedforward_and_recurrent_take_different_paths(engine):
    path = engine.path(["feedforward", "recurrent"], None, engine.spec(50))
    d = path.distances
    ff, rec = path.rows_of("feedforward")[1:], path.rows_of("recurrent")[1:]
    # a typical recurrent node is far from every feedforward node: the routes differ ...
    nearest = d[np.ix_(rec, ff)].min(axis=1)
    assert np.median(nearest) > 0.1, nearest
    # ... though both arrive near the labels
    assert path.to_labels[ff[-1]] < 0.5 * path.to_labels[0]
    assert path.to_labels[rec[-1]] < 0.5 * path.to_labels[0]


def test_fgsm_collapses_the_standard_model_but_not_the_robust_one(engine):
    late = ["fc2"]
    clean = engine.spec(20)
    std_clean = engine.node_metrics("feedforward", late, clean).block_contrast[0]
    rob_clean = engine.node_metrics("robust", late, clean).block_contrast[0]
    std_adv = engine.node_metrics("feedforward", late, engine.spec(20, "fgsm", 0.2, "feedforward")).block_contrast[0]
    rob_adv = engine.node_metrics("robust", late, engine.spec(20, "fgsm", 0.2, "robust")).block_contrast[0]
    assert std_adv < 0.6 * std_clean, (std_clean, std_adv)
    assert rob_adv > 0.8 * rob_clean, (rob_clean, rob_adv)
    assert rob_adv > 1.5 * std_adv
