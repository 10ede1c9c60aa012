"""Seeded 2-D t-SNE: exact dense gradients for small N (fused on the CPU), openTSNE above.

Design notes:
    The perplexity is clamped below N/3. Neighbours are exact, on the top 50 principal
    components, and turned into openTSNE's perplexity affinities; the start is the top two
    components. Up to :attr:`TsneOptions.exact_max` stimuli the components come from the
    stimulus distances (already computed for trustworthiness: one N × N eigendecomposition);
    above, from the features (seeded randomised SVD; blocked matrix products). The gradient
    depends on N, by measurement on this project's 2-core CPU: exact and dense in float32 up
    to 1,000 stimuli (fused numba kernels on the CPU, :mod:`repgeom.core.kernels`; the torch
    form elsewhere, which the tests hold to them), several nodes of one N as one (B, N, N)
    batch, for 75 + 175 iterations; openTSNE's Barnes-Hut up to 5,000 (twice as fast as its
    FFT there), its FFT interpolation above, with 250 early-exaggeration and 500 (FFT: 250)
    final iterations (N = 10,000: each costs more as the embedding spreads, and
    trustworthiness and the 2-D neighbours' digit accuracy stop changing after ~150 of
    them). Trustworthiness stays within 0.008 of scikit-learn's ``TSNE(perplexity=40)`` on
    the seed's five recurrent steps (N = 500, seeds 0-2; one seed to the next,
    scikit-learn's own varies by up to 0.006). openTSNE is imported on the first t-SNE.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import RepgeomError
from ..rdm import euclidean_distances
from .pca import pca_2d, pca_scores, principal_axes

__all__ = [
    "DEFAULT_PERPLEXITY",
    "PERPLEXITY_RANGE",
    "TsneOptions",
    "clamp_perplexity",
    "exact_descent",
    "exact_knn",
    "tsne_2d",
    "tsne_many",
]

DEFAULT_PERPLEXITY = 40.0
PERPLEXITY_RANGE = (1.0, 100.0)


@dataclass(frozen=True)
class TsneOptions:
    """How t-SNE runs; the defaults are measured on the seed's models (see the module notes).

    Attributes:
        pca_dims: principal components the neighbours are searched on.
        randomized_above: above N > :attr:`exact_max`, the components come from a seeded
            randomised SVD when both N and D exceed this, else exactly.
        power_iter: power iterations of that randomised SVD (top two components then equal
            the exact ones to 1e-13, the tenth to 1e-8, on the recurrent model's conv2_4).
        exact_max: exact dense gradients up to this many stimuli.
        exact_iterations: iterations with early exaggeration, then without, for exact
            gradients. From the PCA start the neighbourhoods settle fast: on the seed's five
            recurrent steps (N = 500, seeds 0-2) trustworthiness after 75 + 175 is within
            0.008 of scikit-learn's (mean -0.002) at a third of the cost of 250 + 500;
            75 + 250 and 100 + 300 came no closer.
        iterations: the same for openTSNE's Barnes-Hut gradients.
        fft_above: openTSNE's FFT-interpolated gradients above this many stimuli.
        fft_iterations: the same for FFT gradients (large N, where each iteration costs most).
        fft_exaggeration_intervals: FFT grid intervals per axis at least during early
            exaggeration (openTSNE: 50). The exaggerated embedding spans ~8 units, so 10
            intervals are still finer than the 1 unit of the later phase (gradient error
            0.2 % against 1.5 % then), and halve that phase's time.
        exaggeration: early exaggeration factor.
        momentum: momentum during, then after, early exaggeration.
    """

    pca_dims: int = 50
    randomized_above: int = 100
    power_iter: int = 4
    exact_max: int = 1000
    exact_iterations: tuple[int, int] = (75, 175)
    iterations: tuple[int, int] = (250, 500)
    fft_above: int = 5000
    fft_iterations: tuple[int, int] = (250, 250)
    fft_exaggeration_intervals: int = 10
    exaggeration: float = 12.0
    momentum: tuple[float, float] = (0.5, 0.8)

    def phases(self, iterations: tuple[int, int]) -> tuple[tuple[int, float, float], tuple[int, float, float]]:
        """``(iterations, exaggeration, momentum)`` of the early-exaggeration phase, then the final one."""
        return (iterations[0], self.exaggeration, self.momentum[0]), (iterations[1], 1.0, self.momentum[1])


def clamp_perplexity(perplexity: float, n: int) -> float:
    """Perplexity kept strictly below N/3, with a warning when it had to be lowered.

    Args:
        perplexity: from :data:`PERPLEXITY_RANGE`.
        n: number of stimuli.

    Returns:
        The perplexity to use.
    """
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


def exact_knn(z: torch.Tensor, k: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of (N, d) ``z`` by Euclidean distance, exactly.

    Args:
        z: (N, d) points.
        k: neighbours per point.
        block: rows per matrix product.

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


def exact_descent(
    p: torch.Tensor, start: torch.Tensor, phases: Sequence[tuple[int, float, float]], fused: bool = True
) -> np.ndarray:
    """Gradient descent as openTSNE's, with the exact t-SNE gradient, dense, in float32, for a batch.

    The gradient is openTSNE's (no factor 4): ``Σ_j (e·p_ij - w_ij/Z) w_ij (y_i - y_j)``
    with ``w = 1 / (1 + d²)``; gains (+0.2 / ×0.8 + 0.01), momentum, learning rate
    N / exaggeration, steps clipped to length 5, the embedding re-centred every step.
    Several embeddings of the same N run as one batch; each is bitwise what it is alone.

    Args:
        p: (B, N, N) symmetric affinities summing to 1.
        start: (B, N, 2) initial embeddings, on the device of ``p``.
        phases: ``(iterations, exaggeration, momentum)`` in order; gains and momentum carry over.
        fused: on the CPU, each phase is one fused kernel (:func:`repgeom.core.kernels.tsne_exact`);
            ``False`` (and other devices) runs the torch steps of :func:`_descent_torch`.

    Returns:
        (B, N, 2) float64 embeddings.
    """
    if fused and p.device.type == "cpu":
        from ..kernels import tsne_exact  # noqa: PLC0415 - numba loads on first use

        pc = np.ascontiguousarray(p.numpy(), dtype=np.float32)
        y = np.ascontiguousarray(start.numpy().transpose(0, 2, 1), dtype=np.float32)  # (B, 2, N): coordinates contiguous
        update, gains = np.zeros_like(y), np.ones_like(y)
        for iterations, exaggeration, momentum in phases:
            tsne_exact(pc, y, update, gains, iterations, exaggeration, momentum)
        return y.transpose(0, 2, 1).astype(np.float64)
    return _descent_torch(p, start, phases).cpu().numpy()


def _descent_torch(p: torch.Tensor, start: torch.Tensor, phases: Sequence[tuple[int, float, float]]) -> torch.Tensor:
    """:func:`exact_descent` as torch operations (other devices than the CPU).

    Per step, one product gives ``1 + d²`` (``[y, |y|², 1]`` times ``[-2y, 1, |y|² + 1]``),
    then four passes (reciprocal, row sums for Z, ``e·p - w/Z``, times ``w``) and one
    product with ``[y, 1]`` gives both ``M y`` and ``M``'s row sums.
    """
    b, n, _ = start.shape
    y = start.to(torch.float32)
    opts = {"dtype": y.dtype, "device": y.device}
    left, right, y1 = torch.ones(b, n, 4, **opts), torch.ones(b, n, 4, **opts), torch.ones(b, n, 3, **opts)
    # N × N buffers reused every step: a fresh 1 MB+ tensor per step costs page faults, not just arithmetic
    w, m = torch.empty(b, n, n, **opts), torch.empty(b, n, n, **opts)
    rows, my = torch.empty(b, n, **opts), torch.empty(b, n, 3, **opts)
    update, gains = torch.zeros_like(y), torch.ones_like(y)
    for iterations, exaggeration, momentum in phases:
        pe = (p * exaggeration).to(y)
        rate = n / exaggeration
        for _ in range(iterations):
            sq = (y * y).sum(dim=2)
            left[..., :2], left[..., 2] = y, sq
            right[..., :2], right[..., 3] = -2.0 * y, sq + 1.0
            y1[..., :2] = y
            torch.bmm(left, right.transpose(1, 2), out=w).reciprocal_()  # 1 / (1 + d²); w_ii = 1 cancels below
            z = torch.sum(w, dim=2, out=rows).sum(dim=1) - n  # row sums first: the same order for any batch size
            torch.addcmul(pe, w, (-1.0 / z)[:, None, None], out=m).mul_(w)
            torch.bmm(m, y1, out=my)
            grad = my[..., 2:] * y - my[..., :2]
            gains = torch.where(torch.sign(grad) != torch.sign(update), gains + 0.2, gains * 0.8 + 0.01)
            update = momentum * update - rate * gains * grad
            norm = update.norm(dim=2, keepdim=True)
            update = torch.where(norm > 5.0, update * (5.0 / norm), update)
            y = y + update
            y = y - y.mean(dim=1, keepdim=True)
    return y.to(torch.float64)


@dataclass
class _TsneJob:
    """One embedding's t-SNE inputs: its start, affinities and the perplexity used."""

    n: int
    perplexity: float
    start: np.ndarray
    affinities: Any = None  # openTSNE affinities (N above exact_max); None: see ``p``, or the start is the answer
    p: np.ndarray | None = None  # (N, N) float32 joint affinities for the exact gradients


def _prepare(features: torch.Tensor, perplexity: float, seed: int, distances: torch.Tensor | None, options: TsneOptions) -> _TsneJob:
    """Affinities and start of one t-SNE (see :func:`tsne_2d`)."""
    from openTSNE.affinity import PerplexityBasedNN, joint_probabilities_nn  # noqa: PLC0415 - heavy; only for t-SNE
    from openTSNE.initialization import jitter, rescale  # noqa: PLC0415
    from openTSNE.nearest_neighbors import PrecomputedNeighbors  # noqa: PLC0415

    n = features.shape[0]
    p = clamp_perplexity(float(perplexity), n)
    k = min(n - 1, int(3 * p))
    if n <= options.exact_max:
        dist = distances if distances is not None else euclidean_distances(features)
        start = pca_2d(features, dist).cpu().numpy()
        if n < 4 or not np.std(start[:, 0]) > 0:
            return _TsneJob(n, p, start)
        neighbors, near = exact_knn(principal_axes(dist.cpu(), options.pca_dims, dtype=torch.float32), k)
        joint = joint_probabilities_nn(neighbors, near, [p], n_jobs=torch.get_num_threads())
        return _TsneJob(n, p, jitter(rescale(start), random_state=seed), p=joint.toarray().astype(np.float32))
    z = pca_scores(features, options.pca_dims, seed=seed, randomized_above=options.randomized_above, power_iter=options.power_iter)
    start = np.zeros((n, 2))
    start[:, : min(2, z.shape[1])] = z[:, :2].cpu().numpy()
    if not np.std(start[:, 0]) > 0:
        return _TsneJob(n, p, start)
    neighbors, near = exact_knn(z, k)
    affinities = PerplexityBasedNN(perplexity=p, knn_index=PrecomputedNeighbors(neighbors, near), n_jobs=torch.get_num_threads())
    return _TsneJob(n, p, jitter(rescale(start), random_state=seed), affinities)


def tsne_2d(
    features: torch.Tensor,
    perplexity: float = DEFAULT_PERPLEXITY,
    seed: int = 0,
    distances: torch.Tensor | None = None,
    options: TsneOptions | None = None,
) -> tuple[np.ndarray, float]:
    """Seeded 2-D t-SNE with PCA initialisation.

    The ``3 × perplexity`` nearest neighbours are found exactly on the top
    :attr:`TsneOptions.pca_dims` principal components (up to :attr:`TsneOptions.exact_max`
    stimuli from their distances, ``distances`` if given; above from the features, on the
    torch device) and turned into openTSNE's symmetric perplexity-based affinities. The
    start is the top two components scaled to standard deviation 1e-4 plus openTSNE's seeded
    jitter (1 % of that). Up to :attr:`TsneOptions.exact_max` stimuli the exact gradients
    run dense in float32 (:func:`exact_descent`) for :attr:`TsneOptions.exact_iterations`;
    above, openTSNE's Barnes-Hut gradients up to :attr:`TsneOptions.fft_above` stimuli and
    its FFT ones beyond. Fewer than four stimuli (or identical ones) are returned at their
    principal-component scores.

    Args:
        features: (N, D) features.
        perplexity: from :data:`PERPLEXITY_RANGE`; lowered below N/3 with a warning.
        seed: seeds the jitter of the start (and the randomised PCA of large inputs).
        distances: their (N, N) Euclidean distances, if at hand.
        options: tuning; the defaults when ``None``.

    Returns:
        ``(coords, perplexity_used)``: (N, 2) float64 and the perplexity after clamping.
    """
    return tsne_many([features], perplexity, seed, [distances], options)[0]


def tsne_many(
    features: Sequence[torch.Tensor],
    perplexity: float = DEFAULT_PERPLEXITY,
    seed: int = 0,
    distances: Sequence[torch.Tensor | None] | None = None,
    options: TsneOptions | None = None,
) -> list[tuple[np.ndarray, float]]:
    """:func:`tsne_2d` of several feature sets; those with exact gradients and one N run as one batch.

    Each result equals what :func:`tsne_2d` gives for that feature set alone (the batch
    changes no arithmetic, only how many embeddings each operation carries).

    Args:
        features: B (N_b, D_b) feature sets.
        perplexity: as :func:`tsne_2d`.
        seed: as :func:`tsne_2d`.
        distances: per feature set, its (N_b, N_b) Euclidean distances or ``None``.
        options: tuning; the defaults when ``None``.

    Returns:
        B ``(coords, perplexity_used)`` pairs, in order.
    """
    options = options or TsneOptions()
    given = list(distances) if distances is not None else [None] * len(features)
    jobs = [_prepare(f, perplexity, seed, d, options) for f, d in zip(features, given, strict=True)]
    out: list[tuple[np.ndarray, float] | None] = [None] * len(jobs)
    exact: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        if job.p is not None:
            exact.setdefault(job.n, []).append(i)
        elif job.affinities is None:
            out[i] = (job.start, job.perplexity)
        else:
            out[i] = (_opentsne(job, seed, options), job.perplexity)
    phases = options.phases(options.exact_iterations)
    for group in exact.values():
        device = features[group[0]].device
        p = torch.from_numpy(np.stack([jobs[i].p for i in group])).to(device)
        start = torch.from_numpy(np.stack([jobs[i].start for i in group])).to(device)
        coords = exact_descent(p, start, phases)
        for j, i in enumerate(group):
            out[i] = (coords[j], jobs[i].perplexity)
    return [o for o in out if o is not None]


def _opentsne(job: _TsneJob, seed: int, options: TsneOptions) -> np.ndarray:
    """The embedding by openTSNE's Barnes-Hut (up to :attr:`TsneOptions.fft_above` stimuli) or FFT gradients."""
    from openTSNE import TSNEEmbedding  # noqa: PLC0415

    fft = job.n > options.fft_above
    threads = torch.get_num_threads()
    embedding = TSNEEmbedding(
        np.ascontiguousarray(job.start), job.affinities, negative_gradient_method="fft" if fft else "bh", n_jobs=threads, random_state=seed
    )
    coarse = {"min_num_intervals": options.fft_exaggeration_intervals} if fft else {}
    (early, e, m0), (final, _, m1) = options.phases(options.fft_iterations if fft else options.iterations)
    embedding = embedding.optimize(early, exaggeration=e, momentum=m0, **coarse)
    embedding = embedding.optimize(final, momentum=m1)
    return np.asarray(embedding, dtype=np.float64)
