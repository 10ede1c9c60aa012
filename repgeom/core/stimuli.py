"""Probe images: a dataset's embedded probe set or its full local test split, and FGSM versions.

Design notes:
    The seed samples probes as "the first n images of each class, in test-set order,
    concatenated by class" (seed-reference §4.1, CPU behaviour). We apply that rule to
    the whole test split, so an embedded probe file (the first 100 test images of every
    class) gives exactly the same stimuli as the full split for n <= 100.

    Stimuli are carried in pixel space, (N, C, H, W) float32 in [0, 1] (what a person
    sees and what FGSM clamps to); :func:`normalize` applies the dataset's per-channel
    normalisation right before a model sees them. Class count, image size and
    normalisation all come from the :class:`~repgeom.core.datasets.DatasetInfo`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .datasets import DatasetInfo
from .errors import RepgeomError
from .files import read_regular

__all__ = [
    "CONDITIONS",
    "ImageSource",
    "Stimuli",
    "available_per_class",
    "denormalize",
    "fgsm",
    "fgsm_pixels",
    "load_source",
    "load_split",
    "normalize",
    "read_idx_split",
    "sample_stimuli",
]

CONDITIONS = ("clean", "fgsm")


@dataclass(frozen=True)
class ImageSource:
    """A pool of labelled images to sample probes from.

    Attributes:
        images: (M, C, H, W) uint8 pixels.
        labels: (M,) int64 class labels.
        indices: (M,) int64 indices into the split the images come from.
        name: ``"embedded"`` or the data root it was read from.
        dataset: what the images are.
    """

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    name: str
    dataset: DatasetInfo


@dataclass(frozen=True)
class Stimuli:
    """Probe images sorted by class, with where they came from.

    Attributes:
        pixels: (N, C, H, W) float32 in [0, 1] (after FGSM when ``condition == "fgsm"``).
        labels: (N,) int64 class labels, sorted ascending.
        indices: (N,) int64 test-split indices.
        dataset: what the images are (class names, normalisation).
        condition: ``"clean"`` or ``"fgsm"``.
        epsilon: FGSM step in pixel units (0 for clean).
        attack_model: the model the FGSM images were made against ("" for clean).
    """

    pixels: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    dataset: DatasetInfo
    condition: str = "clean"
    epsilon: float = 0.0
    attack_model: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of stimuli."""
        return int(self.labels.shape[0])

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Normalised (N, C, H, W) float32 tensor on ``device``, ready for a model."""
        x = torch.from_numpy(np.ascontiguousarray(self.pixels)).to(device=device, dtype=torch.float32)
        return normalize(x, self.dataset)


def _stats(dataset: DatasetInfo, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = dataset.stats()
    return (torch.from_numpy(mean).to(like.device, like.dtype), torch.from_numpy(std).to(like.device, like.dtype))


def normalize(pixels: torch.Tensor, dataset: DatasetInfo) -> torch.Tensor:
    """Apply the dataset's per-channel normalisation to (N, C, H, W) pixel values in [0, 1]."""
    mean, std = _stats(dataset, pixels)
    return (pixels - mean) / std


def denormalize(x: torch.Tensor, dataset: DatasetInfo) -> torch.Tensor:
    """Invert :func:`normalize`."""
    mean, std = _stats(dataset, x)
    return x * std + mean


