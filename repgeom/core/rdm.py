"""RDMs and RDM-to-RDM comparisons as matrix products on a torch device.

Design notes:
    Every RDM here is one Gram matrix: correlation distance is ``1 - Z Zᵀ`` for rows
    centred and scaled to unit norm; cosine distance the same without centring; the
    squared Euclidean distance ``|x|² + |y|² - 2 x·y`` after removing the mean pattern
    (distances do not change, the cancellation error does), divided by the number of
    features as rsatoolbox does. Products run in float64 by default, so results match
    rsatoolbox and scipy to ~1e-12; ``dtype=torch.float32`` halves the cost when that
    precision is not needed.

    *Symmetry.* A matrix product ``Z Zᵀ`` need not be exactly symmetric: entries ``ij``
    and ``ji`` may be summed in different orders (MKL on AMD CPUs, GPU kernels). So no
    result here relies on it. Products are split into row halves A and B: ``B Aᵀ`` is
    never multiplied but mirrored from ``A Bᵀ``, and the diagonal blocks ``A Aᵀ`` and
    ``B Bᵀ`` (or a whole small product) are replaced by :func:`symmetrised` copies,
    ``(M + Mᵀ) / 2``: ``m_ij + m_ji`` and ``m_ji + m_ij`` are one correctly rounded addition
    of the same two numbers and halving is exact. Every step after the product is
    elementwise and treats ``ij`` and ``ji`` alike (see :func:`_from_gram`), and the
    diagonal of an RDM is set to 0 last. So on every CPU and device, :func:`compute_rdm`,
    :func:`onehot_rdm`, :func:`euclidean_distances` and :func:`rdm_distances` return
    matrices equal to their transpose bit for bit with a zero diagonal, and
    :func:`centred_gram` and :func:`compare_rdms` (of one set of vectors) ones equal to
    their transpose.

    Comparisons follow rsatoolbox's ``compare``: the cosine, Pearson or Spearman
    similarity of the upper-triangle vectors. :func:`rdm_distances` turns them into
    angles (``arccos``), the metric the seed's representational path uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import choice_error

__all__ = [
    "COMPARE_METHODS",
    "RDM",
    "RDM_METHODS",
    "BlockStats",
    "bin_edges",
    "block_mean",
    "block_stats",
    "centred_gram",
    "compare_rdms",
    "compute_rdm",
    "euclidean_distances",
    "onehot_rdm",
    "rdm_distances",
    "symmetrised",
    "upper_triangle",
]

RDM_METHODS = ("correlation", "euclidean", "cosine")
COMPARE_METHODS = ("cosine", "corr", "spearman")


@dataclass(frozen=True)
class RDM:
    """A representational dissimilarity matrix that knows what it describes.

    Attributes:
        matrix: (N, N) float64, symmetric, zero diagonal.
        model: model id (or ``"labels"``).
        node: graph node name (or ``"labels"``).
        method: one of :data:`RDM_METHODS`.
        labels: (N,) digit labels of the stimuli, in row order.
    """

    matrix: np.ndarray
    model: str
    node: str
    method: str
    labels: np.ndarray
    bins: np.ndarray | None = None

    def reduced(self, side: int) -> RDM:
        """This RDM block-averaged to at most ``side`` × ``side`` cells (for display).

        Stimuli are grouped into ``side`` runs of consecutive rows (sorted by class, so
        runs stay within a class except at a few boundaries); each cell is the mean
        dissimilarity between two runs (exactly symmetric, as :func:`symmetrised`), and
        ``labels`` holds each run's majority digit. ``bins`` holds the run edges in stimulus
        rows. Returns ``self`` when small enough.
        """
        n = self.matrix.shape[0]
        if n <= side:
            return self
        edges = bin_edges(n, side)
        labels = np.array([np.bincount(self.labels[a:b]).argmax() for a, b in zip(edges[:-1], edges[1:], strict=True)])
        means = block_mean(self.matrix, edges)
        return RDM((means + means.T) * 0.5, self.model, self.node, self.method, labels, edges)

    @property
    def name(self) -> str:
        """``"<model>/<node>"``, or ``"labels"`` for the label RDM."""
        return "labels" if self.model == "labels" else f"{self.model}/{self.node}"


def _check_method(method: str, allowed: Sequence[str], what: str) -> None:
    if method not in allowed:
        raise choice_error(what, method, allowed)


def compute_rdm(features: torch.Tensor, method: str = "correlation", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Dissimilarities between the rows of ``features``.

    Args:
        features: (N, D) tensor (any float dtype, any device); higher dims are flattened.
        method: ``"correlation"`` (1 - Pearson r, rsatoolbox's default), ``"euclidean"``
            (squared Euclidean distance / D, rsatoolbox's convention) or ``"cosine"``
            (1 - cosine similarity, as ``scipy.spatial.distance.pdist(..., "cosine")``).
        dtype: precision of the products.

    Returns:
        (N, N) tensor on ``features.device``, symmetric with an exact zero diagonal.
        A row with zero variance (correlation) or zero norm (cosine) has distance 1 to
        every other row rather than NaN.

    Notes:
        The work is one matrix product. For wide features (D >= N) it is the plain Gram
        matrix and the centring, scaling and ``1 - r`` happen in place on the small N×N
        result; for tall ones (N > D) the row scalings and rank-one corrections ride along
        as extra columns and ``addmm`` writes ``1 - r`` (or ``d² / D``) directly. In
        float64 the uncentred form loses nothing that matters (errors ~1e-16 of
        ``|x|² / d²``); in float32 rows are centred first to keep cancellation small.
    """
    _check_method(method, RDM_METHODS, "RDM method")
    x = features.reshape(features.shape[0], -1)
    n, d = x.shape
    if d < n <= _FUSED_MAX_N:
        rdm = _fused(x.to(dtype), d, method)
    elif d >= n:
        centred = dtype != torch.float64  # centre first: float32 cannot afford the cancellation
        columns = x.mean(dim=0, dtype=dtype) if centred and method == "euclidean" else None
        rows = x.mean(dim=1, dtype=dtype) if centred and method == "correlation" else None
        g, residual = centred_gram(x, dtype, columns, rows)
        mean = (residual if rows is not None else x.mean(dim=1, dtype=dtype)) if method == "correlation" else None
        rdm = _from_gram(g, d, method, mean)
    else:
        x = x.to(dtype)
        if dtype != torch.float64:
            x = x - (x.mean(dim=0, keepdim=True) if method == "euclidean" else x.mean(dim=1, keepdim=True) if method == "correlation" else 0.0)
        rdm = _augmented(x, d, method, x.mean(dim=1) if method == "correlation" else None)
    return rdm.fill_diagonal_(0.0)


