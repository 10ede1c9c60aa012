"""Datasets: what a model's inputs are (classes, image size, channels, normalisation) and where probes come from.

Design notes:
    Nothing about a particular dataset is written in code. A built-in dataset is a JSON
    descriptor in ``repgeom/data/`` (``mnist.json``) beside its embedded probe file; a
    model names its dataset in the models manifest. Everything downstream (stimulus
    sampling, the feature probe, FGSM, legends and hover text) reads a
    :class:`DatasetInfo`.

    Pixels travel as (N, C, H, W) float32 in [0, 1]; a model sees them normalised per
    channel with the dataset's mean and std.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RepgeomError, choice_error

__all__ = ["CENTRINGS", "DatasetInfo", "builtin_datasets", "get_dataset"]

#: Limits a dataset descriptor must respect (2 to 100 classes, images up to 512 pixels a side).
MAX_CLASSES = 100
MAX_SIDE = 512
#: Where a new image's content is placed: by its centre of mass or its bounding box.
CENTRINGS = ("mass", "box")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")


@dataclass(frozen=True)
class DatasetInfo:
    """A labelled image set as repgeom needs to know it.

    Attributes:
        id: short id used in manifests, URLs and exports (``"mnist"``).
        name: display name (``"MNIST"``).
        class_names: one name per class, in label order.
        channels: 1 (grey) or 3 (RGB).
        image_size: (H, W) in pixels.
        mean: per-channel mean of the normalisation (``channels`` values, or one for all).
        std: per-channel standard deviation of the normalisation.
        probes: file name of the probe set: in ``repgeom/data`` for a built-in dataset,
            in the models folder for one registered there ("" if none).
        idx_folder: folder name under a torchvision root holding the full set as idx files
            (``MNIST``), or "" when the dataset has none.
        probes_sha256: for a registered dataset, the SHA-256 its probe file must have
            (empty for a built-in one, which ships inside the package).
        credit: the attribution line the dashboard shows ("" if none).
        content_box: side, in pixels, of the box an image's content is scaled to fit
            (MNIST: 20, inside 28 × 28); 0: the whole image. A new image (a drawing, an
            upload) is prepared this way before a model sees it.
        centring: where that box sits: ``"mass"`` (its centre of mass at the image's
            centre, as MNIST) or ``"box"`` (its bounding box centred).
    """

    id: str
    name: str
    class_names: tuple[str, ...]
    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    probes: str = ""
    idx_folder: str = ""
    probes_sha256: str = ""
    credit: str = ""
    content_box: int = 0
    centring: str = "box"

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return (self.channels, *self.image_size)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DatasetInfo:
        """Validate a descriptor.

        Raises:
            RepgeomError: naming the first field that is missing or out of range.
        """
        try:
            info = cls(
                id=str(raw["id"]),
                name=str(raw.get("name", raw["id"])),
                class_names=tuple(str(c) for c in raw["class_names"]),
                channels=int(raw["channels"]),
                image_size=(int(raw["image_size"][0]), int(raw["image_size"][1])),
                mean=tuple(float(m) for m in raw["mean"]),
                std=tuple(float(s) for s in raw["std"]),
                probes=str(raw.get("probes", "")),
                idx_folder=str(raw.get("idx_folder", "")),
                probes_sha256=str(raw.get("probes_sha256", "")).lower(),
                credit=str(raw.get("credit", ""))[:300],
                content_box=int(raw.get("content_box", 0)),
                centring=str(raw.get("centring", "box")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RepgeomError(f"dataset descriptor {str(raw)[:60]!r} is malformed (missing or bad {exc})") from None
        if not 2 <= info.n_classes <= MAX_CLASSES:
            raise RepgeomError(f"dataset {info.id!r}: 2 to {MAX_CLASSES} classes allowed, got {info.n_classes}")
        if info.channels not in (1, 3):
            raise RepgeomError(f"dataset {info.id!r}: channels must be 1 or 3, got {info.channels}")
        if not all(1 <= s <= MAX_SIDE for s in info.image_size):
            raise RepgeomError(f"dataset {info.id!r}: image sides must be 1 to {MAX_SIDE} pixels, got {info.image_size}")
        for what, values in (("mean", info.mean), ("std", info.std)):
            if len(values) not in (1, info.channels):
                raise RepgeomError(f"dataset {info.id!r}: {what} needs 1 or {info.channels} values, got {len(values)}")
        if not 0 <= info.content_box <= min(info.image_size):
            raise RepgeomError(f"dataset {info.id!r}: content_box must be 0 (the whole image) to {min(info.image_size)} pixels, got {info.content_box}")
        if info.centring not in CENTRINGS:
            raise choice_error(f"centring of dataset {info.id!r}", info.centring, CENTRINGS)
        if any(s <= 0 for s in info.std):
            raise RepgeomError(f"dataset {info.id!r}: std must be positive, got {info.std}")
        if not _ID.fullmatch(info.id):
            raise RepgeomError(f"dataset id must be 1-40 letters, digits, '-' or '_', got {info.id[:40]!r}")
        if info.probes and Path(info.probes).name != info.probes:
            raise RepgeomError(f"dataset {info.id!r}: probes must be a bare file name, got {info.probes[:60]!r}")
        return info

    def to_json(self) -> dict[str, Any]:
        """The descriptor as written in a manifest."""
        doc: dict[str, Any] = {
            "id": self.id, "name": self.name, "class_names": list(self.class_names), "channels": self.channels,
            "image_size": list(self.image_size), "mean": list(self.mean), "std": list(self.std),
        }
        for key in ("probes", "idx_folder", "probes_sha256", "credit", "content_box"):
            if getattr(self, key):
                doc[key] = getattr(self, key)
        if self.centring != "box":
            doc["centring"] = self.centring
        return doc

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std as (C, 1, 1) float32 arrays, ready to broadcast over (N, C, H, W)."""
        mean = np.resize(np.asarray(self.mean, np.float32), self.channels).reshape(-1, 1, 1)
        std = np.resize(np.asarray(self.std, np.float32), self.channels).reshape(-1, 1, 1)
        return mean, std


def builtin_datasets() -> dict[str, DatasetInfo]:
    """The datasets described in ``repgeom/data/*.json``, by id."""
    found: dict[str, DatasetInfo] = {}
    for item in sorted(resources.files("repgeom.data").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            info = DatasetInfo.from_json(json.loads(item.read_text(encoding="utf-8")))
            found[info.id] = info
    return found


def get_dataset(dataset_id: str, registered: Mapping[str, DatasetInfo] | None = None) -> DatasetInfo:
    """A dataset by id: a built-in one, or one registered in a models folder's manifest.

    Args:
        dataset_id: the id.
        registered: the datasets a manifest registers (they may not reuse a built-in id).

    Raises:
        RepgeomError: for an unknown id, listing the known ones.
    """
    known = {**builtin_datasets(), **(registered or {})}
    if dataset_id not in known:
        raise choice_error("dataset", dataset_id, known)
    return known[dataset_id]