def _idx_path(root: Path, folder: str, stem: str) -> Path | None:
    for candidate in (root / folder / "raw" / stem, root / "raw" / stem, root / stem):
        if candidate.is_file():
            return candidate
        gz = candidate.with_name(candidate.name + ".gz")
        if gz.is_file():
            return gz
    return None


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 8:
        raise RepgeomError(f"{path}: not an idx file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise RepgeomError(f"{path}: not an idx file of unsigned bytes")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise RepgeomError(f"{path}: truncated idx file ({body.size} of {int(np.prod(dims))} bytes)")
    return body.reshape(dims)


def read_idx_split(root: str | os.PathLike[str], dataset: DatasetInfo, train: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a split stored as idx files in torchvision's layout (``ROOT/<idx_folder>/raw``), without downloading.

    Args:
        root: the folder given to the torchvision dataset class.
        dataset: the dataset (its ``idx_folder`` and image size).
        train: the training split instead of the test split.

    Returns:
        ``(images, labels)``: (M, C, H, W) uint8 and (M,) int64.

    Raises:
        RepgeomError: when the dataset has no idx files, or they are missing or malformed.
    """
    if not dataset.idx_folder:
        raise RepgeomError(f"dataset {dataset.id!r} has no full split on disk; use its embedded probes")
    prefix = "train" if train else "t10k"
    root = Path(root)
    img_path = _idx_path(root, dataset.idx_folder, f"{prefix}-images-idx3-ubyte")
    lab_path = _idx_path(root, dataset.idx_folder, f"{prefix}-labels-idx1-ubyte")
    if img_path is None or lab_path is None:
        raise RepgeomError(
            f"no {dataset.name} {'training' if train else 'test'} files under {root} "
            f"(expected torchvision's layout: ROOT/{dataset.idx_folder}/raw/*-idx?-ubyte)"
        )
    images = _read_idx(img_path)
    labels = _read_idx(lab_path).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != dataset.image_size or labels.shape != (images.shape[0],):
        raise RepgeomError(f"{root}: {dataset.name} images and labels do not match in shape")
    if labels.size and not 0 <= labels.min() <= labels.max() < dataset.n_classes:
        raise RepgeomError(f"{root}: labels outside 0..{dataset.n_classes - 1}")
    return images[:, None], labels


def load_split(dataset: DatasetInfo, root: str | os.PathLike[str], train: bool, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a split from ``root``, asking torchvision to download it if allowed and missing."""
    try:
        return read_idx_split(root, dataset, train=train)
    except RepgeomError:
        if not download or not dataset.idx_folder:
            raise
    import torchvision  # noqa: PLC0415 - only when a download is asked for

    try:
        getattr(torchvision.datasets, dataset.idx_folder)(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise RepgeomError(f"{dataset.name} is not under {root} and could not be downloaded ({exc})") from None
    return read_idx_split(root, dataset, train=train)


def load_source(
    dataset: DatasetInfo, data_root: str | os.PathLike[str] | None = None, models_dir: str | os.PathLike[str] | None = None
) -> ImageSource:
    """The pool of test images to draw probes from.

    Args:
        dataset: which dataset.
        data_root: a torchvision root holding the full test split; ``None`` takes the
            dataset's probe set.
        models_dir: where a registered dataset's probe file lives (beside the manifest).

    Returns:
        An :class:`ImageSource`.

    Raises:
        RepgeomError: when the split cannot be read, the dataset has no probes, or a
            registered probe file is missing or does not match its hash.
    """
    if data_root and dataset.idx_folder:
        images, labels = read_idx_split(data_root, dataset, train=False)
        return ImageSource(images, labels, np.arange(labels.shape[0], dtype=np.int64), str(data_root), dataset)
    if not dataset.probes:
        raise RepgeomError(f"dataset {dataset.id!r} ships no probe set; give its data root")
    if dataset.probes_sha256:  # registered in a models folder: verify before reading
        path = Path(models_dir or ".") / dataset.probes
        data = read_regular(path, what=f"probe set of dataset {dataset.id!r}")
        if hashlib.sha256(data).hexdigest() != dataset.probes_sha256:
            raise RepgeomError(f"{path}: SHA-256 does not match the manifest's for dataset {dataset.id!r}")
        fh = io.BytesIO(data)
    else:
        fh = resources.files("repgeom.data").joinpath(dataset.probes).open("rb")
    with fh, np.load(fh, allow_pickle=False) as npz:
        images = npz["images"]
        images = images[:, None] if images.ndim == 3 else images
        if images.shape[1:] != dataset.input_shape:
            raise RepgeomError(f"probe set of {dataset.id!r} has images of shape {images.shape[1:]}, expected {dataset.input_shape}")
        return ImageSource(images.copy(), npz["labels"].astype(np.int64), npz["indices"].astype(np.int64), "embedded", dataset)


def available_per_class(source: ImageSource) -> int:
    """Largest n such that every class has at least n images in ``source``."""
    return int(np.bincount(source.labels, minlength=source.dataset.n_classes).min())


def sample_stimuli(source: ImageSource, n_per_class: int) -> Stimuli:
    """Take the first ``n_per_class`` images of each class, in source order, sorted by class.

    Args:
        source: the pool to draw from.
        n_per_class: images per class, 1..``available_per_class(source)``; 0 takes every
            image of the source (classes then differ in size).

    Returns:
        Clean :class:`Stimuli` with ``n_classes * n_per_class`` images (all of them for 0).

    Raises:
        RepgeomError: when ``n_per_class`` is out of range for ``source``.
    """
    limit = available_per_class(source)
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)):
        raise RepgeomError(f"images per class must be a whole number from 1 to {limit}, got {n_per_class!r}")
    if n_per_class == 0:
        picks = np.argsort(source.labels, kind="stable")
    elif not 1 <= n_per_class <= limit:
        hint = "" if source.name != "embedded" else " with the embedded probe set (give --data-root for more)"
        raise RepgeomError(f"images per class must be from 1 to {limit}{hint}, got {n_per_class}")
    else:
        picks = np.concatenate([np.flatnonzero(source.labels == c)[:n_per_class] for c in range(source.dataset.n_classes)])
    return Stimuli(
        pixels=source.images[picks].astype(np.float32) / np.float32(255.0),
        labels=source.labels[picks].copy(),
        indices=source.indices[picks].copy(),
        dataset=source.dataset,
    )


def fgsm(
    model: nn.Module,
    stimuli: Stimuli,
    epsilon: float,
    attack_model: str = "",
    device: torch.device | str = "cpu",
    batch_size: int = 1000,
    logits: bool = False,
) -> Stimuli:
    """Fast gradient sign images made against ``model`` (seed-reference §3).

    The gradient of the NLL loss (log of the softmax output) is taken with respect to the
    normalised image; the image is moved by ``epsilon * sign(grad)`` in pixel space and
    clamped to the valid pixel range [0, 1]. Batched, this equals the seed's
    one-image-at-a-time loop: each image's gradient depends on that image alone in eval mode.

    Args:
        model: the attacked model (put in eval mode for the attack, mode restored after).
        stimuli: clean stimuli.
        epsilon: step size in pixel units, in [0, 1].
        attack_model: the attacked model's id, recorded in the result.
        device: where to compute.
        batch_size: images per forward/backward pass.
        logits: the model outputs logits (torchvision classifiers), not probabilities.

    Returns:
        New :class:`Stimuli` with ``condition="fgsm"``.
    """
    if not 0.0 <= float(epsilon) <= 1.0:
        raise RepgeomError(f"epsilon must be in [0, 1], got {epsilon}")
    was_training = model.training
    model.eval()
    out = np.empty_like(stimuli.pixels)
    labels = torch.from_numpy(stimuli.labels)
    try:
        for start in range(0, stimuli.n, batch_size):
            stop = min(start + batch_size, stimuli.n)
            pix = torch.from_numpy(stimuli.pixels[start:stop]).to(device)
            adv = fgsm_pixels(model, pix, labels[start:stop].to(device), float(epsilon), stimuli.dataset, logits)
            out[start:stop] = adv.cpu().numpy()
    finally:
        model.train(was_training)
    return Stimuli(out, stimuli.labels, stimuli.indices, stimuli.dataset, "fgsm", float(epsilon), attack_model)


def fgsm_pixels(
    model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, epsilon: float, dataset: DatasetInfo, logits: bool = False
) -> torch.Tensor:
    """FGSM on a batch of pixel images (B, C, H, W) in [0, 1]; returns pixels in [0, 1].

    The loss is the NLL of the log of a softmax output, or the cross-entropy of logits.
    """
    x = normalize(pixels, dataset).detach().requires_grad_(True)
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
        out = model(x)
        log_probs = nn.functional.log_softmax(out, dim=1) if logits else torch.log(out.clamp_min(1e-30))
        loss = nn.functional.nll_loss(log_probs, labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return (pixels + epsilon * grad.sign()).clamp_(0.0, 1.0).detach()
