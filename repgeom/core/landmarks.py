"""Reference RDMs for a representational path: what no structure, chance labels and a hypothesis look like.

Design notes:
    A path's angles mean little without reference points. Beside the seed's ``labels``
    RDM this module makes:

    * ``noise``: the RDM of i.i.d. standard Gaussian features of a given shape (seeded),
      a structureless floor;
    * ``shuffled``: the ``labels`` RDM of a seeded permutation of the labels, what the
      label RDM looks like by chance;
    * ``group:NAME``: a hypothesis RDM, one-hot of a grouping of the classes
      (``odd=1,3,5,7,9|0,2,4,6,8``); classes named in no group form one more group.

    Each is computed with the path's own RDM method, so it sits in the same space as the
    node RDMs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import RepgeomError
from .rdm import compute_rdm

__all__ = ["KINDS", "Landmark", "landmark_features", "landmark_rdm", "parse_landmarks"]

KINDS = ("labels", "noise", "shuffled", "group")
_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,30}")


@dataclass(frozen=True)
class Landmark:
    """A reference point of a path.

    Attributes:
        kind: ``labels``, ``noise``, ``shuffled`` or ``group``.
        name: the row's name in the path (``labels``, ``noise``, ``shuffled``, ``group:NAME``).
        groups: for ``group``, the class indices of each group.
    """

    kind: str
    name: str
    groups: tuple[tuple[int, ...], ...] = ()


def _class_index(token: str, class_names: Sequence[str]) -> int:
    token = token.strip()
    if token in class_names:
        return list(class_names).index(token)
    if token.isdigit() and int(token) < len(class_names):
        return int(token)
    raise RepgeomError(f"unknown class {token[:30]!r} in a group; allowed: class names or indices 0..{len(class_names) - 1}")


def parse_landmarks(text: str | Sequence[str], class_names: Sequence[str]) -> list[Landmark]:
    """Parse ``labels,noise,shuffled,group:NAME=1,3,5|0,2,4`` (or a list of such items).

    A group item runs to the next ``labels``, ``noise``, ``shuffled`` or ``group:``; its
    groups are separated by ``|`` and hold class names or indices, comma separated.

    Raises:
        RepgeomError: an unknown item, a bad group name, an unknown or repeated class, or
            fewer than one group; the message says what is allowed.
    """
    items = [text] if isinstance(text, str) else list(text)
    tokens = [t.strip() for item in items for t in item.split(",")]
    out: list[Landmark] = []
    current: list[str] | None = None

    def close() -> None:
        if current is not None:
            out.append(_group(",".join(current), class_names))

    for tok in tokens:
        if tok in ("labels", "noise", "shuffled"):
            close()
            current = None
            out.append(Landmark(tok, tok))
        elif tok.startswith("group:"):
            close()
            current = [tok[len("group:"):]]
        elif current is not None:
            current.append(tok)
        elif tok:
            raise RepgeomError(f"unknown landmark {tok[:30]!r}; allowed: labels, noise, shuffled, group:NAME=a,b|c,d")
    close()
    names = [lm.name for lm in out]
    if len(set(names)) != len(names):
        raise RepgeomError("each landmark may be named once")
    return out


def _group(spec: str, class_names: Sequence[str]) -> Landmark:
    name, eq, body = spec.partition("=")
    if not eq or not _NAME.fullmatch(name):
        raise RepgeomError(f"a group landmark is group:NAME=a,b|c,d with NAME of letters, digits, '_', '.', '+', '-'; got {spec[:40]!r}")
    groups = tuple(tuple(_class_index(t, class_names) for t in part.split(",") if t.strip()) for part in body.split("|"))
    groups = tuple(g for g in groups if g)
    flat = [c for g in groups for c in g]
    if not groups or len(flat) != len(set(flat)):
        raise RepgeomError(f"group:{name}: give at least one group, each class at most once")
    return Landmark("group", f"group:{name}", groups)


def landmark_features(landmark: Landmark, labels: np.ndarray, n_classes: int, input_dim: int, seed: int = 0) -> torch.Tensor:
    """The (N, D) features whose RDM (or Gram matrix, for CKA) is the landmark.

    ``labels`` and ``shuffled`` are one-hot class vectors (of permuted labels for
    ``shuffled``), ``group`` one-hot group vectors, ``noise`` i.i.d. standard Gaussian
    vectors of the input's size.

    Args:
        landmark: what to compute.
        labels: (N,) class labels of the stimuli.
        n_classes: the dataset's class count.
        input_dim: features of the noise landmark (the input's size, C·H·W).
        seed: seeds the noise and the shuffle.
    """
    labels = np.asarray(labels)
    if landmark.kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(len(labels), input_dim, generator=gen, dtype=torch.float64)
    if landmark.kind == "shuffled":
        labels = labels[np.random.default_rng(seed).permutation(len(labels))]
    if landmark.kind == "group":
        group_of = np.full(n_classes, len(landmark.groups), dtype=np.int64)
        for g, members in enumerate(landmark.groups):
            group_of[list(members)] = g
        n_groups = len(landmark.groups) + int(bool((group_of == len(landmark.groups)).any()))
        return torch.nn.functional.one_hot(torch.from_numpy(group_of[labels]), n_groups).to(torch.float64)
    return torch.nn.functional.one_hot(torch.from_numpy(labels.astype(np.int64)), n_classes).to(torch.float64)


def landmark_rdm(landmark: Landmark, labels: np.ndarray, method: str, n_classes: int, input_dim: int, seed: int = 0) -> torch.Tensor:
    """The (N, N) RDM of one landmark, computed with the path's RDM ``method`` (see :func:`landmark_features`)."""
    return compute_rdm(landmark_features(landmark, labels, n_classes, input_dim, seed), method)
