"""Checkpoints: a manifest of plain state dicts, checked by SHA-256, loaded without pickle code.

Design notes:
    ``models/manifest.json`` lists every model (id, architecture, file, SHA-256,
    parameter count, accuracies, training recipe). Loading reads the file's bytes once,
    hashes those bytes and unpickles the same bytes with ``torch.load(weights_only=True)``,
    so nothing can swap the file between the check and the load. A model that fails any
    check is refused with a :class:`CheckpointError` that names the file and the reason;
    :func:`load_all` keeps loading the others. Nothing is ever retried with full
    (code-running) pickle loading.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError, RepgeomError
from .nets import ARCHITECTURES, build_net, count_parameters

__all__ = [
    "MANIFEST",
    "MIN_TORCH",
    "LoadedModel",
    "ModelEntry",
    "check_runtime",
    "default_models_dir",
    "load_all",
    "load_checkpoint",
    "read_manifest",
    "save_checkpoint",
    "sha256_file",
    "unsafe_loading_forced",
]

MANIFEST = "manifest.json"
_ENV_MODELS_DIR = "REPGEOM_MODELS_DIR"
#: Environment switches with which torch would load full pickles; we refuse to run under them.
_UNSAFE_ENV = ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",)
#: Oldest torch whose ``weights_only`` unpickler we trust (major, minor).
MIN_TORCH = (2, 10)


@dataclass(frozen=True)
class ModelEntry:
    """One model as the manifest describes it."""

    id: str
    architecture: str
    file: str
    sha256: str
    parameters: int
    accuracy: dict[str, float] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ModelEntry:
        """Validate one manifest record."""
        try:
            entry = cls(
                id=str(raw["id"]),
                architecture=str(raw["architecture"]),
                file=str(raw["file"]),
                sha256=str(raw["sha256"]).lower(),
                parameters=int(raw["parameters"]),
                accuracy={k: float(v) for k, v in dict(raw.get("accuracy", {})).items()},
                recipe=dict(raw.get("recipe", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"manifest entry {raw!r:.80} is malformed ({exc})") from None
        if Path(entry.file).name != entry.file:
            raise CheckpointError(f"manifest entry {entry.id!r}: file must be a bare file name, got {entry.file!r}")
        return entry


@dataclass(frozen=True)
class LoadedModel:
    """A verified model in eval mode with its manifest entry."""

    entry: ModelEntry
    module: nn.Module

    @property
    def id(self) -> str:
        """The model id."""
        return self.entry.id


def default_models_dir() -> Path:
    """``$REPGEOM_MODELS_DIR``, else the ``models/`` folder beside the package."""
    env = os.environ.get(_ENV_MODELS_DIR)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models"


def unsafe_loading_forced(env: Mapping[str, str] | None = None) -> str | None:
    """The name of a variable in ``env`` (default ``os.environ``) that forces unsafe torch loading, if set."""
    env = os.environ if env is None else env
    for name in _UNSAFE_ENV:
        if env.get(name, "").strip().lower() not in ("", "0", "false", "no", "off"):
            return name
    return None


def _load_refusal(exc: Exception) -> str:
    """What torch's weights-only loader objected to, in a few words (its message runs to paragraphs)."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it would import Python code: {found.group(1)[:100]}"
    found = re.search(r"Unsupported operand \d+", text)
    if found:
        return f"it uses pickle instructions a weights-only load refuses: {found.group(0)}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("Weights only load failed", "Check the documentation"))]
    return (lines[0] if lines else type(exc).__name__)[:160]


