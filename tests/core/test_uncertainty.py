"""Bootstrap intervals and ellipses of a path, and reliable difference RDMs, against rsatoolbox and numpy."""

from __future__ import annotations

import numpy as np
import rsatoolbox
import torch

from repgeom.core.comparisons import angles
from repgeom.core.paths import compute_path
from repgeom.core.rdm import RDM, compute_rdm, onehot_rdm, upper_triangle
from repgeom.core.uncertainty import bootstrap_indices, bootstrap_path, difference_rdm, rank_transform

LABELS = np.repeat(np.arange(4), 6)


def _rdms(noise: float, k: int = 3, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 10)) * 3
    return torch.stack([compute_rdm(torch.from_numpy(centres[LABELS] * (i + 1) + rng.normal(scale=noise, size=(24, 10))), "euclidean") for i in range(k)])


def test_bootstrap_resamples_within_class_and_is_seeded():
    idx = bootstrap_indices(LABELS, 50, seed=3)
    assert idx.shape == (50, 24)
    assert np.array_equal(LABELS[idx], np.broadcast_to(LABELS, idx.shape))
    assert np.array_equal(idx, bootstrap_indices(LABELS, 50, seed=3))
    assert len({tuple(r) for r in idx}) > 40


def test_a_sample_drops_self_pairs_like_rsatoolbox_pattern_subsampling():
    rdms = _rdms(1.0)
    idx = bootstrap_indices(LABELS, 1, seed=1)[0]
    t = torch.from_numpy(idx)
    rows, cols = np.triu_indices(24, 1)
    keep = torch.from_numpy(idx[rows] != idx[cols])
    ours = angles(rdms[:, t][:, :, t], "cosine", keep).numpy()
    rsa = rsatoolbox.rdm.RDMs(upper_triangle(rdms).numpy(), pattern_descriptors={"index": np.arange(24)})
    sub = rsa.subsample_pattern("index", idx)
    ref = np.arccos(np.clip(rsatoolbox.rdm.compare(sub, sub, method="cosine"), -1, 1))
    np.fill_diagonal(ref, 0)
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_intervals_and_ellipses_shrink_with_less_noise():
    def spread(noise):
        rdms = _rdms(noise)
        path = compute_path([RDM(r.numpy(), "m", f"n{i}", "euclidean", LABELS) for i, r in enumerate(rdms)], LABELS)
        mats = torch.cat([rdms, onehot_rdm(LABELS, "euclidean")[None]])
        u = bootstrap_path(mats, LABELS, "cosine", path.coords, n_boot=40, seed=0)
        assert u.distances.shape == (40, 4, 4) and u.ellipses.shape == (4, 2, 2)
        inside = (u.low <= path.distances + 1e-9) & (path.distances <= u.high + 1e-9)
        assert inside[np.triu_indices(4, 1)].mean() >= 0.8
        np.testing.assert_allclose(u.ellipses[1], np.cov(u.coords[:, 1].T), atol=1e-12)
        return float(np.mean(u.high - u.low)), float(np.mean(np.trace(u.ellipses, axis1=1, axis2=2)))

    wide, big = spread(4.0)
    narrow, small = spread(0.5)
    assert narrow < wide and small < big


def test_difference_rdm_is_antisymmetric_and_its_mask_finds_the_real_change():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 10)) * 3
    a = compute_rdm(torch.from_numpy(centres[LABELS] + rng.normal(scale=0.3, size=(24, 10))), "euclidean").numpy()
    swapped = LABELS.copy()
    swapped[LABELS == 1], swapped[LABELS == 2] = 0, 0  # B merges classes 0, 1, 2
    b = compute_rdm(torch.from_numpy(centres[swapped] + rng.normal(scale=0.3, size=(24, 10))), "euclidean").numpy()
    diff, mask = difference_rdm(a, b, LABELS, n_boot=60, seed=0)
    back, _ = difference_rdm(b, a, LABELS, n_boot=10, seed=0)
    assert np.array_equal(diff, -back) and np.array_equal(diff, diff.T) and np.all(np.diag(diff) == 0)
    between_merged = np.outer(LABELS == 0, LABELS == 1)
    assert mask[between_merged].mean() > 0.9 and np.all(diff[between_merged] > 0)
    same, same_mask = difference_rdm(a, a, LABELS, n_boot=10, seed=0)
    assert np.all(same == 0) and not same_mask.any()


def test_rank_transform_matches_rsatoolbox():
    m = _rdms(1.0, k=1)[0].numpy()
    ref = rsatoolbox.rdm.rank_transform(rsatoolbox.rdm.RDMs(upper_triangle(torch.from_numpy(m)).numpy())).get_matrices()[0]
    ours = rank_transform(m)
    ref_scaled = (ref - ref[np.triu_indices(24, 1)].min()) / np.ptp(ref[np.triu_indices(24, 1)])
    np.fill_diagonal(ref_scaled, 0)
    np.testing.assert_allclose(ours, ref_scaled, atol=1e-12)
