"""Embeddings against scikit-learn and scipy on the same inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform
from sklearn.decomposition import PCA
from sklearn.manifold import MDS, TSNE, trustworthiness
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

import repgeom.core.embedding as emb
from repgeom.core.embedding import (
    MdsOptions,
    TsneOptions,
    align_sequence,
    clamp_perplexity,
    classical_mds,
    embed,
    euclidean_distances,
    pca_2d,
    smacof,
    stress1,
    tsne_2d,
)
from repgeom.core.embedding.tsne import exact_knn
from repgeom.core.errors import RepgeomError


def _blobs(n=120, d=30, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4, size=(4, d))
    labels = np.arange(n) % 4
    return centers[labels] + rng.normal(size=(n, d)) + 10.0, labels


def test_euclidean_distances_match_scipy():
    x, _ = _blobs()
    np.testing.assert_allclose(euclidean_distances(torch.from_numpy(x)).numpy(), squareform(pdist(x)), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("shape", [(50, 200), (300, 20)])
def test_pca_matches_sklearn_including_signs(shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape) @ np.diag(np.linspace(3, 0.1, shape[1]))
    ours = pca_2d(torch.from_numpy(x)).numpy()
    ref = PCA(n_components=2, svd_solver="full").fit_transform(x)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(50, 200), (300, 20)])
def test_pca_carries_its_share_of_variance_as_sklearn_measures_it(shape):
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape) @ np.diag(np.linspace(3, 0.1, shape[1]))
    e = embed(torch.from_numpy(x), "pca", np.zeros(shape[0], dtype=int))
    np.testing.assert_allclose(e.explained, PCA(n_components=2, svd_solver="full").fit(x).explained_variance_ratio_, rtol=1e-6)
    assert embed(torch.from_numpy(x), "mds", np.zeros(shape[0], dtype=int)).explained is None
    assert emb.variance_shares(torch.ones(5, 3), np.zeros((5, 2))) is None  # features that do not vary


def test_classical_mds_recovers_an_exact_planar_configuration():
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(40, 2))
    d = torch.from_numpy(squareform(pdist(pts)))
    y = classical_mds(d).numpy()
    np.testing.assert_allclose(squareform(pdist(y)), d.numpy(), atol=1e-9)


def test_stress1_equals_sklearn_normalized_stress():
    x, _ = _blobs(60, 10)
    d = squareform(pdist(x))
    mds = MDS(n_components=2, metric="precomputed", n_init=1, init="random", random_state=0, normalized_stress=True, max_iter=300)
    coords = mds.fit_transform(d)
    assert stress1(d, coords) == pytest.approx(mds.stress_, rel=0.05)


def test_smacof_stress_no_higher_than_sklearn_with_restarts():
    x, _ = _blobs(160, 40, seed=4)
    d = squareform(pdist(x))
    _, ours, _ = smacof(torch.from_numpy(d))
    ref = MDS(n_components=2, metric="precomputed", n_init=4, init="random", random_state=0, normalized_stress=True).fit_transform(d)
    assert ours <= stress1(d, ref) + 1e-3


def test_trustworthiness_is_sklearns():
    x, labels = _blobs()
    e = embed(torch.from_numpy(x), "pca", labels)
    assert e.trustworthiness == pytest.approx(trustworthiness(x, e.coords, n_neighbors=5), abs=1e-9)
    assert 0.5 < e.trustworthiness <= 1.0


def test_tsne_is_seeded_and_reproducible():
    x, labels = _blobs(90, 10)
    a = embed(torch.from_numpy(x), "tsne", labels, seed=3, perplexity=20)
    b = embed(torch.from_numpy(x), "tsne", labels, seed=3, perplexity=20)
    np.testing.assert_array_equal(a.coords, b.coords)
    assert a.perplexity == 20
    assert a.trustworthiness > 0.9


def test_perplexity_clamped_below_n_over_3_with_warning():
    with pytest.warns(UserWarning, match="lowered"):
        p = clamp_perplexity(40, 30)
    assert p < 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clamp_perplexity(40, 500) == 40
    with pytest.raises(RepgeomError, match="perplexity must be from 1 to 100"):
        clamp_perplexity(0.5, 500)


def test_small_n_tsne_runs_with_clamped_perplexity():
    x, labels = _blobs(20, 5)
    with pytest.warns(UserWarning):
        e = embed(torch.from_numpy(x), "tsne", labels, perplexity=40)
    assert e.perplexity < 20 / 3
    assert e.coords.shape == (20, 2)


def _clustered(n, d=120, k=10, seed=0):
    """k clusters in d dimensions, each a noisy 4-D linear manifold (local structure to keep)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d))
    mixing = rng.normal(size=(k, 4, d))
    labels = np.arange(n) % k
    latent = rng.normal(size=(n, 4))
    x = centres[labels] + 0.5 * np.einsum("nl,nld->nd", latent, mixing[labels]) + rng.normal(scale=0.3, size=(n, d))
    return x, labels


