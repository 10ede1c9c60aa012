"""RDMs and comparisons against rsatoolbox and scipy on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch
from scipy.spatial.distance import pdist, squareform

from repgeom.core.errors import RepgeomError
from repgeom.core.rdm import compare_rdms, compute_rdm, onehot_rdm, rdm_distances, upper_triangle


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
    for dtype in (torch.float32,):  # the float32 path stays within the same tolerance
        np.testing.assert_allclose(compute_rdm(torch.from_numpy(x), method, dtype=dtype).numpy(), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    assert np.all(np.diag(ours) == 0)
    np.testing.assert_array_equal(ours, ours.T)
    ours32 = compute_rdm(torch.from_numpy(x).float(), method, dtype=torch.float32).numpy()
    np.testing.assert_array_equal(ours32, ours32.T)
    assert np.all(np.diag(ours32) == 0)


@pytest.mark.parametrize("centre", ["none", "columns", "rows"])
def test_blocked_centred_gram_equals_the_full_product(monkeypatch, centre):
    import repgeom.core.rdm as rdm

    monkeypatch.setattr(rdm, "GRAM_BLOCK_BYTES", 301 * 8 * 7)  # blocks of 256 columns: two, the last partial
    x = torch.from_numpy(_features(301, 400, seed=8)).float()
    columns = x.double().mean(dim=0) if centre == "columns" else None
    rows = x.double().mean(dim=1) if centre == "rows" else None
    g, residual = rdm.centred_gram(x, torch.float64, columns, rows)
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
        np.testing.assert_array_equal(blocked.numpy(), blocked.numpy().T)


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
