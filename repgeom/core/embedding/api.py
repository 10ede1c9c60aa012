"""One entry point for every method: :func:`embed` / :func:`embed_many` return :class:`Embedding` objects with their quality."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import RepgeomError, choice_error
from ..rdm import euclidean_distances
from .mds import MdsOptions, mds_starts, smacof_many
from .pca import pca_2d
from .quality import default_neighbors, trustworthiness_from_distances
from .tsne import DEFAULT_PERPLEXITY, TsneOptions, tsne_many

__all__ = ["EMBED_METHODS", "MDS_MAX_N", "TRUST_SAMPLE", "Embedding", "embed", "embed_many", "prepare_backends", "variance_shares"]

EMBED_METHODS = ("pca", "mds", "tsne")
#: Trustworthiness above this many stimuli is computed on a seeded sample of this size.
TRUST_SAMPLE = 3000
#: Metric MDS (SMACOF on N × N matrices) is offered up to this many stimuli by default.
MDS_MAX_N = MdsOptions().max_n


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
        explained: for PCA, the shares of the features' total variance along its two axes
            (``None`` for other methods).
    """

    coords: np.ndarray
    method: str
    model: str
    node: str
    labels: np.ndarray
    trustworthiness: float
    stress: float | None = None
    perplexity: float | None = None
    explained: tuple[float, float] | None = None


def prepare_backends() -> None:
    """Import openTSNE and compile (or load from disk) the numba kernels now, not on first use.

    A server does this before it serves, and the benchmark before it times anything, so no
    request or measurement pays for them.
    """
    import openTSNE  # noqa: F401, PLC0415
    import openTSNE.affinity  # noqa: F401, PLC0415
    import openTSNE.initialization  # noqa: F401, PLC0415
    import openTSNE.nearest_neighbors  # noqa: F401, PLC0415

    from ..kernels import compile_kernels  # noqa: PLC0415

    compile_kernels()


def embed(
    features: torch.Tensor,
    method: str,
    labels: np.ndarray,
    model: str = "",
    node: str = "",
    seed: int = 0,
    perplexity: float = DEFAULT_PERPLEXITY,
    distances: torch.Tensor | None = None,
    *,
    tsne_options: TsneOptions | None = None,
    mds_options: MdsOptions | None = None,
    trust_sample: int = TRUST_SAMPLE,
) -> Embedding:
    """Embed one node's stimuli in 2-D and measure how faithful the picture is.

    Args:
        features: (N, D) features.
        method: ``"pca"``, ``"mds"`` or ``"tsne"``.
        labels: (N,) digit labels (carried along).
        model: model id (carried along).
        node: node name (carried along).
        seed: random state for t-SNE and the extra MDS starts.
        perplexity: t-SNE perplexity (clamped below N/3 with a warning).
        distances: precomputed (N, N) Euclidean distances of ``features`` (optional).
        tsne_options: t-SNE tuning (defaults when ``None``).
        mds_options: MDS tuning (defaults when ``None``).
        trust_sample: above this many stimuli, trustworthiness on a seeded sample of this size.

    Returns:
        An :class:`Embedding`.
    """
    return embed_many([features], method, labels, model, [node], seed, perplexity, [distances],
                      tsne_options=tsne_options, mds_options=mds_options, trust_sample=trust_sample)[0]


def variance_shares(features: torch.Tensor, coords: np.ndarray) -> tuple[float, float] | None:
    """The shares of the features' total variance that the two columns of ``coords`` (PC scores) carry.

    Args:
        features: (N, ...) one node's features.
        coords: (N, 2) their first two principal-component scores.

    Returns:
        ``(share of PC 1, share of PC 2)``, each in [0, 1]; ``None`` when the features do not vary.
    """
    flat = features.reshape(features.shape[0], -1).to(torch.float64)
    total = float(((flat - flat.mean(dim=0)) ** 2).sum())
    if not total > 0:
        return None
    along = ((coords - coords.mean(axis=0)) ** 2).sum(axis=0)
    return float(along[0] / total), float(along[1] / total)


