"""RDMs and comparisons against rsatoolbox and scipy on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch
from scipy.spatial.distance import pdist, squareform

from repgeom.core.errors import RepgeomError
from repgeom.core.rdm import (
    RDM,
    block_mean,
    block_stats,
    centred_gram,
    compare_rdms,
    compute_rdm,
    euclidean_distances,
    onehot_rdm,
    rdm_distances,
    symmetrised,
    upper_triangle,
)


def _features(n=60, d=300, seed=0, offset=5.0):
    rng = np.random.default_rng(seed)
    # a large common offset makes naive Gram-based distances lose precision
    return rng.normal(size=(n, d)) + offset + rng.normal(size=(1, d)) * 3


def _rsa_rdm(x, method):
    ds = rsatoolbox.data.Dataset(x)
    return rsatoolbox.rdm.calc_rdm(ds, method=method).get_matrices()[0]


@pytest.mark.parametrize("method", ["correlation", "euclidean"])
@pytest.mark.parametrize(("seed", "shape"), [(0, (60, 300)), (1, (60, 300)), (2, (300, 20)), (3, (300, 400)), (4, (500, 128))])
def test_rdm_matches_rsatoolbox(method, seed, shape):
    x = _features(*shape, seed=seed)
    ours = compute_rdm(torch.from_numpy(x), method).numpy()
    ref = _rsa_rdm(x, method)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-12 * np.abs(ref).max())
    ours32 = compute_rdm(torch.from_numpy(x).float(), method, dtype=torch.float32).numpy()
    np.testing.assert_allclose(ours32, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    # exact symmetry and zero diagonal hold by construction (compute_rdm ends with `symmetrised`)
    for r in (ours, ours32):
        np.testing.assert_array_equal(r, r.T)
        assert np.all(np.diag(r) == 0)


@pytest.mark.parametrize("centre", ["none", "columns", "rows"])
def test_blocked_centred_gram_equals_the_full_product(centre):
    x = torch.from_numpy(_features(301, 400, seed=8)).float()
    columns = x.double().mean(dim=0) if centre == "columns" else None
    rows = x.double().mean(dim=1) if centre == "rows" else None
    g, residual = centred_gram(x, torch.float64, columns, rows, block_bytes=301 * 8 * 7)  # blocks of 256 columns: two, the last partial
    y = x.double().numpy() - (columns.numpy() if columns is not None else 0.0) - (rows.numpy()[:, None] if rows is not None else 0.0)
    np.testing.assert_allclose(g.numpy(), y @ y.T, rtol=1e-12, atol=1e-12 * np.abs(y @ y.T).max())
    np.testing.assert_array_equal(g.numpy(), g.numpy().T)
    if centre == "rows":
        np.testing.assert_allclose(residual.numpy(), y.mean(axis=1), atol=1e-12)
    else:
        assert residual is None


def test_rdm_float32_features_match_rsatoolbox_on_real_activations(engine):
    spec = engine.spec(20)
    feats = engine.features("recurrent", "conv2_4", spec)
    for method in ("correlation", "euclidean"):
        ref = _rsa_rdm(feats.double().numpy(), method)
        ours = compute_rdm(feats, method).numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-9 * ref.max())


@pytest.mark.parametrize("shape", [(60, 300), (300, 20), (300, 400)])
def test_cosine_rdm_matches_scipy(shape):
    # rsatoolbox has no cosine RDM; scipy's pdist is the oracle
    x = _features(*shape, seed=3)
    ours = compute_rdm(torch.from_numpy(x), "cosine").numpy()
    np.testing.assert_allclose(ours, squareform(pdist(x, "cosine")), rtol=1e-5, atol=1e-12)
    np.testing.assert_array_equal(ours, ours.T)


def test_tall_blocked_product_equals_one_block():
    from repgeom.core import rdm as rdm_mod

    x = torch.from_numpy(_features(130, 7, seed=4))
    for method in ("correlation", "euclidean", "cosine"):
        whole = rdm_mod._augmented(x.double(), 7, method, x.double().mean(1) if method == "correlation" else None, block=1000)
        blocked = rdm_mod._augmented(x.double(), 7, method, x.double().mean(1) if method == "correlation" else None, block=32)
        np.testing.assert_allclose(blocked.numpy(), whole.numpy(), atol=1e-12)
        ref = squareform(pdist(x.numpy(), {"correlation": "correlation", "euclidean": "sqeuclidean", "cosine": "cosine"}[method]))
        np.testing.assert_allclose(blocked.numpy(), ref / (7 if method == "euclidean" else 1), rtol=1e-6, atol=1e-10)


def test_euclidean_is_squared_distance_over_features():
    x = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0]])
    r = compute_rdm(torch.from_numpy(x), "euclidean").numpy()
    assert r[0, 1] == pytest.approx(4 / 4)
    assert r[0, 2] == pytest.approx(4 / 4)
    assert r[1, 2] == pytest.approx((1 + 1 + 1 + 1) / 4)


def test_constant_rows_give_distance_one_not_nan():
    x = np.vstack([np.ones(10), np.arange(10.0), np.arange(10.0)[::-1]])
    r = compute_rdm(torch.from_numpy(x), "correlation").numpy()
    assert np.isfinite(r).all()
    assert r[0, 1] == pytest.approx(1.0)
    assert r[1, 2] == pytest.approx(2.0)


def test_unknown_method_lists_choices():
    with pytest.raises(RepgeomError, match="allowed: correlation, euclidean, cosine"):
        compute_rdm(torch.zeros(3, 2), "manhattan")


def test_onehot_labels_rdm_is_zero_within_and_point_two_between():
    labels = np.repeat(np.arange(10), 3)
    r = onehot_rdm(labels).numpy()
    same = labels[:, None] == labels[None, :]
    assert np.allclose(r[same], 0.0)
    assert np.allclose(r[~same], 0.2)
    np.testing.assert_allclose(r, _rsa_rdm(np.eye(10)[labels], "euclidean"), rtol=1e-5, atol=1e-12)


def _rsa_rdms(mats):
    n = mats[0].shape[0]
    iu = np.triu_indices(n, 1)
    return rsatoolbox.rdm.RDMs(np.stack([m[iu] for m in mats]))


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman"])
def test_compare_matches_rsatoolbox(method):
    rng = np.random.default_rng(7)
    mats = []
    for k in range(6):
        x = rng.normal(size=(40, 20 + k))
        mats.append(_rsa_rdm(x, "euclidean"))
    # ties for spearman: round one RDM
    mats.append(np.round(mats[0], 1))
    vec = upper_triangle(torch.from_numpy(np.stack(mats)))
    ours = compare_rdms(vec, method).numpy()
    r = _rsa_rdms(mats)
    ref = rsatoolbox.rdm.compare(r, r, method=method)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-10)


def test_angles_are_arccos_of_rsatoolbox_cosine_symmetrised():
    rng = np.random.default_rng(11)
    mats = [_rsa_rdm(rng.normal(size=(30, 8)), "euclidean") for _ in range(5)]
    ref = np.nan_to_num(np.arccos(np.clip(rsatoolbox.rdm.compare(_rsa_rdms(mats), _rsa_rdms(mats), method="cosine"), -1, 1)))
    ref = (ref + ref.T) / 2
    np.fill_diagonal(ref, 0)
    ours = rdm_distances(upper_triangle(torch.from_numpy(np.stack(mats))), "cosine").numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
    assert (ours >= 0).all() and (ours <= np.pi).all()


def test_zero_rdm_gets_angle_zero_as_the_seed_does():
    mats = np.stack([np.zeros((5, 5)), squareform(pdist(np.arange(5.0)[:, None]))])
    d = rdm_distances(upper_triangle(torch.from_numpy(mats)))
    assert torch.isfinite(d).all()
    assert d[0, 1] == 0.0


def _asymmetric_gram(x: np.ndarray) -> torch.Tensor:
    """``x xᵀ`` whose upper and lower triangles are summed in different orders (as a BLAS may do).

    The upper triangle sums the feature blocks first to last, the lower one last to first:
    the same numbers in another order, so entries ``ij`` and ``ji`` differ in the last bits.
    """
    blocks = np.array_split(np.arange(x.shape[1]), 7)
    forward = sum(x[:, b] @ x[:, b].T for b in blocks)
    backward = sum(x[:, b] @ x[:, b].T for b in blocks[::-1])
    g = np.triu(forward) + np.tril(backward, -1)
    assert (g != g.T).sum() > 0  # the adversary really is asymmetric
    return torch.from_numpy(g)


def test_symmetrised_makes_an_asymmetric_product_exactly_symmetric():
    x = _features(200, 300, seed=12)
    g = _asymmetric_gram(x)
    s = symmetrised(g)
    np.testing.assert_array_equal(s.numpy(), s.numpy().T)
    np.testing.assert_allclose(s.numpy(), x @ x.T, rtol=1e-12)
    d = symmetrised(g, zero_diagonal=True)
    assert np.all(np.diag(d.numpy()) == 0)
    np.testing.assert_array_equal(d.numpy(), d.numpy().T)
    # where the input was symmetric, nothing changes (a + a = 2a exactly, halving is exact)
    np.testing.assert_array_equal(symmetrised(s).numpy(), s.numpy())


@pytest.mark.parametrize("method", ["correlation", "euclidean", "cosine"])
@pytest.mark.parametrize("split", [0, 100])
def test_rdm_from_an_asymmetric_gram_is_exactly_symmetric(method, split):
    # an asymmetric product (as MKL on AMD or a GPU may return), made symmetric by the step
    # every product here ends with, gives an exactly symmetric RDM close to scipy's
    from repgeom.core import rdm as rdm_mod

    x = _features(200, 400, seed=13)
    x = x - x.mean(axis=1, keepdims=True) if method == "correlation" else x - x.mean(axis=0) if method == "euclidean" else x
    mean = torch.zeros(200, dtype=torch.float64) if method == "correlation" else None
    g = _asymmetric_gram(x)
    assert (rdm_mod._from_gram(g.clone(), 400, method, mean) != rdm_mod._from_gram(g.clone(), 400, method, mean).T).any()
    fixed = rdm_mod._mirror_halves_(g, split)
    assert torch.equal(fixed, fixed.T)
    r = rdm_mod._from_gram(fixed, 400, method, mean).fill_diagonal_(0.0).numpy()
    np.testing.assert_array_equal(r, r.T)
    ref = squareform(pdist(x, {"correlation": "correlation", "euclidean": "sqeuclidean", "cosine": "cosine"}[method]))
    np.testing.assert_allclose(r, ref / (400 if method == "euclidean" else 1), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(500, 128), (257, 3000), (2100, 30)])  # the fused, wide (blocked) and tall (augmented) paths
def test_every_rdm_path_is_exactly_symmetric_with_zero_diagonal(shape, dtype):
    x = torch.from_numpy(_features(*shape, seed=14)).to(dtype)
    for method in ("correlation", "euclidean", "cosine"):
        r = compute_rdm(x, method, dtype=dtype)
        assert torch.equal(r, r.T) and bool((r.diagonal() == 0).all()), method
    d = euclidean_distances(x, dtype)
    assert torch.equal(d, d.T) and bool((d.diagonal() == 0).all())
    g = centred_gram(x, dtype)[0]
    assert torch.equal(g, g.T)


def test_euclidean_distances_match_scipy():
    x = _features(150, 40, seed=15)
    np.testing.assert_allclose(euclidean_distances(torch.from_numpy(x)).numpy(), squareform(pdist(x)), rtol=1e-9, atol=1e-9)


def test_comparisons_and_angles_are_exactly_symmetric():
    rng = np.random.default_rng(16)
    vec = upper_triangle(torch.stack([compute_rdm(torch.from_numpy(rng.normal(size=(60, 9 + k))), "euclidean") for k in range(12)]))
    for method in ("cosine", "corr", "spearman"):
        sim = compare_rdms(vec, method)
        assert torch.equal(sim, sim.T), method
        ang = rdm_distances(vec, method)
        assert torch.equal(ang, ang.T) and bool((ang.diagonal() == 0).all()), method


def test_reduced_rdm_is_exactly_symmetric_block_means():
    x = _features(103, 20, seed=17)
    labels = np.arange(103) % 10
    full = RDM(compute_rdm(torch.from_numpy(x), "correlation").numpy(), "m", "n", "correlation", np.sort(labels))
    small = full.reduced(10)
    np.testing.assert_array_equal(small.matrix, small.matrix.T)
    edges = small.bins
    i, j = 2, 7
    np.testing.assert_allclose(small.matrix[i, j], full.matrix[edges[i] : edges[i + 1], edges[j] : edges[j + 1]].mean(), rtol=1e-12)


@pytest.mark.parametrize(
    ("rows", "cols"),
    [
        (np.arange(20, 31), np.arange(60, 68)),  # two runs: every entry is a pair
        (np.arange(40, 52), np.arange(40, 52)),  # a diagonal block: each pair twice, and 12 self-pairs
        (np.arange(10, 20), np.arange(15, 25)),  # overlapping runs
    ],
)
def test_block_stats_match_numpy_over_the_blocks_pairs(rows, cols):
    """Mean over the block as the map shows it; spread over its distinct pairs of two different stimuli."""
    x = _features(90, 15, seed=5)
    full = compute_rdm(torch.from_numpy(x), "correlation").numpy()
    stats = block_stats(full, rows, cols)
    pairs = {(min(a, b), max(a, b)) for a in rows.tolist() for b in cols.tolist() if a != b}
    values = np.array([full[a, b] for a, b in sorted(pairs)])
    assert stats.pairs == len(pairs)
    np.testing.assert_allclose(stats.mean, np.mean([[full[a, b] for b in cols] for a in rows]), rtol=1e-12)
    np.testing.assert_allclose(
        [stats.pair_mean, stats.sd, stats.low, stats.high], [values.mean(), values.std(), values.min(), values.max()], rtol=1e-12
    )
    # the map's cell for a block of its bins is the statistics' mean
    edges = np.array([0, 20, 31, 60, 68, 90])
    if rows[0] == 20 and cols[0] == 60:
        np.testing.assert_allclose(block_mean(full, edges)[1, 3], stats.mean, rtol=1e-12)


def test_block_stats_of_a_single_stimulus_have_no_pairs():
    full = compute_rdm(torch.from_numpy(_features(5, 4, seed=1)), "euclidean").numpy()
    stats = block_stats(full, np.array([2]), np.array([2]))
    assert stats.pairs == 0 and stats.mean == 0.0 and np.isnan(stats.sd)
