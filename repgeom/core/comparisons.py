"""RDM comparisons beyond the cosine of upper triangles: whitened (rsatoolbox's ``cosine_cov``, ``corr_cov``), Kendall's tau-a, and linear CKA.

Design notes:
    *Whitened comparisons.* rsatoolbox's ``cosine_cov`` weights RDM entries by the
    inverse of their covariance under i.i.d. pattern noise. With no pattern covariance
    given, that equals the cosine between the doubly centred second-moment matrices
    ``G = -½ H D H`` (``H`` the centring matrix), compared with the Frobenius inner
    product (rsatoolbox computes it the same way, as a linear CKA of the RDMs).
    ``corr_cov`` subtracts each RDM's mean dissimilarity first.

    *Kendall's tau-a* counts concordant minus discordant pairs of entries over all
    pairs, ties included in the denominator (rsatoolbox's ``tau-a``, the comparison
    Nili et al. recommend for RDMs with tied predictions). It is computed from scipy's
    tau-b and the tie counts, in O(P log P) per pair of RDMs.

    *Linear CKA* (Kornblith et al. 2019) compares the features, not their RDMs:
    ``<Kc_i, Kc_j>_F / (|Kc_i| |Kc_j|)`` with ``Kc = H X Xᵀ H``, the feature Gram matrix
    with centred columns.

    Every function returns similarities in [-1, 1] as a (K, K) matrix, exactly
    symmetric by construction (:func:`~repgeom.core.rdm.symmetrised`), with ones on the
    diagonal where defined.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .rdm import centred_gram, symmetrised

__all__ = ["COMPARISON_DEFINITIONS", "PATH_COMPARISONS", "angles", "doubly_centred", "kendall_tau_a", "linear_cka", "whitened_similarity"]


def doubly_centred(rdms: torch.Tensor) -> torch.Tensor:
    """``-½ H D H`` for each (N, N) dissimilarity matrix of a (K, N, N) stack (float64)."""
    d = rdms.to(torch.float64)
    d = d - d.mean(dim=-1, keepdim=True)
    d = d - d.mean(dim=-2, keepdim=True)
    return -0.5 * d


def _cosine_matrix(flat: torch.Tensor) -> torch.Tensor:
    norms = torch.linalg.vector_norm(flat, dim=1, keepdim=True)
    unit = flat / norms
    return symmetrised(unit @ unit.T).clamp_(-1.0, 1.0)


def whitened_similarity(rdms: torch.Tensor, centre: bool = False) -> torch.Tensor:
    """Rsatoolbox's ``cosine_cov`` (``centre=False``) or ``corr_cov`` (``centre=True``) between RDMs.

    Args:
        rdms: (K, N, N) symmetric dissimilarity matrices with zero diagonals.
        centre: subtract each RDM's mean off-diagonal dissimilarity first (``corr_cov``).

    Returns:
        (K, K) float64 similarities.
    """
    d = rdms.to(torch.float64)
    if centre:
        n = d.shape[-1]
        off = 1.0 - torch.eye(n, dtype=d.dtype, device=d.device)
        mean = d.sum(dim=(-1, -2), keepdim=True) / (n * (n - 1))
        d = d - mean * off
    g = doubly_centred(d)
    return _cosine_matrix(g.reshape(g.shape[0], -1))


def kendall_tau_a(vectors: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Kendall's tau-a between every pair of RDM vectors.

    Args:
        vectors: (K, P) upper-triangle vectors.

    Returns:
        (K, K) float64 tau-a values (1 on the diagonal for a vector with two distinct values).
    """
    from scipy.stats import kendalltau  # noqa: PLC0415 - scipy.stats costs 0.3 s to import

    v = np.asarray(vectors.cpu().numpy() if isinstance(vectors, torch.Tensor) else vectors, dtype=np.float64)
    k, p = v.shape
    n0 = p * (p - 1) / 2
    ties = [_tied_pairs(row) for row in v]
    out = np.eye(k)
    for i in range(k):
        out[i, i] = (n0 - ties[i]) / n0
        for j in range(i + 1, k):
            tau_b = kendalltau(v[i], v[j], variant="b").statistic
            scale = np.sqrt((n0 - ties[i]) * (n0 - ties[j]))
            out[i, j] = out[j, i] = 0.0 if not np.isfinite(tau_b) else tau_b * scale / n0
    return torch.from_numpy(out)


def _tied_pairs(row: np.ndarray) -> float:
    _, counts = np.unique(row, return_counts=True)
    return float((counts * (counts - 1) / 2).sum())


def linear_cka(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Linear CKA between the representations of the same N stimuli.

    Args:
        features: K tensors of shape (N, D_k) (widths may differ).

    Returns:
        (K, K) float64 CKA values in [0, 1].
    """
    grams = []
    for x in features:
        x64 = x.to(torch.float64)
        g, _ = centred_gram(x64, torch.float64, columns=x64.mean(dim=0))
        grams.append(g.reshape(-1))
    return _cosine_matrix(torch.stack(grams))


#: Every comparison a path can use, each turned into an angle (``arccos`` of the similarity).
PATH_COMPARISONS = ("cosine", "corr", "spearman", "cosine_cov", "corr_cov", "tau_a", "cka")
#: What each compares, in a line (written beside the chooser and in figure titles).
COMPARISON_DEFINITIONS = {
    "cosine": "angle between the RDMs' upper triangles (uncentred cosine, as the seed)",
    "corr": "angle of the Pearson correlation of the RDMs' upper triangles",
    "spearman": "angle of the Spearman rank correlation of the RDMs' upper triangles",
    "cosine_cov": "angle of rsatoolbox's whitened cosine (doubly centred RDMs, i.i.d. noise)",
    "corr_cov": "angle of rsatoolbox's whitened correlation (mean-removed, doubly centred RDMs)",
    "tau_a": "angle of Kendall's tau-a between the RDMs' upper triangles (ties counted)",
    "cka": "angle of the linear CKA of the features (centred Gram matrices, not RDMs)",
}


def angles(matrices: torch.Tensor, method: str, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Angles between path points, ``arccos`` of their similarity under ``method``.

    Args:
        matrices: (K, N, N): RDMs for every method but ``cka``, for which they are the
            features' centred Gram matrices.
        method: one of :data:`PATH_COMPARISONS`.
        keep: (P,) boolean mask over the upper-triangle pairs to compare (a bootstrap
            sample drops the pairs of a stimulus with its own copy); all by default.

    Returns:
        (K, K) float64 angles in [0, π], exactly symmetric with a zero diagonal; NaN
        similarities (a constant RDM) become 0 as in the seed.
    """
    from .rdm import compare_rdms, upper_triangle  # noqa: PLC0415

    if method in ("cosine_cov", "corr_cov"):
        sim = whitened_similarity(matrices, centre=method == "corr_cov")
    elif method == "cka":
        sim = _cosine_matrix(matrices.to(torch.float64).reshape(matrices.shape[0], -1))
    else:
        vectors = upper_triangle(matrices.to(torch.float64))
        if keep is not None:
            vectors = vectors[:, keep]
        sim = kendall_tau_a(vectors) if method == "tau_a" else compare_rdms(vectors, method)
    return symmetrised(torch.nan_to_num(torch.arccos(sim.clamp(-1.0, 1.0)), nan=0.0), zero_diagonal=True)
