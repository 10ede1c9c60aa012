"""2-D embeddings of stimuli (PCA, metric MDS, t-SNE), their quality, and Procrustes alignment.

Design notes:
    * PCA is an eigendecomposition of the smaller Gram/covariance matrix on the torch
      device, with scikit-learn's sign convention (the largest loading of each component
      is positive), so it equals ``sklearn.decomposition.PCA`` up to round-off.
    * Metric MDS is SMACOF from a classical (Torgerson) start with a tight stopping rule
      (optionally plus seeded random starts, run as one batch, lowest stress kept)
      instead of scikit-learn's random restarts. The stress we
      report is Kruskal's stress-1, ``sqrt(Σ(d - δ)² / Σ d²)`` over pairs, scikit-learn's
      ``normalized_stress``.
    * t-SNE (perplexity clamped below N/3) runs on the top 50 principal components
      (torch, on the device; seeded randomised SVD), with exact nearest neighbours (blocked
      matrix products) and openTSNE's perplexity affinities, PCA start and gradient-descent
      schedule (250 iterations at exaggeration 12, then 500). The gradient depends on N, by
      measurement on this project's 2-core CPU: exact and dense in torch float32 up to
      1,000 stimuli (0.5 s at N = 500, where scikit-learn's Barnes-Hut takes 1.0 s for 500
      iterations), openTSNE's Barnes-Hut up to 5,000 (twice as fast as its FFT there), its
      FFT interpolation above, with 250 final iterations instead of 500 (N = 10,000: each
      costs more as the embedding spreads, and trustworthiness and the 2-D neighbours'
      digit accuracy stop changing after ~150 of them). Trustworthiness matches
      scikit-learn's ``TSNE(perplexity=40)``: averaged over five seeds on the seed's five
      recurrent steps (N = 500) they differ by at most 0.0006 (one seed to the next, by
      up to 0.006).
    * Every embedding carries its trustworthiness (scikit-learn's, k = 5 neighbours,
      fewer for tiny N) computed from the same stimulus distances; above 3,000 stimuli,
      on a seeded sample of 3,000 of them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.linalg import orthogonal_procrustes
from sklearn.manifold import trustworthiness

from .errors import RepgeomError, choice_error

__all__ = [
    "EMBED_METHODS",
    "Embedding",
    "align_sequence",
    "classical_mds",
    "embed",
    "euclidean_distances",
    "pca_2d",
    "smacof",
    "stress1",
    "tsne_2d",
]

EMBED_METHODS = ("pca", "mds", "tsne")
#: t-SNE runs on this many principal components of the features (distances kept above).
TSNE_PCA_DIMS = 50
#: Exact PCA for t-SNE while min(N, D) is at most this; a seeded randomised SVD above: matrix
#: products and thin QRs, 0.4 s at N = 10,000, D = 1,296 where the exact eigendecomposition
#: takes 0.5 s alone and 6-11 s when another process holds a core (MKL's threads wait on it).
TSNE_EXACT_PCA_MAX = 100
#: Power iterations of that randomised SVD (top two components then equal the exact ones to
#: 1e-13, the tenth to 1e-8, on the recurrent model's conv2_4 features).
TSNE_PCA_POWER_ITER = 4
#: t-SNE iterations with early exaggeration (12, momentum 0.5).
TSNE_EXAGGERATION_ITER = 250
#: t-SNE iterations after early exaggeration (momentum 0.8) with exact or Barnes-Hut gradients.
TSNE_ITERATIONS = 500
#: The same with FFT gradients (large N, where each iteration costs most).
TSNE_ITERATIONS_FFT = 250
#: Exact (dense, torch) t-SNE gradients up to this many stimuli.
TSNE_EXACT_MAX = 1000
#: openTSNE's Barnes-Hut gradients up to this many stimuli, its FFT-interpolated ones above.
TSNE_FFT_ABOVE = 5000
#: FFT grid intervals per axis at least, during early exaggeration (openTSNE: 50). The
#: exaggerated embedding spans ~8 units, so 10 intervals are still finer than the 1 unit of
#: the later phase (gradient error 0.2 % against 1.5 % then), and halve that phase's time.
TSNE_FFT_EXAGGERATION_INTERVALS = 10
#: Metric MDS (SMACOF on N × N matrices) is offered up to this many stimuli.
MDS_MAX_N = 3000
#: Trustworthiness above this many stimuli is computed on a seeded sample of this size.
TRUST_SAMPLE = 3000
#: Random SMACOF starts besides the classical one for stimulus embeddings. Measured on the
#: seed's five recurrent steps (500 stimuli): the classical start alone ends within 0.2 % of
#: the best of scikit-learn's four random starts (lower at four of five nodes) in a fifth of
#: the time, while extra random starts cost 10x for no reliable gain; paths use 9 (K is small).
MDS_RANDOM_STARTS = 0
DEFAULT_PERPLEXITY = 40.0
PERPLEXITY_RANGE = (1.0, 100.0)


@dataclass(frozen=True)
class Embedding:
    """2-D coordinates of the stimuli for one node, with their quality.

    Attributes:
        coords: (N, 2) float64.
        method: one of :data:`EMBED_METHODS`.
        model: model id.
        node: node name.
        labels: (N,) digit labels.
        trustworthiness: scikit-learn's trustworthiness in [0, 1] (1 = neighbours kept).
        stress: for MDS, stress-1 of the 2-D distances against the stimulus distances
            (``None`` for PCA and t-SNE, whose scale is not fitted to the distances).
        perplexity: the t-SNE perplexity actually used (``None`` for other methods).
    """

    coords: np.ndarray
    method: str
    model: str
    node: str
    labels: np.ndarray
    trustworthiness: float
    stress: float | None = None
    perplexity: float | None = None


def euclidean_distances(features: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(N, N) Euclidean distances between rows of (N, D) ``features`` (centred Gram, exact zero diagonal)."""
    x = features.reshape(features.shape[0], -1).to(dtype)
    x = x - x.mean(dim=0, keepdim=True)
    sq = (x * x).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_(min=0.0)
    d2 = 0.5 * (d2 + d2.T)
    d2.fill_diagonal_(0.0)
    return d2.sqrt_()


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


