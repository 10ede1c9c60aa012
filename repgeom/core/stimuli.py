"""Probe images: the embedded MNIST subset or the full local MNIST, and FGSM versions.

Design notes:
    The seed samples probes as "the first n images of each digit, in test-set order,
    concatenated by class" (seed-reference §4.1, CPU behaviour). We apply that rule to
    the whole test set, so the embedded probe file (the first 100 test images of every
    digit) gives exactly the same stimuli as the full MNIST for n <= 100.

    Stimuli are carried in pixel space ([0, 1], what a person sees and what FGSM clamps
    to); :func:`normalize` applies the seed's Normalize(0.1307, 0.3081) right before a
    model sees them.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import RepgeomError

__all__ = [
    "CONDITIONS",
    "MNIST_MEAN",
    "MNIST_STD",
    "PROBE_FILE",
    "DigitSource",
    "Stimuli",
    "available_per_class",
    "denormalize",
    "fgsm",
    "load_source",
    "normalize",
    "read_mnist",
    "sample_stimuli",
]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
CONDITIONS = ("clean", "fgsm")
#: The embedded probe set, shipped inside the package (first 100 test images per digit).
PROBE_FILE = "probes_mnist_test.npz"
_ENV_DATA_ROOT = "REPGEOM_DATA_ROOT"


@dataclass(frozen=True)
class DigitSource:
    """A pool of MNIST images to sample probes from.

    Attributes:
        images: (M, 28, 28) uint8 pixels.
        labels: (M,) int64 digit labels.
        indices: (M,) int64 indices into the MNIST split the images come from.
        name: ``"embedded"`` or the data root it was read from.
    """

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    name: str


@dataclass(frozen=True)
class Stimuli:
    """Probe images sorted by class, with where they came from.

    Attributes:
        pixels: (N, 28, 28) float32 in [0, 1] (after FGSM when ``condition == "fgsm"``).
        labels: (N,) int64 digit labels, sorted ascending.
        indices: (N,) int64 MNIST test-set indices.
        condition: ``"clean"`` or ``"fgsm"``.
        epsilon: FGSM step in pixel units (0 for clean).
        attack_model: the model the FGSM images were made against ("" for clean).
    """

    pixels: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    condition: str = "clean"
    epsilon: float = 0.0
    attack_model: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of stimuli."""
        return int(self.labels.shape[0])

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Normalised (N, 1, 28, 28) float32 tensor on ``device``, ready for a model."""
        x = torch.from_numpy(np.ascontiguousarray(self.pixels)).to(device=device, dtype=torch.float32)
        return normalize(x.unsqueeze(1))


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """Apply the seed's ``Normalize(0.1307, 0.3081)`` to pixel values in [0, 1]."""
    return (pixels - MNIST_MEAN) / MNIST_STD


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Invert :func:`normalize`."""
    return x * MNIST_STD + MNIST_MEAN


def _idx_path(root: Path, stem: str) -> Path | None:
    for candidate in (root / "MNIST" / "raw" / stem, root / "raw" / stem, root / stem):
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
        raise RepgeomError(f"{path}: not an MNIST idx file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise RepgeomError(f"{path}: not an MNIST idx file of unsigned bytes")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise RepgeomError(f"{path}: truncated MNIST idx file ({body.size} of {int(np.prod(dims))} bytes)")
    return body.reshape(dims)


def read_mnist(root: str | os.PathLike[str], train: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read an MNIST split from torchvision's on-disk layout, without downloading.

    Args:
        root: the folder given to ``torchvision.datasets.MNIST`` (holding ``MNIST/raw``).
        train: the 60,000 training images instead of the 10,000 test images.

    Returns:
        ``(images, labels)``: (M, 28, 28) uint8 and (M,) int64.

    Raises:
        RepgeomError: when the files are missing or malformed.
    """
    prefix = "train" if train else "t10k"
    root = Path(root)
    img_path = _idx_path(root, f"{prefix}-images-idx3-ubyte")
    lab_path = _idx_path(root, f"{prefix}-labels-idx1-ubyte")
    if img_path is None or lab_path is None:
        raise RepgeomError(
            f"no MNIST {'training' if train else 'test'} files under {root} "
            "(expected torchvision's layout: ROOT/MNIST/raw/*-idx?-ubyte)"
        )
    images = _read_idx(img_path)
    labels = _read_idx(lab_path).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
        raise RepgeomError(f"{root}: MNIST images and labels do not match in shape")
    return images, labels