@pytest.mark.parametrize("path", ["exact", "barnes-hut"])
def test_tsne_trustworthiness_matches_sklearn_and_is_seeded(path):
    options = TsneOptions(exact_max=100) if path == "barnes-hut" else TsneOptions()
    x, _ = _clustered(300)
    ours, p = tsne_2d(torch.from_numpy(x), 30, seed=0, options=options)
    ref = TSNE(n_components=2, perplexity=30, random_state=0).fit_transform(x)
    trust_ref = trustworthiness(x, ref, n_neighbors=5)
    assert trustworthiness(x, ours, n_neighbors=5) >= trust_ref - 0.01
    assert trust_ref > trustworthiness(x, pca_2d(torch.from_numpy(x)).numpy(), n_neighbors=5) + 0.01  # the bar is above PCA's
    np.testing.assert_array_equal(tsne_2d(torch.from_numpy(x), 30, seed=0, options=options)[0], ours)
    assert not np.allclose(tsne_2d(torch.from_numpy(x), 30, seed=1, options=options)[0], ours)
    assert p == 30 and ours.shape == (300, 2) and ours.dtype == np.float64


@pytest.mark.parametrize("randomized_above", [None, 20])
def test_pca_scores_match_sklearn(randomized_above):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 120)) @ np.diag(np.geomspace(10, 0.01, 120)) + 3.0
    ours = emb.pca_scores(torch.from_numpy(x), 50, seed=0, randomized_above=randomized_above).numpy()
    ref = PCA(n_components=50, svd_solver="full").fit_transform(x)
    np.testing.assert_allclose(ours[:, :10], ref[:, :10], atol=1e-6 * np.abs(ref).max())
    np.testing.assert_allclose(ours.var(axis=0), ref.var(axis=0), rtol=1e-3)  # the variance kept, to the last


