"""How faithful a 2-D embedding is: trustworthiness (neighbours kept) and stress-1 (distances kept)."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["default_neighbors", "stress1", "trustworthiness_from_distances"]


def stress1(dissimilarities: np.ndarray | torch.Tensor, coords: np.ndarray | torch.Tensor) -> float:
    """Kruskal's stress-1 of ``coords`` against ``dissimilarities``, as scikit-learn normalises it.

    Args:
        dissimilarities: (N, N) target dissimilarities δ.
        coords: (N, k) embedding.

    Returns:
        ``sqrt(Σ_{i<j} (d_ij - δ_ij)² / Σ_{i<j} d_ij²)`` with d the embedded distances.
    """
    delta = torch.as_tensor(np.asarray(dissimilarities), dtype=torch.float64)
    x = torch.as_tensor(np.asarray(coords), dtype=torch.float64)
    d = torch.cdist(x, x)
    iu = torch.triu_indices(d.shape[0], d.shape[0], offset=1)
    dd, de = d[iu[0], iu[1]], delta[iu[0], iu[1]]
    denom = float((dd * dd).sum())
    return float(math.sqrt(float(((dd - de) ** 2).sum()) / denom)) if denom > 0 else 0.0


def trustworthiness_from_distances(
    distances: torch.Tensor, coords: np.ndarray | torch.Tensor, n_neighbors: int = 5
) -> float:
    """scikit-learn's ``trustworthiness(..., metric="precomputed")``, by counting instead of sorting.

    The rank of ``j`` among ``i``'s input-space neighbours is one plus the number of
    stimuli nearer to ``i`` than ``j`` is, so only the ``k`` embedded neighbours of each
    stimulus need ranking: an (N, k, N) comparison instead of scikit-learn's argsort of the
    whole N × N matrix. Equal to scikit-learn's whenever no two distances from a stimulus tie
    (with ties scikit-learn's own answer depends on its sort order).

    Args:
        distances: (N, N) input-space distances.
        coords: (N, m) embedding.
        n_neighbors: k, below N / 2.

    Returns:
        Trustworthiness in [0, 1].
    """
    dist = distances.to(torch.float64).cpu().clone()
    n, k = dist.shape[0], n_neighbors
    if k >= n / 2:
        raise ValueError(f"n_neighbors ({k}) should be less than n_samples / 2 ({n / 2})")
    y = torch.as_tensor(np.asarray(coords), dtype=torch.float64)
    embedded = torch.cdist(y, y, compute_mode="donot_use_mm_for_euclid_dist")
    embedded.fill_diagonal_(math.inf)
    near = torch.topk(embedded, k, dim=1, largest=False).indices  # (N, k) embedded neighbours
    dist.fill_diagonal_(math.inf)
    to_near = dist.gather(1, near)
    total = 0
    rows = max(1, (1 << 24) // max(1, n * k))  # bound the (rows, k, N) comparison
    for a in range(0, n, rows):
        rank = (dist[a : a + rows, None, :] < to_near[a : a + rows, :, None]).sum(dim=2) + 1
        total += int((rank - k).clamp_(min=0).sum())
    return 1.0 - total * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))


def default_neighbors(n: int) -> int:
    """Neighbours counted by the embeddings' trustworthiness: 5, fewer for tiny N (it must stay below N / 2)."""
    return max(1, min(5, (n - 1) // 2 - 1 if n > 4 else 1))