def classical_mds(dissimilarities: torch.Tensor, n_components: int = 2) -> torch.Tensor:
    """Torgerson's classical MDS: the top eigenvectors of the double-centred -½δ²."""
    d2 = dissimilarities.to(torch.float64) ** 2
    n = d2.shape[0]
    j = torch.eye(n, dtype=d2.dtype, device=d2.device) - 1.0 / n
    b = -0.5 * j @ d2 @ j
    vals, vecs = torch.linalg.eigh(0.5 * (b + b.T))
    vals, vecs = vals.flip(0)[:n_components], vecs.flip(1)[:, :n_components]
    coords = vecs * vals.clamp(min=0.0).sqrt()
    # deterministic sign: largest-magnitude coordinate of each axis positive
    signs = torch.sign(coords.gather(0, coords.abs().argmax(0, keepdim=True)))
    return coords * torch.where(signs == 0, torch.ones_like(signs), signs)


def _pairwise(x: torch.Tensor) -> torch.Tensor:
    """(S, N, k) -> (S, N, N) Euclidean distances (``torch.cdist`` is slow on small batches)."""
    sq = (x * x).sum(dim=2)
    d2 = (sq[:, :, None] + sq[:, None, :] - 2.0 * (x @ x.transpose(1, 2))).clamp_(min=0.0)
    d2.diagonal(dim1=1, dim2=2).zero_()
    return d2.sqrt_()