def test_tsne_neighbours_are_exact():
    x = np.random.default_rng(6).normal(size=(700, 12))
    idx, dist = exact_knn(torch.from_numpy(x), 9, block=256)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=9).fit(x).kneighbors()
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-9)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_tsne_of_a_handful_of_stimuli(n):
    x, labels = _blobs(12, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the perplexity clamp
        e = embed(torch.from_numpy(x[:n]), "tsne", labels[:n])
    assert e.coords.shape == (n, 2) and np.isfinite(e.coords).all()
    assert e.perplexity <= max((n - 1) / 3, 1.0)


def test_tsne_of_identical_stimuli_is_finite():
    e = embed(torch.ones(30, 8), "tsne", np.zeros(30, int), perplexity=5)
    assert e.coords.shape == (30, 2) and np.isfinite(e.coords).all()


def test_unknown_method_lists_choices():
    with pytest.raises(RepgeomError, match="allowed: pca, mds, tsne"):
        embed(torch.zeros(5, 2), "umap", np.zeros(5, int))


def test_procrustes_alignment_removes_rotation_and_keeps_shape():
    x, labels = _blobs(40, 2)
    base = embed(torch.from_numpy(x), "pca", labels)
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ np.diag([1, -1])
    turned = base.__class__(**{**base.__dict__, "coords": base.coords @ rot + 7})
    a, b = align_sequence([base, turned])
    np.testing.assert_allclose(b.coords, a.coords, atol=1e-9)
    np.testing.assert_allclose(squareform(pdist(b.coords)), squareform(pdist(turned.coords)), atol=1e-9)
    big = base.__class__(**{**base.__dict__, "coords": base.coords @ rot * 10})
    a, b = align_sequence([base, big], rescale=True)
    np.testing.assert_allclose(b.coords, a.coords, atol=1e-9)
    assert np.sqrt((a.coords**2).sum(1).mean()) == pytest.approx(1.0)


def test_large_n_tsne_uses_fft_branch_seeded():
    # its grid has a floor: short runs keep this quick
    options = TsneOptions(exact_max=50, fft_above=50, fft_iterations=(100, 100))
    x, labels = _blobs(120, 10)
    a = emb.embed(torch.from_numpy(x), "tsne", labels, seed=1, perplexity=20, tsne_options=options)
    b = emb.embed(torch.from_numpy(x), "tsne", labels, seed=1, perplexity=20, tsne_options=options)
    np.testing.assert_array_equal(a.coords, b.coords)
    assert a.trustworthiness > 0.9


def test_large_n_fft_tsne_separates_clusters_as_well_as_sklearn():
    x, labels = _clustered(4000)
    coords, _ = tsne_2d(torch.from_numpy(x), 40, seed=0, options=TsneOptions(fft_above=3000))
    assert cross_val_score(KNeighborsClassifier(5), coords, labels, cv=5).mean() >= 0.95
    pick = np.sort(np.random.default_rng(0).choice(4000, 1000, replace=False))
    ref = TSNE(n_components=2, perplexity=40, random_state=0).fit_transform(x[pick])
    assert trustworthiness(x[pick], coords[pick], n_neighbors=5) >= trustworthiness(x[pick], ref, n_neighbors=5) - 0.01


def test_trustworthiness_on_a_sample_above_the_limit():
    x, labels = _blobs(120, 10)
    e = emb.embed(torch.from_numpy(x), "pca", labels, seed=2, trust_sample=60)
    pick = np.sort(np.random.default_rng(2).choice(120, 60, replace=False))
    assert e.trustworthiness == pytest.approx(trustworthiness(x[pick], e.coords[pick], n_neighbors=5), abs=1e-9)


def test_mds_refused_above_its_limit_with_the_alternatives():
    x, labels = _blobs(60, 4)
    with pytest.raises(RepgeomError, match="MDS is offered up to 50 stimuli.*PCA or t-SNE"):
        emb.embed(torch.from_numpy(x), "mds", labels, mds_options=MdsOptions(max_n=50))


def test_top_eigenpairs_match_eigh():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(300, 80)) @ np.diag(np.geomspace(5, 0.1, 80))
    g = torch.from_numpy(x @ x.T)
    vals, vecs = emb.top_eigh(g, 4)
    ref_vals, ref_vecs = np.linalg.eigh(g.numpy())
    np.testing.assert_allclose(vals.numpy(), ref_vals[::-1][:4], rtol=1e-10)
    np.testing.assert_allclose(np.abs(vecs.numpy().T @ ref_vecs[:, ::-1][:, :4]), np.eye(4), atol=1e-8)


@pytest.mark.parametrize("shape", [(80, 200), (300, 20)])
def test_pca_from_precomputed_distances_matches_sklearn(shape):
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape) @ np.diag(np.linspace(3, 0.1, shape[1])) + 2.0
    ours = pca_2d(torch.from_numpy(x), euclidean_distances(torch.from_numpy(x))).numpy()
    ref = PCA(n_components=2, svd_solver="full").fit_transform(x)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("k", [1, 5, 12])
