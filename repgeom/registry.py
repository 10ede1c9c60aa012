"""Bring your own network and images: register an image folder as a dataset and a weights file as a model.

Design notes:
    Both write into a models folder (default ``models/``): the probe file or the
    checkpoint first, the manifest last, each atomically, so a failure leaves the
    folder as it was. A model is registered only after its weights load into the named
    architecture (``torch.load(weights_only=True)``, strict ``load_state_dict``), its
    class count matches its dataset's, and it runs on the dataset's probe images; the
    checkpoint is stored as a plain state dict with its SHA-256 in the manifest, like the
    shipped models. Architectures come from an allow-list: repgeom's own nets and
    torchvision's classification builders.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .core.checkpoints import CheckpointError, ModelEntry, _head_size, load_refusal, read_manifest_doc, save_checkpoint, save_dataset
from .core.datasets import DatasetInfo, get_dataset
from .core.errors import RepgeomError
from .core.features import node_names
from .core.files import read_regular
from .core.imagefolder import read_image_folder
from .core.nets import build_net, canonical_architecture, code_sha256
from .core.stimuli import load_source, normalize

__all__ = ["register_dataset", "register_model"]

#: Largest weights file ``add-model`` reads.
MAX_WEIGHTS_BYTES = 2 << 30


def register_dataset(
    models_dir: str | os.PathLike[str],
    dataset_id: str,
    images: str | os.PathLike[str],
    *,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    mean: float | None = None,
    std: float | None = None,
    per_class: int = 100,
) -> DatasetInfo:
    """Read an ``ImageFolder``-style folder's probe images and register them in ``models_dir``.

    Raises:
        RepgeomError: for a bad folder or option (one line naming it).
    """
    probes = read_image_folder(images, dataset_id, size=size, channels=channels, mean=mean, std=std, per_class=per_class)
    return save_dataset(models_dir, probes.info, probes.to_npz())


def _read_state(weights: Path) -> Mapping[str, torch.Tensor]:
    data = read_regular(weights, MAX_WEIGHTS_BYTES, "weights file")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, zip errors...
        raise RepgeomError(f"--weights {weights}: refused, not a plain weights-only state dict ({load_refusal(exc)})") from None
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RepgeomError(f"--weights {weights}: expected a state dict of tensors (torch.save(model.state_dict(), ...))")
    return state


@torch.no_grad()
def _probe_run(module: torch.nn.Module, dataset: DatasetInfo, models_dir: Path) -> tuple[float, str]:
    """Accuracy on the dataset's probe images, and whether the model outputs probabilities or logits."""
    source = load_source(dataset, None, models_dir)
    x = normalize(torch.from_numpy(source.images.astype(np.float32) / np.float32(255.0)), dataset)
    outputs = torch.cat([module(x[i : i + 256]) for i in range(0, x.shape[0], 256)])
    if outputs.ndim != 2 or outputs.shape[1] != dataset.n_classes:
        raise RepgeomError(f"the model's output has shape {tuple(outputs.shape[1:])}; dataset {dataset.id!r} needs ({dataset.n_classes},)")
    sums_to_one = bool(outputs.min() >= 0) and torch.allclose(outputs.sum(1), torch.ones(outputs.shape[0]), atol=1e-4)
    accuracy = float((outputs.argmax(1) == torch.from_numpy(source.labels)).float().mean())
    return accuracy, "probabilities" if sums_to_one else "logits"


def register_model(
    models_dir: str | os.PathLike[str],
    model_id: str,
    architecture: str,
    weights: str | os.PathLike[str],
    dataset_id: str,
    trust_code: bool = False,
) -> ModelEntry:
    """Check a weights file against an architecture and a dataset, then register it in ``models_dir``.

    Args:
        models_dir: the folder with ``manifest.json``.
        model_id: the new model's id.
        architecture: ``repgeom:feedforward``, ``repgeom:recurrent`` or ``torchvision:NAME``.
        weights: a state dict saved with ``torch.save(model.state_dict(), path)``.
        dataset_id: a built-in dataset or one registered in ``models_dir``.
        trust_code: allow ``python:FILE.py:Class``, which imports and runs that file.

    Returns:
        The manifest entry written (with the accuracy on the dataset's probe images).

    Raises:
        RepgeomError: an unknown architecture or dataset, weights that do not load or do
            not fit, or a class count that disagrees with the dataset.
    """
    folder = Path(models_dir)
    if not ModelEntry.ID.fullmatch(model_id):
        raise RepgeomError(f"model id must be 1-40 letters, digits, '-' or '_', got {model_id[:40]!r}")
    try:
        arch = canonical_architecture(architecture)
        code_hash = code_sha256(arch)
    except ValueError as exc:
        raise RepgeomError(str(exc)) from None
    if code_hash and not trust_code:
        raise RepgeomError(f"--arch {architecture[:80]} runs that file's code: add --trust-code to allow it (the dashboard never loads such a model)")
    doc = read_manifest_doc(folder) if (folder / "manifest.json").exists() else None
    dataset = doc.dataset(dataset_id) if doc is not None else get_dataset(dataset_id)
    state = _read_state(Path(weights))
    head = _head_size(state)
    if head is not None and head != dataset.n_classes:
        raise RepgeomError(f"class count disagrees: the weights have {head} outputs, dataset {dataset.id!r} has {dataset.n_classes} classes")
    try:
        module = build_net(arch, num_classes=dataset.n_classes, in_channels=dataset.channels, trust_code=trust_code, code_hash=code_hash)
        module.load_state_dict(state, strict=True)
    except ValueError as exc:
        raise RepgeomError(str(exc)) from None
    except RuntimeError as exc:
        raise RepgeomError(f"the weights do not fit {architecture}: {' '.join(str(exc).split())[:200]}") from None
    module.eval()
    try:
        accuracy, output = _probe_run(module, dataset, folder)
    except RuntimeError as exc:  # shape errors inside the forward pass
        raise RepgeomError(f"{architecture} cannot run on {dataset.id!r} images of shape {dataset.input_shape}: {str(exc)[:160]}") from None
    entry = ModelEntry(
        id=model_id, architecture=arch, file="", sha256="", parameters=0, dataset=dataset.id,
        accuracy={"probe": round(accuracy, 6)}, recipe={"source": f"weights from {Path(weights).name}"},
        nodes=tuple(node_names(module)), output=output, code_sha256=code_hash,
    )
    try:
        return save_checkpoint(folder, entry, module)
    except CheckpointError as exc:
        raise RepgeomError(str(exc)) from None

