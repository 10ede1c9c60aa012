"""Procrustes alignment of a sequence of 2-D embeddings, so an animation shows movement, not turns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .api import Embedding

__all__ = ["align_sequence"]


def align_sequence(embeddings: Sequence[Embedding], rescale: bool = False) -> list[Embedding]:
    """Procrustes-align each embedding to the one before it (rotation/reflection).

    Each frame is centred, optionally scaled to unit root-mean-square radius (so a frame
    whose activations are ten times larger does not shrink the others to a dot), then
    rotated onto the previous aligned frame, so an animation across nodes shows how
    points move rather than arbitrary turns and flips. Quality figures are unchanged
    (they describe the embeddings as computed).

    Args:
        embeddings: embeddings of the same stimuli, in display order.
        rescale: scale each frame to unit root-mean-square radius first.

    Returns:
        The embeddings with aligned (N, 2) coords, in order.
    """
    from scipy.linalg import orthogonal_procrustes  # noqa: PLC0415 - scipy.linalg loads on first use

    out: list[Embedding] = []
    prev: np.ndarray | None = None
    for emb in embeddings:
        y = emb.coords - emb.coords.mean(axis=0)
        if rescale:
            rms = float(np.sqrt((y**2).sum(axis=1).mean()))
            y = y / rms if rms > 0 else y
        if prev is not None and y.shape == prev.shape:
            y = y @ orthogonal_procrustes(y, prev)[0]
        out.append(replace(emb, coords=y))
        prev = y
    return out