def symmetrised(matrix: torch.Tensor, zero_diagonal: bool = False) -> torch.Tensor:
    """``(A + Aᵀ) / 2``: exactly symmetric whatever order produced ``A``.

    ``a_ij + a_ji`` and ``a_ji + a_ij`` are one correctly rounded addition of the same two
    numbers (float addition is commutative), and halving is exact, so the result equals its
    transpose bit for bit on every device; where ``A`` was already symmetric it is unchanged.

    Args:
        matrix: (N, N) tensor, any float dtype and device.
        zero_diagonal: also set the diagonal to exactly 0 (for dissimilarities).

    Returns:
        A new (N, N) tensor.
    """
    out = torch.add(matrix, matrix.T).mul_(0.5)
    if zero_diagonal:
        out.fill_diagonal_(0.0)
    return out


#: Up to this many rows, tall features (N > D) take :func:`_fused`: preparing the small
#: N × D input costs less than the N × N passes it saves.
_FUSED_MAX_N = 2048


def _fused(x: torch.Tensor, d: int, method: str) -> torch.Tensor:
    """Tall features, N <= :data:`_FUSED_MAX_N`: prepare the rows, then one product writes the RDM.

    Euclidean: ``(|x_i|² + |x_j|²) / D`` is laid down and ``addmm_`` adds ``-2 x_i·x_j / D``
    in place (rows scaled by ``D^-1/2`` first, so ``alpha`` is -2 and scales exactly; in
    float32 the columns are centred first, as in :func:`compute_rdm`), then a clamp at 0.
    Correlation and cosine: rows centred (correlation) and scaled to unit norm, then
    ``1 - Z Zᵀ`` by ``addmm``. Small shapes are dominated by the number of operations
    (N = 500, D = 128: the product takes 0.2-0.5 ms, each extra operation 10-20 µs), so
    there are as few as the arithmetic allows; the product is :func:`_symmetric_addmm_`, so
    the result is exactly symmetric.
    """
    if method == "euclidean":
        # 1/D folded into the rows, so alpha stays a power of two; float32 rows centred first
        xs = (x - x.mean(dim=0, keepdim=True)).mul_(d**-0.5) if x.dtype != torch.float64 else x * d**-0.5
        sq = (xs * xs).sum(dim=1)
        return _symmetric_addmm_(torch.add(sq[:, None], sq[None, :]), xs, -2.0).clamp_(min=0.0)
    z = torch.nn.functional.normalize(x - x.mean(dim=1, keepdim=True) if method == "correlation" else x, dim=1)
    return _symmetric_addmm_(torch.ones(x.shape[0], x.shape[0], dtype=x.dtype, device=x.device), z, -1.0)  # a zero row: distance 1


