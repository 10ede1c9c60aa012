"""repgeom: the representational geometry of neural networks, computed and shown.

The public Python API::

    import repgeom
    model = repgeom.load_model("recurrent")           # nn.Module in eval mode
    engine = repgeom.Engine()                         # all shipped models + probes
    spec = engine.spec(n_per_class=20)
    rdms = engine.rdms("recurrent", ["conv2", "conv2_4"], spec)
    path = engine.path(["feedforward", "recurrent"], None, engine.spec(50))

Importing the package is cheap: torch, torchvision and the numerical libraries load when
a name that needs them is first used (PEP 562).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from .core.errors import CheckpointError, RepgeomError
    from .core.features import node_names
    from .pipeline import Engine, StimulusSpec

__all__ = ["CheckpointError", "Engine", "RepgeomError", "StimulusSpec", "list_models", "load_model", "node_names"]
__version__ = "0.1.0"

_LAZY = {
    "CheckpointError": "repgeom.core.errors",
    "RepgeomError": "repgeom.core.errors",
    "node_names": "repgeom.core.features",
    "Engine": "repgeom.pipeline",
    "StimulusSpec": "repgeom.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'repgeom' has no attribute {name!r}")


def _models_dir(models_dir: str | os.PathLike[str] | None) -> str | os.PathLike[str] | None:
    from .settings import env_models_dir  # noqa: PLC0415

    return models_dir or env_models_dir()


def list_models(models_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Ids of the models in the manifest, in manifest order (``models_dir`` default: ``$REPGEOM_MODELS_DIR`` or ``models/``)."""
    from .core.checkpoints import read_manifest  # noqa: PLC0415

    return [e.id for e in read_manifest(_models_dir(models_dir))]


def load_model(name: str, models_dir: str | os.PathLike[str] | None = None) -> nn.Module:
    """Load a model, verified against the manifest, in eval mode on the CPU.

    Args:
        name: a model id from the manifest (e.g. ``feedforward``, ``recurrent``).
        models_dir: folder holding ``manifest.json`` (default: ``$REPGEOM_MODELS_DIR`` or ``models/``).

    Raises:
        RepgeomError: for an unknown name (listing the known ones) or a refused checkpoint.
    """
    from .core.checkpoints import load_checkpoint, read_manifest  # noqa: PLC0415
    from .core.errors import choice_error  # noqa: PLC0415

    folder = _models_dir(models_dir)
    entries = {e.id: e for e in read_manifest(folder)}
    if name not in entries:
        raise choice_error("model", name, entries)
    return load_checkpoint(entries[name], folder).module
