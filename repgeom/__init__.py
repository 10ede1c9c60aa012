"""repgeom: the representational geometry of neural networks, computed and shown.

The public Python API::

    import repgeom
    model = repgeom.load_model("recurrent")           # nn.Module in eval mode
    engine = repgeom.Engine()                         # all shipped models + probes
    spec = engine.spec(n_per_class=20)
    rdms = engine.rdms("recurrent", ["conv2", "conv2_4"], spec)
    path = engine.path(["feedforward", "recurrent"], None, engine.spec(50))
"""

from __future__ import annotations

import os

from torch import nn

from .core.checkpoints import load_checkpoint, read_manifest
from .core.errors import CheckpointError, RepgeomError, choice_error
from .core.features import node_names
from .pipeline import Engine, StimulusSpec

__all__ = ["CheckpointError", "Engine", "RepgeomError", "StimulusSpec", "list_models", "load_model", "node_names"]
__version__ = "0.1.0"


def list_models(models_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Ids of the models in the manifest, in manifest order."""
    return [e.id for e in read_manifest(models_dir)]


def load_model(name: str, models_dir: str | os.PathLike[str] | None = None) -> nn.Module:
    """Load a shipped model, verified against the manifest, in eval mode on the CPU.

    Args:
        name: a model id (``feedforward``, ``recurrent``, ``robust``, ``feedforward_seed2``).
        models_dir: folder holding ``manifest.json`` (default: ``models/``).

    Raises:
        RepgeomError: for an unknown name (listing the known ones) or a refused checkpoint.
    """
    entries = {e.id: e for e in read_manifest(models_dir)}
    if name not in entries:
        raise choice_error("model", name, entries)
    return load_checkpoint(entries[name], models_dir).module
