"""Probe sets from an image folder in torchvision's ``ImageFolder`` layout (one subfolder per class).

Design notes:
    ``add-dataset`` reads the first ``per_class`` images of each class (files in name
    order), converts them to one size and channel count, and keeps them as a probe set
    (``images`` (M, C, H, W) uint8, ``labels``, ``indices`` into the folder's files
    sorted by class and name, unique like a test set's, ``files``) beside the manifest. The images are read with Pillow and never
    executed or unpickled; anything unexpected in the folder gets a one-line error.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import MAX_CLASSES, MAX_SIDE, DatasetInfo
from .errors import RepgeomError

__all__ = ["FolderProbes", "read_image_folder"]

#: File endings read as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Most images read from one folder (per class x classes).
MAX_IMAGES = 20_000


@dataclass(frozen=True)
class FolderProbes:
    """The probe images of one image folder.

    Attributes:
        info: the dataset descriptor (id, class names from the subfolders, size, channels, normalisation).
        images: (M, C, H, W) uint8, sorted by class.
        labels: (M,) int64 class indices.
        indices: (M,) int64 positions of each image among all the folder's files (by class, then name): unique.
        files: (M,) paths relative to the folder.
    """

    info: DatasetInfo
    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    files: tuple[str, ...]

    def to_npz(self) -> bytes:
        """The probe file's bytes (uncompressed ``.npz``, no pickled objects)."""
        buf = io.BytesIO()
        np.savez(buf, images=self.images, labels=self.labels, indices=self.indices, files=np.asarray(self.files, dtype=str))
        return buf.getvalue()


def read_image_folder(
    folder: str | os.PathLike[str],
    dataset_id: str,
    *,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    mean: float | None = None,
    std: float | None = None,
    per_class: int = 100,
) -> FolderProbes:
    """Read the probe images of an ``ImageFolder``-style folder.

    Args:
        folder: one subfolder per class (its name is the class name), PNG or JPEG inside.
        dataset_id: the id to register the set under.
        size: (H, W) to resize every image to (default: the first image's size).
        channels: 1 (grey) or 3 (colour) (default: 3 if any probe image is colour, else 1).
        mean: normalisation mean for every channel (default: the probes' own mean).
        std: normalisation std for every channel (default: the probes' own std).
        per_class: images to keep per class (the first in file-name order); every class
            must have at least one, and classes with fewer keep what they have.

    Returns:
        The probe images and their descriptor.

    Raises:
        RepgeomError: a missing folder, fewer than 2 or more than 100 classes, a class
            without images, an unreadable image, or bad sizes or channels.
    """
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    root = Path(folder)
    if not root.is_dir():
        raise RepgeomError(f"--images {root}: not a folder (expected one subfolder of PNG/JPEG images per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise RepgeomError(f"--images {root}: 2 to {MAX_CLASSES} class subfolders allowed, found {len(classes)}")
    if not 1 <= per_class <= MAX_IMAGES // len(classes):
        raise RepgeomError(f"--per-class must be from 1 to {MAX_IMAGES // len(classes)} for {len(classes)} classes, got {per_class}")
    picked: list[tuple[int, int, Path]] = []
    offset = 0
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise RepgeomError(f"--images {root}: class folder {name!r} has no PNG or JPEG images")
        picked.extend((label, offset + i, f) for i, f in enumerate(files[:per_class]))
        offset += len(files)
    raw = []
    for _, _, f in picked:
        try:
            with Image.open(f) as img:
                img.load()
                raw.append(img.copy())
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise RepgeomError(f"--images: cannot read {f.relative_to(root)} as an image ({str(exc)[:80]})") from None
    colour = any(img.mode not in ("1", "L", "LA", "I", "I;16", "F") for img in raw)
    channels = channels if channels is not None else (3 if colour else 1)
    if channels not in (1, 3):
        raise RepgeomError(f"--channels must be 1 or 3, got {channels}")
    height, width = size if size is not None else (raw[0].height, raw[0].width)
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise RepgeomError(f"--size must be H,W with sides from 1 to {MAX_SIDE}, got {height},{width}")
    mode = "RGB" if channels == 3 else "L"
    arrays = []
    for img in raw:
        img = img.convert(mode)
        if img.size != (width, height):
            img = img.resize((width, height), Image.BILINEAR)
        a = np.asarray(img, dtype=np.uint8)
        arrays.append(a[None] if channels == 1 else a.transpose(2, 0, 1))
    images = np.stack(arrays)
    pixels = images.astype(np.float64) / 255.0
    mean = float(pixels.mean()) if mean is None else float(mean)
    std = float(pixels.std()) if std is None else float(std)
    info = DatasetInfo.from_json(
        {"id": dataset_id, "name": dataset_id, "class_names": classes, "channels": channels, "image_size": [height, width],
         "mean": [round(mean, 6)], "std": [round(std, 6) if std > 0 else 1.0]}
    )
    return FolderProbes(
        info=info,
        images=images,
        labels=np.asarray([lab for lab, _, _ in picked], dtype=np.int64),
        indices=np.asarray([i for _, i, _ in picked], dtype=np.int64),
        files=tuple(str(f.relative_to(root)) for _, _, f in picked),
    )