def _symmetric_addmm_(out: torch.Tensor, a: torch.Tensor, alpha: float) -> torch.Tensor:
    """``out += alpha · a aᵀ`` for a symmetric ``out``, exactly symmetric, with three quarters of the product.

    Rows are split into halves A and B: ``A [A; B]ᵀ`` and ``B Bᵀ`` are added, then
    :func:`_mirror_halves_`. Cheaper than a full product plus a full symmetrising pass
    (at N = 500 that pass's N × N temporary costs more than the product).
    """
    h = _half(a.shape[0])
    if h:
        out[:h].addmm_(a[:h], a.T, alpha=alpha)
        out[h:, h:].addmm_(a[h:], a[h:].T, alpha=alpha)
    else:
        out.addmm_(a, a.T, alpha=alpha)
    return _mirror_halves_(out, h)


def _half(n: int) -> int:
    """Rows of the upper half A in a product split as ``A [A; B]ᵀ`` and ``B Bᵀ``; 0 (no split) below 256 rows."""
    return n // 2 if n >= 256 else 0


def _mirror_halves_(g: torch.Tensor, h: int) -> torch.Tensor:
    """Make a product split at row ``h`` exactly symmetric, in place.

    The lower-left block becomes the transpose of the upper-right one, and the two diagonal
    blocks (the whole matrix when ``h`` is 0) are replaced by :func:`symmetrised` copies:
    half the matrix passes through a temporary, not all of it.
    """
    if not h:
        return g.copy_(symmetrised(g))
    g[h:, :h] = g[:h, h:].T
    for block in (g[:h, :h], g[h:, h:]):
        block.copy_(symmetrised(block))
    return g


#: Default bytes of one column block of :func:`centred_gram` (centred, converted, then multiplied while cached).
GRAM_BLOCK_BYTES = 8 << 20