def smacof(
    dissimilarities: torch.Tensor,
    init: torch.Tensor | None = None,
    max_iter: int = 1000,
    eps: float = 1e-7,
    n_random: int = 0,
    seed: int = 0,
) -> tuple[torch.Tensor, float, int]:
    """Metric MDS by SMACOF (Guttman transforms), on the dissimilarities' device.

    All starts run together as one batch: the classical-MDS start (or ``init``) plus
    ``n_random`` seeded random ones; the lowest stress wins.

    Args:
        dissimilarities: (N, N) symmetric, zero diagonal.
        init: (N, k) start; classical MDS when ``None``.
        max_iter: most Guttman transforms.
        eps: stop a start when its stress falls by less than ``eps`` relative to Σd²/2
            (scikit-learn's criterion, ten times tighter than its default: a batch of
            well-started runs is cheap, so we let them settle).
        n_random: extra random starts (uniform in [0, 1)², as scikit-learn's).
        seed: seeds the random starts.

    Returns:
        ``(coords, stress1, iterations)`` of the best start.
    """
    delta = dissimilarities.to(torch.float64)
    n = delta.shape[0]
    first = classical_mds(delta) if init is None else init.to(delta)
    if n < 3:
        return first, stress1(delta.cpu(), first.cpu()), 0
    gen = torch.Generator().manual_seed(seed)
    starts = [first] + [torch.rand(n, first.shape[1], generator=gen, dtype=torch.float64).to(delta.device) for _ in range(n_random)]
    x = torch.stack(starts)  # (S, N, k)
    floor = 1e-9 * float(delta.abs().max()) + 1e-300  # coincident points: keep the ratio finite
    d = _pairwise(x)
    old = ((d - delta) ** 2).sum(dim=(1, 2)) / 2.0
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    it = 0
    for it in range(1, max_iter + 1):
        ratio = delta / d.clamp_min(floor)
        ratio.diagonal(dim1=1, dim2=2).zero_()
        # Guttman transform X <- B(X) X / n without forming B = diag(rowsum) - ratio
        new = (ratio.sum(dim=2, keepdim=True) * x - ratio @ x) / n
        x = torch.where(active[:, None, None], new, x)
        d = _pairwise(x)
        raw = ((d - delta) ** 2).sum(dim=(1, 2)) / 2.0
        active &= (old - raw) / ((d * d).sum(dim=(1, 2)) / 2.0) >= eps
        old = raw
        if not bool(active.any()):
            break
    stresses = [stress1(delta.cpu(), xi.cpu()) for xi in x]
    best = int(np.argmin(stresses))
    return x[best], float(stresses[best]), it


def pca_2d(features: torch.Tensor) -> torch.Tensor:
    """The first two principal-component scores of (N, D) ``features``, sklearn's signs.

    Returns:
        (N, 2) float64 on the features' device.
    """
    x = features.reshape(features.shape[0], -1).to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    n, d = x.shape
    k = min(2, n, d)
    if n <= d:
        vals, u = torch.linalg.eigh(x @ x.T)
        vals, u = vals.flip(0)[:k].clamp(min=0.0), u.flip(1)[:, :k]
        s = vals.sqrt()
        scores = u * s
        components = (x.T @ u) / torch.where(s > 0, s, torch.ones_like(s))  # (D, k)
    else:
        vals, v = torch.linalg.eigh(x.T @ x)
        components = v.flip(1)[:, :k]
        scores = x @ components
    # scikit-learn (>= 1.5) flips each component so its largest-|loading| entry is positive
    signs = torch.sign(components.gather(0, components.abs().argmax(0, keepdim=True)))
    scores = scores * torch.where(signs == 0, torch.ones_like(signs), signs)
    if k < 2:
        scores = torch.cat([scores, torch.zeros(n, 2 - k, dtype=scores.dtype, device=scores.device)], dim=1)
    return scores


def clamp_perplexity(perplexity: float, n: int) -> float:
    """Perplexity kept strictly below N/3, with a warning when it had to be lowered."""
    if not PERPLEXITY_RANGE[0] <= perplexity <= PERPLEXITY_RANGE[1]:
        raise RepgeomError(
            f"perplexity must be from {PERPLEXITY_RANGE[0]:g} to {PERPLEXITY_RANGE[1]:g}, got {perplexity}"
        )
    limit = (n - 1) / 3.0
    if perplexity > limit:
        new = max(limit, 1.0 if n > 3 else 0.5)
        warnings.warn(f"t-SNE perplexity {perplexity:g} lowered to {new:.3g} (must stay below N/3 for N={n})", stacklevel=3)
        return float(new)
    return float(perplexity)