def embed_many(
    features: Sequence[torch.Tensor],
    method: str,
    labels: np.ndarray,
    model: str = "",
    nodes: Sequence[str] | None = None,
    seed: int = 0,
    perplexity: float = DEFAULT_PERPLEXITY,
    distances: Sequence[torch.Tensor | None] | None = None,
    *,
    tsne_options: TsneOptions | None = None,
    mds_options: MdsOptions | None = None,
    trust_sample: int = TRUST_SAMPLE,
) -> list[Embedding]:
    """:func:`embed` for several nodes' features of the same stimuli.

    MDS and exact t-SNE of feature sets with the same N run as one batch (one sequence of
    (B, N, N) operations instead of B), which is where their time goes; each embedding is
    what :func:`embed` gives for that node alone. Every embedding carries its
    trustworthiness (scikit-learn's definition, k = 5 neighbours, fewer for tiny N) from the
    same stimulus distances; above ``trust_sample`` stimuli, on a seeded sample of that size.

    Args:
        features: B (N, D_b) feature sets.
        method: ``"pca"``, ``"mds"`` or ``"tsne"``.
        labels: (N,) digit labels (carried along).
        model: model id (carried along).
        nodes: B node names (carried along).
        seed: random state for t-SNE and the extra MDS starts.
        perplexity: t-SNE perplexity (clamped below N/3 with a warning).
        distances: per feature set, its precomputed (N, N) Euclidean distances or ``None``.
        tsne_options: t-SNE tuning (defaults when ``None``).
        mds_options: MDS tuning (defaults when ``None``).
        trust_sample: above this many stimuli, trustworthiness on a seeded sample of this size.

    Returns:
        B :class:`Embedding` objects, in order.
    """
    if method not in EMBED_METHODS:
        raise choice_error("embedding method", method, EMBED_METHODS)
    mds = mds_options or MdsOptions()
    names = list(nodes) if nodes is not None else [""] * len(features)
    given = list(distances) if distances is not None else [None] * len(features)
    sizes = [f.shape[0] for f in features]
    if method == "mds" and max(sizes, default=0) > mds.max_n:
        raise RepgeomError(
            f"MDS is offered up to {mds.max_n} stimuli (it fits all N² distances); got {max(sizes)}: use PCA or t-SNE, or fewer images per class"
        )
    dists = [
        euclidean_distances(f) if d is None and n <= trust_sample else d for f, d, n in zip(features, given, sizes, strict=True)
    ]
    stresses: list[float | None] = [None] * len(features)
    perplexities: list[float | None] = [None] * len(features)
    shares: list[tuple[float, float] | None] = [None] * len(features)
    if method == "pca":
        coords = [pca_2d(f, d).cpu().numpy() for f, d in zip(features, dists, strict=True)]
        shares = [variance_shares(f, xy) for f, xy in zip(features, coords, strict=True)]
    elif method == "mds":
        coords = [np.zeros((n, 2)) for n in sizes]
        for n in sorted(set(sizes)):
            group = [i for i, m in enumerate(sizes) if m == n]
            delta = torch.stack([dists[i].to(torch.float64) for i in group])
            starts = torch.stack([mds_starts(d, mds.starts, seed, mds.spread) for d in delta])
            work = torch.float32 if n >= mds.float32_min_n else torch.float64
            solved = smacof_many(delta, starts, mds.max_iter, mds.eps, race=mds.race, dtype=work, relax=mds.relax)
            for i, (xy, stress, _) in zip(group, solved, strict=True):
                coords[i], stresses[i] = xy.cpu().numpy(), stress
    else:
        done = tsne_many(features, perplexity, seed, dists, tsne_options)
        coords = [c for c, _ in done]
        perplexities = [p for _, p in done]
    out = []
    for f, d, n, xy, name, stress, used, share in zip(features, dists, sizes, coords, names, stresses, perplexities, shares, strict=True):
        if n > trust_sample:  # a seeded sample keeps the O(N²) ranking bounded
            pick = np.sort(np.random.default_rng(seed).choice(n, trust_sample, replace=False))
            sub = euclidean_distances(f.reshape(n, -1)[torch.as_tensor(pick, device=f.device)])
            tw = trustworthiness_from_distances(sub, xy[pick], n_neighbors=5)
        else:
            tw = trustworthiness_from_distances(d, xy, n_neighbors=default_neighbors(n)) if n > 3 else 1.0
        out.append(Embedding(coords=xy, method=method, model=model, node=name, labels=np.asarray(labels),
                             trustworthiness=tw, stress=stress, perplexity=used, explained=share))
    return out