def centred_gram(
    x: torch.Tensor,
    dtype: torch.dtype,
    columns: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
    block_bytes: int = GRAM_BLOCK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``y yᵀ`` for ``y = x`` in ``dtype``, less the column means ``columns`` or the row means ``rows``.

    ``y`` is never formed: blocks of ``block_bytes`` (at least 256 columns) are converted and
    centred into one reused buffer and multiplied while they are in cache, so wide features
    (a 500 × 36,864 layer) cost no full-size copy (0.1 s of page faults and memory traffic
    per path). Torch has no BLAS ``syrk``, so rows are split into halves A and B:
    ``A [A; B]ᵀ`` and ``B Bᵀ`` are multiplied and ``B Aᵀ`` is mirrored, three quarters of the
    product; ``B Aᵀ`` is mirrored from ``A Bᵀ`` and the diagonal blocks ``A Aᵀ`` and ``B Bᵀ``
    are :func:`symmetrised`, since a product's entries ``ij`` and ``ji`` need not be summed
    in the same order.

    Args:
        x: (N, D) features, any float dtype.
        dtype: precision of the products.
        columns: (D,) values subtracted from every row, or ``None``.
        rows: (N,) values subtracted from every column, or ``None``.
        block_bytes: size of one converted column block (it should fit in a cache).

    Returns:
        ``(gram, residual)``: the (N, N) Gram matrix, exactly symmetric, and with
        ``rows``, the (N,) means of the centred rows (round-off), else ``None``.
    """
    n, d = x.shape
    width = max(256, block_bytes // max(1, n * torch.finfo(dtype).bits // 8))
    g = torch.zeros(n, n, dtype=dtype, device=x.device)
    buffer = torch.empty(n, min(width, d), dtype=dtype, device=x.device)
    residual = torch.zeros(n, dtype=dtype, device=x.device) if rows is not None else None
    h = _half(n)
    for c0 in range(0, d, width):
        c1 = min(d, c0 + width)
        block = buffer[:, : c1 - c0]
        if columns is not None:
            torch.sub(x[:, c0:c1], columns[c0:c1], out=block)
        elif rows is not None:
            torch.sub(x[:, c0:c1], rows[:, None], out=block)
        else:
            block.copy_(x[:, c0:c1])
        if residual is not None:
            residual += block.sum(dim=1)
        if h:
            g[:h].addmm_(block[:h], block.T)
            g[h:, h:].addmm_(block[h:], block[h:].T)
        else:
            g.addmm_(block, block.T)
    return _mirror_halves_(g, h), (residual / d if residual is not None else None)


def euclidean_distances(features: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Euclidean distances between the rows of ``features``, from their centred Gram matrix.

    Args:
        features: (N, D) tensor (higher dims are flattened), any float dtype and device.
        dtype: precision of the products.

    Returns:
        (N, N) tensor on ``features.device``, exactly symmetric with an exact zero diagonal.
    """
    x = features.reshape(features.shape[0], -1)
    g = centred_gram(x, dtype, columns=x.mean(dim=0, dtype=dtype))[0]
    sq = g.diagonal().clone()
    d2 = torch.add(sq[:, None], sq[None, :]).add_(g, alpha=-2.0).clamp_(min=0.0)  # symmetric: see _from_gram
    return d2.fill_diagonal_(0.0).sqrt_()


def _from_gram(g: torch.Tensor, d: int, method: str, mean: torch.Tensor | None) -> torch.Tensor:
    """Wide features (D >= N): one product, then in-place fixes on the small N×N matrix.

    Every fix is elementwise and computes entries ``ij`` and ``ji`` from the same operands
    (``sq_i + sq_j``, ``m_i m_j``, ``inv_i inv_j`` commute) by the same correctly rounded
    operations; the one multiply-add, ``t - 2 g``, rounds alike fused or not because
    ``-2 g`` is exact. So an exactly symmetric ``g`` gives an exactly symmetric RDM.
    """
    if method == "euclidean":
        sq = g.diagonal().clone()
        return torch.add(sq[:, None], sq[None, :]).add_(g, alpha=-2.0).clamp_(min=0.0).div_(d)
    if mean is not None:
        g.sub_(torch.outer(mean, mean).mul_(d))  # centre: <x_i - m_i, x_j - m_j>
    sq = g.diagonal().clone()
    inv = torch.where(sq > 0, sq.clamp_min(torch.finfo(g.dtype).tiny).rsqrt(), torch.zeros_like(sq))
    rdm = g.mul_(torch.outer(inv, inv)).neg_().add_(1.0)
    return _constant_rows(rdm, sq <= 0)


def _augmented(x: torch.Tensor, d: int, method: str, mean: torch.Tensor | None, block: int = 2048) -> torch.Tensor:
    """Tall features (N > D): corrections ride along as extra columns; only the upper half is multiplied.

    Row block ``i`` is multiplied against columns ``i0:`` (its diagonal block and
    everything right of it), finished in place (its diagonal block :func:`symmetrised`), and
    mirrored into the lower half, so the product costs about half a full ``N × N`` matmul
    and the result is exactly symmetric.
    """
    n = x.shape[0]
    one = torch.ones(n, 1, dtype=x.dtype, device=x.device)
    if method == "euclidean":
        sq = (x * x).sum(dim=1, keepdim=True)
        a = torch.cat([x, sq, one], dim=1)
        b = torch.cat([x * -2.0, one, sq], dim=1)
        start, alpha, lower = 0.0, 1.0 / d, 0.0
        zero = None
    else:
        m = mean[:, None] if mean is not None else torch.zeros_like(one)
        sq = (x * x).sum(dim=1, keepdim=True) - d * m * m  # squared norm of the centred row
        inv = torch.where(sq > 0, sq.clamp_min(torch.finfo(x.dtype).tiny).rsqrt(), torch.zeros_like(sq))
        u = m * inv * d**0.5
        xs = x * inv
        # 1 - r with r_ij = <x_i/s_i, x_j/s_j> - D m_i m_j / (s_i s_j)
        a, b = torch.cat([xs, u], dim=1), torch.cat([xs, -u], dim=1)
        start, alpha, lower = 1.0, -1.0, None
        zero = (sq <= 0).squeeze(1)
    rdm = torch.empty(n, n, dtype=x.dtype, device=x.device)
    c = torch.full((), start, dtype=x.dtype, device=x.device)
    for i0 in range(0, n, block):
        i1 = min(i0 + block, n)
        part = torch.addmm(c, a[i0:i1], b[i0:].T, alpha=alpha)
        if lower is not None:
            part.clamp_(min=lower)
        diag = part[:, : i1 - i0]
        diag.copy_(symmetrised(diag))  # a != b: the diagonal block is not symmetric by itself
        rdm[i0:i1, i0:] = part
        rdm[i1:, i0:i1] = part[:, i1 - i0 :].T
    return rdm if zero is None else _constant_rows(rdm, zero)


def _constant_rows(rdm: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Rows without variation get distance 1 to everything (instead of NaN)."""
    if bool(zero.any()):
        rdm[zero, :] = 1.0
        rdm[:, zero] = 1.0
    return rdm


def bin_edges(n: int, side: int) -> np.ndarray:
    """``side + 1`` edges splitting ``n`` consecutive rows into near-equal runs."""
    return np.linspace(0, n, min(n, side) + 1).round().astype(np.int64)


def block_mean(matrix: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of ``matrix`` over the blocks given by ``edges`` on both axes."""
    starts = edges[:-1]
    sums = np.add.reduceat(np.add.reduceat(matrix, starts, axis=0), starts, axis=1)
    counts = np.diff(edges).astype(np.float64)
    return sums / np.outer(counts, counts)


@dataclass(frozen=True)
class BlockStats:
    """What one block of an RDM holds: its mean as a block-mean map shows it, and the spread of its pairs.

    Attributes:
        mean: mean over every entry of the block (the block-mean map's cell; a stimulus
            in both runs adds its zero self-dissimilarity).
        pairs: distinct pairs of two different stimuli in the block.
        pair_mean: mean dissimilarity over those pairs.
        sd: their standard deviation (population, ``ddof=0``).
        low: their smallest dissimilarity.
        high: their largest dissimilarity.
    """

    mean: float
    pairs: int
    pair_mean: float
    sd: float
    low: float
    high: float


def block_stats(matrix: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> BlockStats:
    """The mean and the spread of ``matrix`` over the block ``rows`` × ``cols``.

    Args:
        matrix: (N, N) symmetric RDM with a zero diagonal.
        rows: (n,) distinct row positions of the block.
        cols: (m,) distinct column positions of the block (equal to ``rows``, disjoint from
            them, or overlapping).

    Returns:
        :class:`BlockStats`. The spread is over the block's pairs of different stimuli,
        each unordered pair once (a pair inside both runs appears twice in the block).
        With no such pair (a single stimulus) the pair statistics are NaN.
    """
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    block = np.asarray(matrix, dtype=np.float64)[np.ix_(rows, cols)]
    r, c = rows[:, None], cols[None, :]
    shared = np.isin(r, cols) & np.isin(c, rows)  # both stimuli in both runs: the pair is also at (c, r)
    keep = (r != c) & (~shared | (r < c))
    values = block[keep]
    if values.size == 0:
        nan = float("nan")
        return BlockStats(float(block.mean()), 0, nan, nan, nan, nan)
    return BlockStats(float(block.mean()), int(values.size), float(values.mean()), float(values.std()), float(values.min()), float(values.max()))


def onehot_rdm(labels: np.ndarray | torch.Tensor, method: str = "euclidean", n_classes: int | None = None) -> torch.Tensor:
    """The seed's ``labels`` RDM: ``method`` applied to one-hot label vectors.

    With the default Euclidean method and 10 classes it is 0 within a class and 0.2
    between classes (seed-reference §4.6).
    """
    lab = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    k = int(n_classes if n_classes is not None else int(lab.max()) + 1)
    return compute_rdm(torch.nn.functional.one_hot(lab, k).to(torch.float64), method)


def upper_triangle(rdms: torch.Tensor) -> torch.Tensor:
    """(K, N, N) stack (or one (N, N)) -> (K, N(N-1)/2) upper-triangle vectors, row-major."""
    if rdms.ndim == 2:
        rdms = rdms[None]
    n = rdms.shape[-1]
    iu = torch.triu_indices(n, n, offset=1, device=rdms.device)
    return rdms[:, iu[0], iu[1]]


def compare_rdms(vectors: torch.Tensor, method: str = "cosine", other: torch.Tensor | None = None) -> torch.Tensor:
    """Similarity between RDMs, as rsatoolbox's ``compare``.

    Args:
        vectors: (K, P) upper-triangle vectors (see :func:`upper_triangle`).
        method: ``"cosine"``, ``"corr"`` (Pearson) or ``"spearman"`` (Pearson of ranks,
            ties averaged).
        other: (L, P) vectors to compare against; defaults to ``vectors``.

    Returns:
        (K, L) float64 similarities in [-1, 1], exactly symmetric when ``other`` is ``None``.
        A constant vector has similarity NaN with everything under ``corr``/``spearman``
        (and a zero vector under ``cosine``), as in rsatoolbox.
    """
    _check_method(method, COMPARE_METHODS, "comparison method")
    a = vectors.to(torch.float64)
    b = a if other is None else other.to(device=a.device, dtype=torch.float64)
    if method == "spearman":
        from scipy.stats import rankdata  # noqa: PLC0415 - scipy.stats costs 0.3 s to import; only for Spearman

        a = torch.from_numpy(rankdata(a.cpu().numpy(), axis=1)).to(a.device)
        b = a if other is None else torch.from_numpy(rankdata(b.cpu().numpy(), axis=1)).to(a.device)
    if method in ("corr", "spearman"):
        a = a - a.mean(dim=1, keepdim=True)
        b = a if other is None else b - b.mean(dim=1, keepdim=True)
    an = a / torch.linalg.vector_norm(a, dim=1, keepdim=True)
    bn = an if other is None else b / torch.linalg.vector_norm(b, dim=1, keepdim=True)
    sim = an @ bn.T
    return (symmetrised(sim) if other is None else sim).clamp_(-1.0, 1.0)


def rdm_distances(vectors: torch.Tensor, method: str = "cosine") -> torch.Tensor:
    """RDM-to-RDM angles: ``arccos`` of :func:`compare_rdms`, as the seed's path uses.

    NaN similarities (an all-zero RDM) become distance 0, as the seed does, and the
    matrix is symmetrised as ``(A + Aᵀ) / 2`` with an exact zero diagonal.

    Returns:
        (K, K) float64 angles in radians, in [0, π].
    """
    return symmetrised(torch.nan_to_num(torch.arccos(compare_rdms(vectors, method)), nan=0.0), zero_diagonal=True)
