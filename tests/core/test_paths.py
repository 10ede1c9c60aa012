"""The representational path against the seed's pipeline (rsatoolbox + scikit-learn MDS)."""

from __future__ import annotations

import numpy as np
import rsatoolbox
import torch
from sklearn.manifold import MDS

from repgeom.core.embedding import stress1
from repgeom.core.paths import compute_path
from repgeom.core.rdm import RDM, compute_rdm


def _toy_rdms():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(10), 4)
    onehot = np.eye(10)[labels]
    feats = {}
    x = rng.normal(size=(40, 30))
    for step in range(6):  # features drift from noise towards the labels
        feats[f"n{step}"] = (1 - step / 5) * x + (step / 5) * onehot @ rng.normal(size=(10, 30)) * 3
    rdms = [RDM(compute_rdm(torch.from_numpy(v), "euclidean").numpy(), "toy", k, "euclidean", labels) for k, v in feats.items()]
    rdms.insert(0, RDM(compute_rdm(torch.from_numpy(x), "euclidean").numpy(), "toy", "input", "euclidean", labels))
    rdms.append(RDM(rdms[0].matrix, "other", "input", "euclidean", labels))
    return rdms, labels, feats, x


def test_path_distances_match_the_seeds_rsatoolbox_pipeline():
    rdms, labels, feats, x = _toy_rdms()
    path = compute_path(rdms, labels)
    # the seed: calc_rdm euclidean, labels RDM from one-hot, compare cosine, arccos, nan->0, symmetrise
    data = [x, *feats.values(), x, np.eye(10)[labels].astype(float)]
    ref_rdms = rsatoolbox.rdm.calc_rdm([rsatoolbox.data.Dataset(d) for d in data], method="euclidean")
    sim = rsatoolbox.rdm.compare(ref_rdms, ref_rdms, method="cosine")
    ref = np.nan_to_num(np.arccos(np.clip(sim, -1, 1)))
    ref = (ref + ref.T) / 2
    np.fill_diagonal(ref, 0)
    np.testing.assert_allclose(path.distances, ref, rtol=1e-5, atol=1e-7)
    assert path.names[-1] == "labels" and path.names[0] == "toy/input"
    # the duplicate input is embedded but dropped from the display rows
    assert len(path.coords) == len(rdms) + 1
    assert path.names[path.display_rows[-2]] == "toy/n5"
    assert "other/input" not in [path.names[i] for i in path.display_rows]


def test_path_mds_stress_no_higher_than_the_seeds_mds():
    rdms, labels, *_ = _toy_rdms()
    path = compute_path(rdms, labels, seed=0)
    ref = MDS(n_components=2, max_iter=1000, n_init=10, metric="precomputed", init="random", random_state=0).fit_transform(path.distances)
    assert path.stress == stress1(path.distances, path.coords)
    assert path.stress <= stress1(path.distances, ref) + 1e-4


def test_path_is_seeded():
    rdms, labels, *_ = _toy_rdms()
    a, b = compute_path(rdms, labels, seed=3), compute_path(rdms, labels, seed=3)
    np.testing.assert_array_equal(a.coords, b.coords)


def test_path_with_corr_and_spearman():
    rdms, labels, *_ = _toy_rdms()
    for method in ("corr", "spearman"):
        p = compute_path(rdms, labels, compare=method)
        assert np.isfinite(p.distances).all()
        assert p.compare == method


def test_path_distances_are_exactly_symmetric_from_float32_rdms():
    rdms, labels, *_ = _toy_rdms()
    rdms32 = [RDM(r.matrix.astype(np.float32).astype(np.float64), r.model, r.node, r.method, labels) for r in rdms]
    for compare in ("cosine", "corr", "spearman"):
        d = compute_path(rdms32, labels, compare=compare).distances
        np.testing.assert_array_equal(d, d.T)
        assert np.all(np.diag(d) == 0)