def test_trustworthiness_by_counting_is_sklearns(k):
    from repgeom.core.embedding import trustworthiness_from_distances

    x, _ = _blobs(150, 20, seed=k)
    coords = x[:, :2] + np.random.default_rng(k).normal(scale=2.0, size=(150, 2))
    ours = trustworthiness_from_distances(torch.from_numpy(squareform(pdist(x))), coords, n_neighbors=k)
    assert ours == pytest.approx(trustworthiness(x, coords, n_neighbors=k), abs=1e-12)


@pytest.mark.parametrize("method", ["pca", "mds", "tsne"])
def test_a_batch_of_nodes_embeds_each_as_alone(method):
    from repgeom.core.embedding import embed_many

    sets = [torch.from_numpy(_clustered(240, d=40 + 10 * i, seed=i)[0]) for i in range(3)]
    labels = np.arange(240) % 10
    many = embed_many(sets, method, labels, "m", ["a", "b", "c"], seed=2, perplexity=30)
    for feats, node, e in zip(sets, "abc", many, strict=True):
        alone = embed(feats, method, labels, "m", node, seed=2, perplexity=30)
        np.testing.assert_array_equal(e.coords, alone.coords)
        assert (e.node, e.trustworthiness, e.stress) == (node, alone.trustworthiness, alone.stress)


def test_mds_embedding_stress_no_higher_than_sklearns_four_random_starts():
    for seed in range(2):
        x, labels = _clustered(300, d=60, seed=seed)
        d = squareform(pdist(x))
        e = embed(torch.from_numpy(x), "mds", labels, seed=0)
        ref = MDS(n_components=2, metric="precomputed", n_init=4, init="random", random_state=0, normalized_stress="auto", max_iter=300).fit_transform(d)
        assert e.stress == pytest.approx(stress1(d, e.coords), abs=1e-12)
        assert e.stress <= stress1(d, ref) + 1e-9


def test_smacof_batch_of_starts_keeps_the_best():
    from repgeom.core.embedding import smacof_many

    x, _ = _blobs(100, 12, seed=5)
    d = torch.from_numpy(squareform(pdist(x)))
    gen = torch.Generator().manual_seed(0)
    starts = torch.rand(1, 5, 100, 2, generator=gen, dtype=torch.float64)
    alone = [smacof_many(d[None], starts[:, i : i + 1], max_iter=500, eps=1e-9)[0][1] for i in range(5)]
    raced = smacof_many(d[None], starts, max_iter=500, eps=1e-9)[0][1]
    assert raced == pytest.approx(min(alone), abs=1e-12)


def test_mds_options_are_used():
    x, labels = _clustered(120, d=30, seed=3)
    one = embed(torch.from_numpy(x), "mds", labels, mds_options=MdsOptions(starts=1, race=()))
    classical = classical_mds(euclidean_distances(torch.from_numpy(x)))
    alone = emb.smacof_many(euclidean_distances(torch.from_numpy(x))[None], classical[None, None], max_iter=400, eps=1e-7)[0]
    np.testing.assert_allclose(one.coords, alone[0].numpy(), atol=1e-9)  # one start: plain SMACOF from the classical start
    capped = embed(torch.from_numpy(x), "mds", labels, mds_options=MdsOptions(max_iter=2))
    assert capped.stress > embed(torch.from_numpy(x), "mds", labels).stress


def test_tsne_options_set_the_iterations():
    x, labels = _blobs(80, 6)
    short = emb.tsne_2d(torch.from_numpy(x), 15, options=TsneOptions(exact_iterations=(0, 0)))[0]
    start = emb.tsne_2d(torch.from_numpy(x), 15, options=TsneOptions(exact_iterations=(0, 0)))[0]
    full = emb.tsne_2d(torch.from_numpy(x), 15)[0]
    np.testing.assert_array_equal(short, start)
    assert np.abs(full).max() > 100 * np.abs(short).max()  # no steps: the start (std 1e-4) is returned
