"""Principal components: from the features, or from the stimuli's Euclidean distances.

Design notes:
    Both forms take the top eigenvectors of an N × N (or D × D) symmetric positive
    semi-definite matrix on the torch device by subspace iteration with a residual check
    (:func:`top_eigh`), not a full eigendecomposition: at N = 500 a few milliseconds where
    ``eigh`` takes 17 (and far more when another process holds a core). From the features
    the matrix is the smaller of the Gram and covariance matrices; from the distances it is
    the double-centred ``-½ J d² J`` (Torgerson's classical scaling, no product over the
    features). Signs follow scikit-learn (the largest-magnitude loading of each component is
    positive), so :func:`pca_scores` equals ``sklearn.decomposition.PCA`` up to round-off.
    Above ``randomized_above`` rows and columns, t-SNE's 50 components come from a seeded
    randomised range finder instead (Halko et al.): matrix products and thin QRs, 0.4 s at
    N = 10,000, D = 1,296 where the exact eigendecomposition takes 0.5 s alone and 6-11 s
    when another process holds a core.
"""

from __future__ import annotations

import torch

from ..rdm import symmetrised

__all__ = ["double_centre", "pca_2d", "pca_scores", "principal_axes", "top_eigh"]


def double_centre(distances: torch.Tensor) -> torch.Tensor:
    """``-½ J δ² J`` (J the centring matrix) by row and column means: O(N²), no N³ products.

    Args:
        distances: (N, N) symmetric distances δ.

    Returns:
        (N, N) float64, exactly symmetric.
    """
    d2 = distances.to(torch.float64) ** 2
    row = d2.mean(dim=1)
    return symmetrised(d2.sub_(row[:, None]).sub_(row[None, :]).add_(row.mean()).mul_(-0.5))


