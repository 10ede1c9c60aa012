"""2-D embeddings of stimuli (PCA, metric MDS, t-SNE), their quality, and Procrustes alignment.

Layout (one job per module):

* :mod:`.api`: :class:`Embedding`, :func:`embed`, :func:`embed_many` (every method, with its quality).
* :mod:`.pca`: principal components from features or from distances (classical scaling).
* :mod:`.mds`: SMACOF for batches of matrices and starts, :class:`MdsOptions`.
* :mod:`.tsne`: exact-gradient and openTSNE t-SNE, :class:`TsneOptions`.
* :mod:`.quality`: trustworthiness and stress-1.
* :mod:`.align`: Procrustes alignment of a sequence of embeddings.

Tuning knobs are keyword parameters (the option dataclasses), not module state. Nothing
heavy loads at import: openTSNE on the first t-SNE, numba on the first fused kernel
(:func:`prepare_backends` does both ahead).
"""

from __future__ import annotations

from ..rdm import euclidean_distances
from .align import align_sequence
from .api import EMBED_METHODS, MDS_MAX_N, TRUST_SAMPLE, Embedding, embed, embed_many, prepare_backends, variance_shares
from .mds import MdsOptions, classical_mds, mds_starts, smacof, smacof_many
from .pca import pca_2d, pca_scores, principal_axes, top_eigh
from .quality import stress1, trustworthiness_from_distances
from .tsne import DEFAULT_PERPLEXITY, PERPLEXITY_RANGE, TsneOptions, clamp_perplexity, tsne_2d, tsne_many

__all__ = [
    "DEFAULT_PERPLEXITY",
    "EMBED_METHODS",
    "MDS_MAX_N",
    "PERPLEXITY_RANGE",
    "TRUST_SAMPLE",
    "Embedding",
    "MdsOptions",
    "TsneOptions",
    "align_sequence",
    "clamp_perplexity",
    "classical_mds",
    "embed",
    "embed_many",
    "euclidean_distances",
    "mds_starts",
    "pca_2d",
    "pca_scores",
    "prepare_backends",
    "principal_axes",
    "smacof",
    "smacof_many",
    "stress1",
    "top_eigh",
    "trustworthiness_from_distances",
    "tsne_2d",
    "tsne_many",
    "variance_shares",
]