def check_runtime(torch_version: str | None = None, env: Mapping[str, str] | None = None) -> None:
    """Refuse to serve where checkpoints could not be loaded safely.

    Args:
        torch_version: the version to check (default: the installed ``torch.__version__``).
        env: environment variables to check (default: ``os.environ``).

    Raises:
        RepgeomError: torch older than :data:`MIN_TORCH` (or an unreadable version), or an
            environment variable that forces unsafe pickle loading.
    """
    version = str(torch.__version__ if torch_version is None else torch_version)
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    found = (int(match[1]), int(match[2])) if match else (0, 0)
    if found < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise RepgeomError(f"repgeom needs torch >= {need} for safe checkpoint loading, found {version[:40]}")
    forced = unsafe_loading_forced(env)
    if forced:
        raise RepgeomError(f"refusing to start while {forced} is set (it forces unsafe pickle loading); unset it")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(models_dir: str | os.PathLike[str] | None = None) -> list[ModelEntry]:
    """Read and validate ``manifest.json`` in ``models_dir``.

    Raises:
        CheckpointError: when the manifest is missing, not JSON, or malformed.
    """
    path = Path(models_dir or default_models_dir()) / MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no model manifest here (give the folder that holds {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list):
        raise CheckpointError(f"{path}: manifest must be an object with a 'models' list")
    entries = [ModelEntry.from_json(r) for r in raw["models"]]
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise CheckpointError(f"{path}: duplicate model ids in the manifest")
    return entries


def load_checkpoint(entry: ModelEntry, models_dir: str | os.PathLike[str] | None = None) -> LoadedModel:
    """Verify and load one model.

    Args:
        entry: its manifest record.
        models_dir: the folder holding the manifest and the checkpoint files.

    Returns:
        The model in eval mode on the CPU.

    Raises:
        CheckpointError: naming the file and the reason (missing, hash mismatch,
            truncated or not a checkpoint, unsafe pickle, wrong architecture).
    """
    forced = unsafe_loading_forced()
    if forced:
        raise CheckpointError(f"refusing to load checkpoints while {forced} is set (it forces unsafe pickle loading)")
    path = Path(models_dir or default_models_dir()) / entry.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise CheckpointError(f"{path}: SHA-256 {digest[:12]}… does not match the manifest's {entry.sha256[:12]}…")
    if entry.architecture not in ARCHITECTURES:
        raise CheckpointError(
            f"{path}: unknown architecture {entry.architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, zip errors...
        raise CheckpointError(f"{path}: refused, not a plain weights-only checkpoint ({_load_refusal(exc)})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: refused, expected a state dict of tensors")
    module = build_net(entry.architecture)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())
        raise CheckpointError(f"{path}: not a {entry.architecture} state dict ({reason[:200]})") from None
    if count_parameters(module) != entry.parameters:
        raise CheckpointError(f"{path}: {count_parameters(module)} parameters, manifest says {entry.parameters}")
    for p in module.parameters():
        p.requires_grad_(False)
    return LoadedModel(entry, module.eval())


def load_all(models_dir: str | os.PathLike[str] | None = None) -> tuple[dict[str, LoadedModel], dict[str, str]]:
    """Load every model in the manifest, keeping the good ones.

    Returns:
        ``(models, errors)``: loaded models by id (manifest order) and, for each refused
        model, its one-line reason.

    Raises:
        CheckpointError: when the manifest itself cannot be read.
    """
    models: dict[str, LoadedModel] = {}
    errors: dict[str, str] = {}
    for entry in read_manifest(models_dir):
        try:
            models[entry.id] = load_checkpoint(entry, models_dir)
        except RepgeomError as exc:
            errors[entry.id] = str(exc)
    return models, errors


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    models_dir: str | os.PathLike[str],
    model_id: str,
    module: nn.Module,
    architecture: str,
    accuracy: Mapping[str, float],
    recipe: Mapping[str, Any],
) -> ModelEntry:
    """Write ``module``'s state dict and its manifest entry, each atomically.

    Returns:
        The new manifest entry (replacing any entry with the same id).
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, buf)
    data = buf.getvalue()
    file = f"{model_id}.pt"
    _atomic_write(models_dir / file, data)
    entry = ModelEntry(
        id=model_id,
        architecture=architecture,
        file=file,
        sha256=hashlib.sha256(data).hexdigest(),
        parameters=count_parameters(module),
        accuracy={k: round(float(v), 6) for k, v in accuracy.items()},
        recipe=dict(recipe),
    )
    manifest_path = models_dir / MANIFEST
    try:
        existing = [e for e in read_manifest(models_dir) if e.id != model_id]
    except CheckpointError:
        existing = []
    order = {"feedforward": 0, "recurrent": 1, "robust": 2, "feedforward_seed2": 3}
    entries = sorted([*existing, entry], key=lambda e: (order.get(e.id, 99), e.id))
    doc = {"format": 1, "models": [e.__dict__ for e in entries]}
    _atomic_write(manifest_path, (json.dumps(doc, indent=2) + "\n").encode())
    return entry