def top_eigh(a: torch.Tensor, k: int, tol: float = 1e-11, max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest eigenpairs of a symmetric positive semi-definite matrix, descending.

    Subspace iteration on ``2k + 8`` seeded columns with a Rayleigh-Ritz step each time,
    until every wanted pair has residual ``|A v - λ v| <= tol·λ₁``; a full ``eigh`` for
    small matrices or when that does not happen within ``max_iter`` steps. Only for PSD
    matrices (Gram matrices, double-centred squared Euclidean distances): subspace
    iteration finds the eigenvalues of largest magnitude.

    Args:
        a: (N, N) symmetric PSD matrix, float64.
        k: eigenpairs wanted.
        tol: residual tolerance relative to the largest eigenvalue.
        max_iter: subspace iterations before falling back to ``eigh``.

    Returns:
        ``(values, vectors)``: (k,) and (N, k), largest first.
    """
    n = a.shape[0]
    k = min(k, n)
    p = min(n, 2 * k + 8)
    if n <= 4 * p:
        vals, vecs = torch.linalg.eigh(a)
        return vals.flip(0)[:k], vecs.flip(1)[:, :k]
    gen = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(a @ torch.randn(n, p, generator=gen, dtype=a.dtype).to(a.device))[0]
    for _ in range(max_iter):
        aq = a @ q
        vals, w = torch.linalg.eigh(symmetrised(q.T @ aq))
        vals, w = vals.flip(0), w.flip(1)
        v, av = q @ w, aq @ w
        res = torch.linalg.vector_norm(av[:, :k] - v[:, :k] * vals[:k], dim=0)
        if bool((res <= tol * vals[0].abs()).all()):
            return vals[:k], v[:, :k]
        q = torch.linalg.qr(av)[0]
    vals, vecs = torch.linalg.eigh(a)
    return vals.flip(0)[:k], vecs.flip(1)[:, :k]


def _signed(scores: torch.Tensor, loadings: torch.Tensor) -> torch.Tensor:
    """``scores`` with each column flipped so the largest-magnitude entry of ``loadings``' column is positive."""
    signs = torch.sign(loadings.gather(0, loadings.abs().argmax(0, keepdim=True)))
    return scores * torch.where(signs == 0, torch.ones_like(signs), signs)


def principal_axes(distances: torch.Tensor, k: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Classical (Torgerson) scaling: the top ``k`` principal-component scores from Euclidean distances.

    The Gram matrix of the centred points is ``-½ J d² J``; its top eigenvectors times the
    square roots of their eigenvalues are the scores, each axis signed so its
    largest-magnitude coordinate is positive. For Euclidean ``distances`` these are the
    features' principal-component scores (up to sign).

    Args:
        distances: (N, N) dissimilarities.
        k: axes wanted.
        dtype: ``torch.float64`` (:func:`top_eigh`), or a lower precision for a full ``eigh``
            in that precision (t-SNE's neighbour search: 11 ms at N = 500 in float32).

    Returns:
        (N, min(k, N)) float64 on the distances' device.
    """
    b = double_centre(distances)
    if dtype == torch.float64:
        vals, vecs = top_eigh(b, k)
    else:
        vals, vecs = torch.linalg.eigh(b.to(dtype))
        k = min(k, vals.shape[0])
        vals, vecs = vals.flip(0)[:k].to(torch.float64), vecs.flip(1)[:, :k].to(torch.float64)
    coords = vecs * vals.clamp(min=0.0).sqrt()
    return _signed(coords, coords)


def pca_scores(
    features: torch.Tensor,
    k: int,
    distances: torch.Tensor | None = None,
    seed: int = 0,
    randomized_above: int | None = None,
    power_iter: int = 4,
) -> torch.Tensor:
    """Scores on the top ``k`` principal components of ``features``, scikit-learn's signs.

    Args:
        features: (N, D) features (higher dims flattened).
        k: components wanted.
        distances: their (N, N) Euclidean distances, if at hand: when N <= D the Gram
            matrix is then ``-½ J d² J`` (O(N²)) instead of a product over all D features.
        seed: seeds the randomised range finder.
        randomized_above: when both N and D exceed this, a seeded randomised range finder
            with ``power_iter`` power iterations (top components equal the exact ones to
            round-off, the tenth to ~1e-8); ``None``: always exact.
        power_iter: power iterations of the range finder.

    Returns:
        (N, min(k, N, D)) float64 on the features' device.
    """
    x = features.reshape(features.shape[0], -1).to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    n, d = x.shape
    k = min(k, n, d)
    if randomized_above is not None and min(n, d) > randomized_above:
        gen = torch.Generator().manual_seed(seed)
        basis = x @ torch.randn(d, k + 10, generator=gen, dtype=x.dtype).to(x.device)
        for _ in range(power_iter):
            basis = x @ torch.linalg.qr(x.T @ torch.linalg.qr(basis)[0])[0]
        components = torch.linalg.svd(torch.linalg.qr(basis)[0].T @ x, full_matrices=False)[2][:k].T
        scores = x @ components
    elif n <= d:
        gram = double_centre(distances.to(x.device)) if distances is not None else symmetrised(x @ x.T)
        vals, u = top_eigh(gram, k)
        s = vals.clamp(min=0.0).sqrt()
        scores = u * s
        components = (x.T @ u) / torch.where(s > 0, s, torch.ones_like(s))  # (D, k)
    else:
        components = top_eigh(symmetrised(x.T @ x), k)[1]
        scores = x @ components
    return _signed(scores, components)


def pca_2d(features: torch.Tensor, distances: torch.Tensor | None = None) -> torch.Tensor:
    """The first two principal-component scores of ``features``, scikit-learn's signs.

    Args:
        features: (N, D) features.
        distances: their (N, N) Euclidean distances, if at hand (see :func:`pca_scores`).

    Returns:
        (N, 2) float64 on the features' device (zero columns where N or D is below 2).
    """
    scores = pca_scores(features, 2, distances)
    if scores.shape[1] < 2:
        scores = torch.cat([scores, scores.new_zeros(scores.shape[0], 2 - scores.shape[1])], dim=1)
    return scores