def _top_pca_scores(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Scores on the top ``k`` principal components of (N, D) float64 ``x``, sklearn's signs.

    Exact (an eigendecomposition of the smaller Gram/covariance matrix) while that matrix
    has at most :data:`TSNE_EXACT_PCA_MAX` rows; otherwise a seeded randomised range finder
    with :data:`TSNE_PCA_POWER_ITER` power iterations (Halko et al.), which agrees with the
    exact scores to round-off on the leading components (the t-SNE start) and spans nearly
    the same subspace (all a neighbour search needs).
    """
    x = x - x.mean(dim=0, keepdim=True)
    n, d = x.shape
    k = min(k, n, d)
    if min(n, d) <= TSNE_EXACT_PCA_MAX:
        if n <= d:
            vals, u = torch.linalg.eigh(x @ x.T)
            s = vals.flip(0)[:k].clamp(min=0.0).sqrt()
            scores = u.flip(1)[:, :k] * s
            components = (x.T @ scores) / torch.where(s > 0, s * s, torch.ones_like(s))  # (D, k)
        else:
            components = torch.linalg.eigh(x.T @ x)[1].flip(1)[:, :k]
            scores = x @ components
    else:
        gen = torch.Generator().manual_seed(seed)
        basis = x @ torch.randn(d, k + 10, generator=gen, dtype=x.dtype).to(x.device)
        for _ in range(TSNE_PCA_POWER_ITER):
            basis = x @ torch.linalg.qr(x.T @ torch.linalg.qr(basis)[0])[0]
        components = torch.linalg.svd(torch.linalg.qr(basis)[0].T @ x, full_matrices=False)[2][:k].T
        scores = x @ components
    signs = torch.sign(components.gather(0, components.abs().argmax(0, keepdim=True)))
    return scores * torch.where(signs == 0, torch.ones_like(signs), signs)


def _exact_knn(z: torch.Tensor, k: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of (N, d) ``z`` by Euclidean distance, exactly.

    Returns:
        ``(indices, distances)``, both (N, k), nearest first: int64 and float64 NumPy arrays.
    """
    n = z.shape[0]
    sq = (z * z).sum(dim=1, keepdim=True)
    ones = torch.ones_like(sq)
    # d² = [z, |z|², 1] [-2z, 1, |z|²]ᵀ: one matrix product per block, no broadcast passes
    left, right = torch.cat([z, sq, ones], dim=1), torch.cat([-2.0 * z, ones, sq], dim=1)
    rows = torch.arange(block, device=z.device)
    idx, dist = [], []
    for start in range(0, n, block):
        stop = min(n, start + block)
        d2 = left[start:stop] @ right.T
        d2[rows[: stop - start], rows[: stop - start] + start] = math.inf  # not its own neighbour
        vals, nn = torch.topk(d2, k, dim=1, largest=False, sorted=True)
        idx.append(nn)
        dist.append(vals.clamp_(min=0.0).sqrt_())
    return torch.cat(idx).cpu().numpy(), torch.cat(dist).cpu().numpy()


def _tsne_exact(p: torch.Tensor, start: torch.Tensor, phases: Sequence[tuple[int, float, float]]) -> torch.Tensor:
    """openTSNE's gradient descent with the exact t-SNE gradient, dense, in float32.

    The gradient is openTSNE's (no factor 4): ``Σ_j (e·p_ij - w_ij/Z) w_ij (y_i - y_j)``
    with ``w = 1 / (1 + d²)``; gains (+0.2 / ×0.8 + 0.01), momentum, learning rate
    N / exaggeration, steps clipped to length 5, the embedding re-centred every step.

    Args:
        p: (N, N) symmetric affinities summing to 1.
        start: (N, 2) initial embedding.
        phases: ``(iterations, exaggeration, momentum)`` in order; gains and momentum carry over.

    Returns:
        (N, 2) float64 embedding.
    """
    n = start.shape[0]
    y = start.to(torch.float32)
    # d² = [y, |y|², 1] [-2y, 1, |y|²]ᵀ in one product; M [y, 1] gives M y and M's row sums
    left = torch.ones(n, 4, dtype=y.dtype, device=y.device)
    right = torch.ones(n, 4, dtype=y.dtype, device=y.device)
    update, gains = torch.zeros_like(y), torch.ones_like(y)
    for iterations, exaggeration, momentum in phases:
        pe = (p * exaggeration).to(y)
        rate = n / exaggeration
        for _ in range(iterations):
            sq = (y * y).sum(dim=1)
            left[:, :2], left[:, 2] = y, sq
            right[:, :2], right[:, 3] = -2.0 * y, sq
            w = (left @ right.T).clamp_(min=0.0).add_(1.0).reciprocal_()
            z = float(w.sum()) - n  # w_ii = 1 stays in the matrix: its term cancels from the gradient
            m = torch.addcmul(pe * w, w, w, value=-1.0 / z)
            my = m @ left[:, (0, 1, 3)]
            grad = my[:, 2:] * y - my[:, :2]
            gains = torch.where(torch.sign(grad) != torch.sign(update), gains + 0.2, gains * 0.8 + 0.01)
            update = momentum * update - rate * gains * grad
            norm = update.norm(dim=1, keepdim=True)
            update = torch.where(norm > 5.0, update * (5.0 / norm), update)
            y = y + update
            y = y - y.mean(dim=0)
    return y.to(torch.float64)


def tsne_2d(features: torch.Tensor, perplexity: float = DEFAULT_PERPLEXITY, seed: int = 0) -> tuple[np.ndarray, float]:
    """Seeded 2-D t-SNE with PCA initialisation.

    The stimuli are reduced to their top :data:`TSNE_PCA_DIMS` principal components on the
    torch device; their ``3 × perplexity`` nearest neighbours are found exactly there and
    turned into openTSNE's symmetric perplexity-based affinities. The start is the top two
    components scaled to standard deviation 1e-4 plus openTSNE's seeded jitter (1 % of
    that). :data:`TSNE_EXAGGERATION_ITER` iterations at exaggeration 12 and momentum 0.5
    follow, then :data:`TSNE_ITERATIONS` at momentum 0.8, learning rate N / exaggeration,
    with exact gradients (torch, the features' device) up to :data:`TSNE_EXACT_MAX`
    stimuli, openTSNE's Barnes-Hut ones up to :data:`TSNE_FFT_ABOVE`, and its FFT ones
    above (with :data:`TSNE_ITERATIONS_FFT` final iterations). Fewer than four stimuli (or
    identical ones) are returned at their principal-component scores.

    Args:
        features: (N, D) features.
        perplexity: from :data:`PERPLEXITY_RANGE`; lowered below N/3 with a warning.
        seed: seeds the jitter of the start (and the randomised PCA of large inputs).

    Returns:
        ``(coords, perplexity_used)``: (N, 2) float64 and the perplexity after clamping.
    """
    from openTSNE import TSNEEmbedding  # noqa: PLC0415 - heavy; only when t-SNE is asked for
    from openTSNE.affinity import PerplexityBasedNN  # noqa: PLC0415
    from openTSNE.initialization import jitter, rescale  # noqa: PLC0415
    from openTSNE.nearest_neighbors import PrecomputedNeighbors  # noqa: PLC0415

    n = features.shape[0]
    p = clamp_perplexity(float(perplexity), n)
    z = _top_pca_scores(features.reshape(n, -1).to(torch.float64), TSNE_PCA_DIMS, seed)  # a rotation when D <= 50
    start = np.zeros((n, 2))
    start[:, : min(2, z.shape[1])] = z[:, :2].cpu().numpy()
    if n < 4 or not np.std(start[:, 0]) > 0:
        return start, p
    neighbors, distances = _exact_knn(z, min(n - 1, int(3 * p)))
    threads = torch.get_num_threads()
    affinities = PerplexityBasedNN(perplexity=p, knn_index=PrecomputedNeighbors(neighbors, distances), n_jobs=threads)
    start = jitter(rescale(start), random_state=seed)
    fft = n > TSNE_FFT_ABOVE
    if not fft and n <= TSNE_EXACT_MAX:
        dense = torch.as_tensor(affinities.P.toarray(), device=features.device)
        phases = ((TSNE_EXAGGERATION_ITER, 12.0, 0.5), (TSNE_ITERATIONS, 1.0, 0.8))
        return _tsne_exact(dense, torch.as_tensor(start, device=features.device), phases).cpu().numpy(), p
    embedding = TSNEEmbedding(np.ascontiguousarray(start), affinities, negative_gradient_method="fft" if fft else "bh", n_jobs=threads, random_state=seed)
    coarse = {"min_num_intervals": TSNE_FFT_EXAGGERATION_INTERVALS} if fft else {}
    embedding = embedding.optimize(TSNE_EXAGGERATION_ITER, exaggeration=12, momentum=0.5, **coarse)
    embedding = embedding.optimize(TSNE_ITERATIONS_FFT if fft else TSNE_ITERATIONS, momentum=0.8)
    return np.asarray(embedding, dtype=np.float64), p


def _n_neighbors(n: int) -> int:
    return max(1, min(5, (n - 1) // 2 - 1 if n > 4 else 1))


def embed(
    features: torch.Tensor,
    method: str,
    labels: np.ndarray,
    model: str = "",
    node: str = "",
    seed: int = 0,
    perplexity: float = DEFAULT_PERPLEXITY,
    distances: torch.Tensor | None = None,
) -> Embedding:
    """Embed one node's stimuli in 2-D and measure how faithful the picture is.

    Args:
        features: (N, D) features.
        method: ``"pca"``, ``"mds"`` or ``"tsne"``.
        labels: (N,) digit labels (carried along).
        model: model id (carried along).
        node: node name (carried along).
        seed: random state for t-SNE (PCA and MDS are deterministic).
        perplexity: t-SNE perplexity (clamped below N/3 with a warning).
        distances: precomputed (N, N) Euclidean distances of ``features`` (optional).

    Returns:
        An :class:`Embedding`.
    """
    if method not in EMBED_METHODS:
        raise choice_error("embedding method", method, EMBED_METHODS)
    n = features.shape[0]
    if method == "mds" and n > MDS_MAX_N:
        raise RepgeomError(f"MDS is offered up to {MDS_MAX_N} stimuli (it fits all N² distances); got {n}: use PCA or t-SNE, or fewer images per class")
    dist = euclidean_distances(features) if distances is None and n <= TRUST_SAMPLE else distances
    used_perplexity = None
    if method == "pca":
        coords = pca_2d(features).cpu().numpy()
    elif method == "mds":
        coords_t, _, _ = smacof(dist, n_random=MDS_RANDOM_STARTS, seed=seed)
        coords = coords_t.cpu().numpy()
    else:
        coords, used_perplexity = tsne_2d(features, perplexity, seed)
    if n > TRUST_SAMPLE:  # a seeded sample keeps the O(N²) ranking bounded
        pick = np.sort(np.random.default_rng(seed).choice(n, TRUST_SAMPLE, replace=False))
        sub = torch.as_tensor(pick, device=features.device)
        dist_np = euclidean_distances(features.reshape(n, -1)[sub]).cpu().numpy()
        tw = float(trustworthiness(dist_np, coords[pick], n_neighbors=5, metric="precomputed"))
    else:
        dist_np = dist.cpu().numpy()
        tw = float(trustworthiness(dist_np, coords, n_neighbors=_n_neighbors(n), metric="precomputed")) if n > 3 else 1.0
    return Embedding(
        coords=coords,
        method=method,
        model=model,
        node=node,
        labels=np.asarray(labels),
        trustworthiness=tw,
        stress=stress1(dist.cpu().numpy(), coords) if method == "mds" else None,
        perplexity=used_perplexity,
    )


def align_sequence(embeddings: Sequence[Embedding], rescale: bool = False) -> list[Embedding]:
    """Procrustes-align each embedding to the one before it (rotation/reflection).

    Each frame is centred, optionally scaled to unit root-mean-square radius (so a frame
    whose activations are ten times larger does not shrink the others to a dot), then
    rotated onto the previous aligned frame, so an animation across nodes shows how
    points move rather than arbitrary turns and flips. Quality figures are unchanged
    (they describe the embeddings as computed).
    """
    out: list[Embedding] = []
    prev: np.ndarray | None = None
    for emb in embeddings:
        y = emb.coords - emb.coords.mean(axis=0)
        if rescale:
            rms = float(np.sqrt((y**2).sum(axis=1).mean()))
            y = y / rms if rms > 0 else y
        if prev is not None and y.shape == prev.shape:
            r, _ = orthogonal_procrustes(y, prev)
            y = y @ r
        out.append(replace(emb, coords=y))
        prev = y
    return out
