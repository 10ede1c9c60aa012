"""New RDM comparisons against rsatoolbox's compare and a direct CKA formula."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch

from repgeom.core.comparisons import kendall_tau_a, linear_cka, whitened_similarity
from repgeom.core.rdm import compute_rdm, upper_triangle


@pytest.fixture(scope="module")
def rdm_stack():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 12))
    feats = [torch.from_numpy(base @ rng.normal(size=(12, d)) + rng.normal(scale=s, size=(40, d))) for d, s in ((20, 0.1), (8, 1.0), (30, 3.0))]
    rdms = torch.stack([compute_rdm(f, "euclidean") for f in feats])
    return feats, rdms


def _rsa(rdms: torch.Tensor) -> rsatoolbox.rdm.RDMs:
    return rsatoolbox.rdm.RDMs(upper_triangle(rdms).numpy())


@pytest.mark.parametrize(("method", "centre"), [("cosine_cov", False), ("corr_cov", True)])
def test_whitened_comparisons_equal_rsatoolbox(rdm_stack, method, centre):
    _, rdms = rdm_stack
    ours = whitened_similarity(rdms, centre=centre).numpy()
    ref = rsatoolbox.rdm.compare(_rsa(rdms), _rsa(rdms), method=method)
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    assert np.array_equal(ours, ours.T)


def test_tau_a_equals_rsatoolbox_with_ties():
    rng = np.random.default_rng(1)
    vectors = rng.integers(0, 6, size=(3, 300)).astype(np.float64)  # many ties
    ours = kendall_tau_a(vectors).numpy()
    ref = rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(vectors), rsatoolbox.rdm.RDMs(vectors), method="tau-a")
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_linear_cka_equals_the_direct_formula_and_is_invariant_to_rotation(rdm_stack):
    feats, _ = rdm_stack

    def direct(x, y):
        x = x - x.mean(0)
        y = y - y.mean(0)
        return (np.linalg.norm(y.T @ x) ** 2) / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))

    ours = linear_cka(feats).numpy()
    for i in range(3):
        for j in range(3):
            assert ours[i, j] == pytest.approx(direct(feats[i].numpy(), feats[j].numpy()), abs=1e-10)
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(20, 20)))
    rotated = linear_cka([feats[0], feats[0] @ torch.from_numpy(q) * 3.0]).numpy()
    assert rotated[0, 1] == pytest.approx(1.0, abs=1e-10)
