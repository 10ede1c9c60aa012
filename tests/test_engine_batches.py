"""The engine's batched and shortcut paths give what the one-at-a-time, float64 ways give."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch

from repgeom.pipeline import Engine, StimulusSpec

STEPS = ["conv2", "conv2_2", "conv2_4"]


@pytest.mark.parametrize("method", ["pca", "mds", "tsne"])
def test_embeddings_of_several_nodes_equal_each_node_alone(method):
    together, alone = Engine(), Engine()
    spec = together.spec(12)
    batch = together.embeddings("recurrent", STEPS, spec, method, seed=1, perplexity=20)
    for node, e in zip(STEPS, batch, strict=True):
        single = alone.embedding("recurrent", node, spec, method, seed=1, perplexity=20)
        np.testing.assert_array_equal(e.coords, single.coords)
        assert (e.trustworthiness, e.stress) == (single.trustworthiness, single.stress)


def test_path_angles_match_the_seeds_float64_rsatoolbox_pipeline(engine):
    spec = engine.spec(20)
    path = engine.path(["feedforward", "recurrent"], None, spec)
    feats = [engine.features(m, n, spec).double().numpy() for m in ("feedforward", "recurrent") for n in engine.nodes(m)]
    labels = engine.stimuli(spec).labels
    data = [*feats, np.eye(10)[labels]]
    rdms = rsatoolbox.rdm.calc_rdm([rsatoolbox.data.Dataset(d) for d in data], method="euclidean")
    ref = np.nan_to_num(np.arccos(np.clip(rsatoolbox.rdm.compare(rdms, rdms, method="cosine"), -1, 1)))
    ref = (ref + ref.T) / 2
    np.fill_diagonal(ref, 0)
    np.testing.assert_allclose(path.distances, ref, atol=1e-6)
    # identical activations (eval-mode dropout, flatten, every model's input) share one RDM
    chosen = {m: engine.nodes(m) for m in ("feedforward", "recurrent")}
    by_name = {r.name: r.matrix for r in engine._path_rdms(chosen, spec, "euclidean")}
    assert by_name["feedforward/max_pool2d"] is by_name["feedforward/flatten"] is by_name["feedforward/dropout1"]
    assert by_name["feedforward/input"] is by_name["recurrent/input"]
    assert by_name["feedforward/conv1"] is not by_name["feedforward/relu"]


def test_path_rdms_leave_the_views_float64_rdms_alone(engine):
    spec = engine.spec(5)
    engine.path(["recurrent"], None, spec)
    x = engine.features("recurrent", "conv2_4", spec).double().numpy()
    ref = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method="euclidean").get_matrices()[0]
    np.testing.assert_allclose(engine.rdm("recurrent", "conv2_4", spec, "euclidean").matrix, ref, rtol=1e-9, atol=1e-12)
    assert torch.get_default_dtype() == torch.float32


def test_seed_variability_yardstick_from_the_manifests_replicate(engine):
    assert engine.replicates("feedforward") == ["feedforward_seed2"] and engine.replicates("recurrent") == []
    spec = engine.spec(10)
    vari = engine.seed_variability("feedforward", ["input", "fc1", "softmax"], spec)
    path = engine.path(["feedforward", "feedforward_seed2"], {"feedforward": ["fc1"], "feedforward_seed2": ["fc1"]}, spec)
    assert vari["input"] == pytest.approx(0.0, abs=1e-6) and vari["fc1"] == pytest.approx(path.distances[0, 1], abs=1e-12) and vari["fc1"] > 0.01
    assert engine.seed_variability("recurrent", None, spec) == {}


def test_node_metrics_are_answered_again_after_their_arrays_are_evicted():
    """Per-node metrics live in a cache of small results: arrays that push RDMs out of a small main cache leave them."""
    from repgeom.core.metrics import block_contrast, silhouette

    engine = Engine(device="cpu", cache_bytes=2 << 20)  # holds about two RDMs of 400 stimuli
    spec = StimulusSpec(n_per_class=40)
    first = engine.node_metrics("recurrent", "all", spec)
    misses = engine.cache_info()["misses"]
    with engine.cached_only():  # nothing is computed: a miss would raise NotCached
        again = engine.node_metrics("recurrent", "all", spec)
    assert again == first and engine.cache_info()["misses"] == misses
    assert len(first.nodes) == len(engine.nodes("recurrent")) > 5
    rdm = engine.rdm("recurrent", first.nodes[-1], spec)  # the oracle: the same numbers from the RDM itself
    assert first.block_contrast[-1] == pytest.approx(block_contrast(rdm.matrix, rdm.labels), abs=1e-12)
    assert first.silhouette[-1] == pytest.approx(silhouette(rdm.matrix, rdm.labels, "correlation"), abs=1e-12)