def load_mnist(root: str | os.PathLike[str] | None, train: bool, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read MNIST from ``root``, asking torchvision to download it if allowed and missing."""
    root = Path(root or os.environ.get(_ENV_DATA_ROOT) or "data")
    try:
        return read_mnist(root, train=train)
    except RepgeomError:
        if not download:
            raise
    import torchvision  # noqa: PLC0415 - only when a download is asked for

    try:
        torchvision.datasets.MNIST(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise RepgeomError(f"MNIST is not under {root} and could not be downloaded ({exc})") from None
    return read_mnist(root, train=train)


def load_source(data_root: str | os.PathLike[str] | None = None) -> DigitSource:
    """The pool of test images to draw probes from.

    Args:
        data_root: a torchvision MNIST root holding the full test set. ``None`` falls
            back to ``$REPGEOM_DATA_ROOT``, then to the embedded probe set.

    Returns:
        A :class:`DigitSource`.
    """
    root = data_root or os.environ.get(_ENV_DATA_ROOT)
    if root:
        images, labels = read_mnist(root, train=False)
        return DigitSource(images, labels, np.arange(labels.shape[0], dtype=np.int64), str(root))
    with resources.files("repgeom.data").joinpath(PROBE_FILE).open("rb") as fh:
        with np.load(fh) as npz:
            return DigitSource(
                npz["images"].copy(), npz["labels"].astype(np.int64), npz["indices"].astype(np.int64), "embedded"
            )


def available_per_class(source: DigitSource) -> int:
    """Largest n such that every digit has at least n images in ``source``."""
    return int(np.bincount(source.labels, minlength=10).min())


def sample_stimuli(source: DigitSource, n_per_class: int) -> Stimuli:
    """Take the first ``n_per_class`` images of each digit, in source order, sorted by class.

    Args:
        source: the pool to draw from.
        n_per_class: images per digit, 1..``available_per_class(source)``; 0 takes every
            image of the source (classes then differ in size).

    Returns:
        Clean :class:`Stimuli` with ``10 * n_per_class`` images (all of them for 0).

    Raises:
        RepgeomError: when ``n_per_class`` is out of range for ``source``.
    """
    limit = available_per_class(source)
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)):
        raise RepgeomError(f"images per class must be a whole number from 1 to {limit}, got {n_per_class!r}")
    if n_per_class == 0:
        picks = np.argsort(source.labels, kind="stable")
        return Stimuli(source.images[picks].astype(np.float32) / 255.0, source.labels[picks].copy(), source.indices[picks].copy())
    if not 1 <= n_per_class <= limit:
        hint = "" if source.name != "embedded" else " with the embedded probe set (give --data-root for more)"
        raise RepgeomError(f"images per class must be from 1 to {limit}{hint}, got {n_per_class}")
    picks = np.concatenate([np.flatnonzero(source.labels == d)[:n_per_class] for d in range(10)])
    return Stimuli(
        pixels=source.images[picks].astype(np.float32) / 255.0,
        labels=source.labels[picks].copy(),
        indices=source.indices[picks].copy(),
    )


def fgsm(model: nn.Module, stimuli: Stimuli, epsilon: float, attack_model: str = "", device: torch.device | str = "cpu", batch_size: int = 1000) -> Stimuli:
    """Fast gradient sign images made against ``model`` (seed-reference §3).

    The gradient of the NLL loss (log of the softmax output) is taken with respect to the
    normalised image; the image is moved by ``epsilon * sign(grad)`` in pixel space and
    clamped to [0, 1]. Batched, this equals the seed's one-image-at-a-time loop: each
    image's gradient depends on that image alone in eval mode.

    Args:
        model: the attacked model (put in eval mode for the attack, mode restored after).
        stimuli: clean stimuli.
        epsilon: step size in pixel units, in [0, 1].
        attack_model: the attacked model's id, recorded in the result.
        device: where to compute.
        batch_size: images per forward/backward pass.

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
            pix = torch.from_numpy(stimuli.pixels[start:stop]).to(device).unsqueeze(1)
            adv = fgsm_pixels(model, pix, labels[start:stop].to(device), float(epsilon))
            out[start:stop] = adv.squeeze(1).cpu().numpy()
    finally:
        model.train(was_training)
    return Stimuli(out, stimuli.labels, stimuli.indices, "fgsm", float(epsilon), attack_model)


def fgsm_pixels(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """FGSM on a batch of pixel images (B, 1, 28, 28) in [0, 1]; returns pixels in [0, 1]."""
    x = normalize(pixels).detach().requires_grad_(True)
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
        loss = nn.functional.nll_loss(torch.log(model(x).clamp_min(1e-30)), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return (pixels + epsilon * grad.sign()).clamp_(0.0, 1.0).detach()
