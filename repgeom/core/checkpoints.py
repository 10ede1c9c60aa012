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

import dataclasses
import hashlib
import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .atomic import write_atomically
from .datasets import DatasetInfo, builtin_datasets, get_dataset
from .errors import CheckpointError, RepgeomError
from .files import read_regular
from .nets import build_net, count_parameters

__all__ = [
    "MANIFEST",
    "HistoryPoint",
    "LoadedModel",
    "Manifest",
    "ModelEntry",
    "Preset",
    "load_refusal",
    "save_dataset",
    "default_models_dir",
    "load_all",
    "load_checkpoint",
    "read_manifest",
    "read_manifest_doc",
    "save_checkpoint",
    "sha256_file",
]

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class HistoryPoint:
    """One checkpoint of a model's training history: the weights after ``epoch`` epochs (0 = initialisation)."""

    epoch: int
    file: str
    sha256: str


#: A node description from a manifest keeps at most this many characters.
MAX_DESCRIPTION = 200


@dataclass(frozen=True)
class ModelEntry:
    """One model as the manifest describes it."""

    id: str
    architecture: str
    file: str
    sha256: str
    parameters: int
    dataset: str
    accuracy: dict[str, float] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    color: str | None = None
    nodes: tuple[str, ...] = ()
    output: str = "probabilities"
    history: tuple[HistoryPoint, ...] = ()
    code_sha256: str = ""
    replicate_of: str = ""
    descriptions: dict[str, str] = field(default_factory=dict)

    #: What a model id may be (it appears in file names, URLs and export keys).
    ID: ClassVar[re.Pattern[str]] = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ModelEntry:
        """Validate one manifest record.

        ``nodes`` (the graph's node names, written when the checkpoint is saved) lets the
        command line list them without tracing the model; the engine always traces.
        ``descriptions`` (optional) maps node names to plain-language descriptions that
        replace the ones derived from the graph (:func:`repgeom.core.describe.describe_nodes`).
        ``replicate_of`` names the model this one retrains with another seed (same
        architecture, data and recipe): the pair measures seed-to-seed variability.
        """
        try:
            color = raw.get("color")
            entry = cls(
                id=str(raw["id"]),
                architecture=str(raw["architecture"]),
                file=str(raw["file"]),
                sha256=str(raw["sha256"]).lower(),
                parameters=int(raw["parameters"]),
                dataset=str(raw["dataset"]),
                accuracy={k: float(v) for k, v in dict(raw.get("accuracy", {})).items()},
                recipe=dict(raw.get("recipe", {})),
                color=None if color is None else str(color),
                nodes=tuple(str(n) for n in raw.get("nodes", ())),
                output=str(raw.get("output", "probabilities")),
                code_sha256=str(raw.get("code_sha256", "")).lower(),
                replicate_of=str(raw.get("replicate_of", "")),
                descriptions={str(k)[:200]: str(v)[:MAX_DESCRIPTION] for k, v in dict(raw.get("descriptions", {})).items()},
                history=tuple(
                    HistoryPoint(int(h["epoch"]), str(h["file"]), str(h["sha256"]).lower()) for h in raw.get("history", ())
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"manifest entry {raw!r:.80} is malformed (missing or bad {exc})") from None
        if any(Path(h.file).name != h.file or h.epoch < 0 for h in entry.history):
            raise CheckpointError(f"manifest entry {entry.id!r}: history files must be bare file names with epochs >= 0")
        if not cls.ID.fullmatch(entry.id):
            raise CheckpointError(f"manifest entry {entry.id[:40]!r}: an id is 1-40 letters, digits, '.', '-' or '_'")
        if Path(entry.file).name != entry.file:
            raise CheckpointError(f"manifest entry {entry.id!r}: file must be a bare file name, got {entry.file!r}")
        if entry.output not in ("probabilities", "logits"):
            raise CheckpointError(f"manifest entry {entry.id!r}: output must be probabilities or logits, got {entry.output[:20]!r}")
        if entry.color is not None and not re.fullmatch(r"#[0-9a-fA-F]{6}", entry.color):
            raise CheckpointError(f"manifest entry {entry.id!r}: color must be #rrggbb, got {entry.color[:20]!r}")
        return entry

    def to_json(self) -> dict[str, Any]:
        """The record as written in ``manifest.json`` (unset optional fields left out)."""
        unset = {"output": "probabilities", "descriptions": {}}
        doc = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, ()) and not (k in unset and v == unset[k])}
        if self.nodes:
            doc["nodes"] = list(self.nodes)
        if self.history:
            doc["history"] = [dataclasses.asdict(h) for h in self.history]
        return doc


@dataclass(frozen=True)
class Preset:
    """A named group of models shown together (e.g. a path comparison) with one click."""

    label: str
    models: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    """A models folder's ``manifest.json``: the models, the dashboard's defaults and presets.

    Attributes:
        entries: the models, in manifest order.
        default_model: the model shown first ("" = the first entry).
        attack_model: the model FGSM images are made against by default ("" = the first entry).
        presets: one-click model groups.
        datasets: image sets registered in this folder (``add-dataset``), beside the built-in ones.
        rejected: malformed model entries left out, by id (or position), with the reason.
    """

    entries: tuple[ModelEntry, ...]
    default_model: str = ""
    attack_model: str = ""
    presets: tuple[Preset, ...] = ()
    datasets: tuple[DatasetInfo, ...] = ()
    rejected: Mapping[str, str] = field(default_factory=dict)

    def dataset(self, dataset_id: str) -> DatasetInfo:
        """A built-in dataset or one registered here, by id (raises listing the known ones)."""
        return get_dataset(dataset_id, {d.id: d for d in self.datasets})

    def to_json(self) -> dict[str, Any]:
        """The document as written to disk."""
        doc: dict[str, Any] = {"format": 2}
        defaults = {k: v for k, v in (("model", self.default_model), ("attack_model", self.attack_model)) if v}
        if defaults:
            doc["defaults"] = defaults
        if self.presets:
            doc["presets"] = [{"label": p.label, "models": list(p.models)} for p in self.presets]
        if self.datasets:
            doc["datasets"] = [d.to_json() for d in self.datasets]
        doc["models"] = [e.to_json() for e in self.entries]
        return doc


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
    """The ``models/`` folder beside the package (the settings module applies ``REPGEOM_MODELS_DIR``)."""
    return Path(__file__).resolve().parents[2] / "models"


def load_refusal(exc: Exception) -> str:
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


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: Largest manifest read, and its deepest JSON nesting.
MAX_MANIFEST_BYTES = 16 << 20
MAX_MANIFEST_DEPTH = 32


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` outside strings (checked before parsing: Python's parser recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def read_manifest_doc(models_dir: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and validate ``manifest.json`` in ``models_dir``, with its defaults and presets.

    A malformed model entry refuses that model alone: it is left out of ``entries`` and
    its one-line reason kept in ``rejected`` (under its id when it has one).

    Raises:
        CheckpointError: when the manifest is missing, not a regular file, too large or
            too deeply nested, not JSON, or not an object with a ``models`` list.
    """
    path = Path(models_dir or default_models_dir()) / MANIFEST
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{path}: no model manifest here (give the folder that holds {MANIFEST})")
    try:
        text = read_regular(path, MAX_MANIFEST_BYTES, "manifest").decode("utf-8")
        if _json_depth(text) > MAX_MANIFEST_DEPTH:
            raise CheckpointError(f"{path}: refused, JSON nested deeper than {MAX_MANIFEST_DEPTH} levels")
        raw = json.loads(text)
    except CheckpointError:
        raise
    except RepgeomError as exc:
        raise CheckpointError(str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({str(exc)[:120]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list):
        raise CheckpointError(f"{path}: manifest must be an object with a 'models' list")
    entries: list[ModelEntry] = []
    rejected: dict[str, str] = {}
    for i, r in enumerate(raw["models"]):
        name = str(r["id"])[:40] if isinstance(r, dict) and isinstance(r.get("id"), str) else f"entry {i + 1}"
        try:
            entry = ModelEntry.from_json(r if isinstance(r, Mapping) else {})
        except CheckpointError as exc:
            rejected[name] = f"{path}: {exc}"
            continue
        if entry.id in {e.id for e in entries}:
            rejected[f"{name} (entry {i + 1})"] = f"{path}: duplicate model id {entry.id!r}; the first entry is served"
            continue
        entries.append(entry)
    defaults = raw.get("defaults", {})
    try:
        presets = tuple(Preset(str(p["label"]), tuple(str(m) for m in p["models"])) for p in raw.get("presets", ()))
        default_model, attack_model = str(defaults.get("model", "")), str(defaults.get("attack_model", ""))
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: malformed defaults or presets ({exc})") from None
    try:
        raw_sets = raw.get("datasets", [])
        datasets = tuple(DatasetInfo.from_json(d) for d in (raw_sets if isinstance(raw_sets, list) else [raw_sets]))
    except (RepgeomError, TypeError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    clash = sorted({d.id for d in datasets} & set(builtin_datasets()))
    if clash:
        raise CheckpointError(f"{path}: dataset id {clash[0]!r} is built in; register the folder under another id")
    return Manifest(tuple(entries), default_model, attack_model, presets, datasets, rejected)


def read_manifest(models_dir: str | os.PathLike[str] | None = None) -> list[ModelEntry]:
    """The model entries of ``manifest.json`` in ``models_dir``, in manifest order.

    Raises:
        CheckpointError: when the manifest is missing, not JSON, or malformed.
    """
    return list(read_manifest_doc(models_dir).entries)


def load_checkpoint(entry: ModelEntry, models_dir: str | os.PathLike[str] | None = None, trust_code: bool = False) -> LoadedModel:
    """Verify and load one model.

    Args:
        entry: its manifest record.
        models_dir: the folder holding the manifest and the checkpoint files.
        trust_code: allow an architecture that is a user's Python file (command line only).

    Returns:
        The model in eval mode on the CPU.

    Raises:
        CheckpointError: naming the file and the reason (missing, hash mismatch,
            truncated or not a checkpoint, unsafe pickle, wrong architecture).
    """
    path = Path(models_dir or default_models_dir()) / entry.file
    try:
        data = read_regular(path, what="checkpoint")
    except RepgeomError as exc:
        raise CheckpointError(str(exc)) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise CheckpointError(f"{path}: SHA-256 {digest[:12]}… does not match the manifest's {entry.sha256[:12]}…")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, zip errors...
        raise CheckpointError(f"{path}: refused, not a plain weights-only checkpoint ({load_refusal(exc)})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: refused, expected a state dict of tensors")
    try:
        module = build_net(
            entry.architecture, num_classes=_head_size(state), in_channels=_in_channels(state),
            trust_code=trust_code, code_hash=entry.code_sha256,
        )
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
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


def load_all(models_dir: str | os.PathLike[str] | None = None, trust_code: bool = False) -> tuple[dict[str, LoadedModel], dict[str, str]]:
    """Load every model in the manifest, keeping the good ones.

    Args:
        models_dir: the folder with ``manifest.json``.
        trust_code: also load models whose architecture is a user's Python file (the
            command line's ``--trust-code``; the dashboard refuses them).

    Returns:
        ``(models, errors)``: loaded models by id (manifest order) and, for each refused
        model, its one-line reason.

    Raises:
        CheckpointError: when the manifest itself cannot be read.
    """
    models: dict[str, LoadedModel] = {}
    doc = read_manifest_doc(models_dir)
    errors: dict[str, str] = dict(doc.rejected)
    for entry in doc.entries:
        try:
            models[entry.id] = load_checkpoint(entry, models_dir, trust_code)
        except RepgeomError as exc:
            errors[entry.id] = str(exc)
    return models, errors


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` whole with :func:`~repgeom.core.atomic.write_atomically`, readable by others (0644)."""
    write_atomically(path, data, mode=0o644, follow_symlinks=True)


def _existing_manifest(models_dir: Path) -> Manifest:
    """The folder's manifest, or an empty one where there is none yet (a malformed one is refused, never overwritten)."""
    if not (models_dir / MANIFEST).exists():
        return Manifest(())
    return read_manifest_doc(models_dir)


def _head_size(state: Mapping[str, torch.Tensor]) -> int | None:
    """Rows of the last 2-D weight in a state dict: the class count of a classifier's head."""
    weights = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    return int(weights[-1].shape[0]) if weights else None


def _in_channels(state: Mapping[str, torch.Tensor]) -> int:
    """Input channels of the first convolution in a state dict (1 when there is none)."""
    convs = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 4]
    return int(convs[0].shape[1]) if convs else 1


def _state_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, buf)
    return buf.getvalue()


def save_checkpoint(
    models_dir: str | os.PathLike[str],
    entry: ModelEntry,
    module: nn.Module,
    history: Mapping[int, Mapping[str, torch.Tensor]] | None = None,
) -> ModelEntry:
    """Write ``module``'s state dict and its manifest entry, each atomically.

    Args:
        models_dir: the folder with ``manifest.json`` (created if missing).
        entry: the record to write; its file name, hash and parameter count are filled
            in from ``module``.
        module: the trained network.
        history: state dicts by epoch (0 = initialisation), written as ``<id>@<epoch>.pt``
            and listed in the entry's ``history``.

    Returns:
        The written entry (replacing any entry with the same id, keeping manifest order).
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    data = _state_bytes(module.state_dict())
    points = []
    for epoch, state in sorted((history or {}).items()):
        blob = _state_bytes(state)
        point = HistoryPoint(int(epoch), f"{entry.id}@{int(epoch)}.pt", hashlib.sha256(blob).hexdigest())
        _atomic_write(models_dir / point.file, blob)
        points.append(point)
    entry = dataclasses.replace(
        entry,
        history=tuple(points) if history is not None else entry.history,
        file=f"{entry.id}.pt",
        sha256=hashlib.sha256(data).hexdigest(),
        parameters=count_parameters(module),
        accuracy={k: round(float(v), 6) for k, v in entry.accuracy.items()},
    )
    _atomic_write(models_dir / entry.file, data)
    doc = _existing_manifest(models_dir)
    ids = [e.id for e in doc.entries]
    entries = [entry if e.id == entry.id else e for e in doc.entries] if entry.id in ids else [*doc.entries, entry]
    doc = dataclasses.replace(doc, entries=tuple(entries))
    _atomic_write(models_dir / MANIFEST, (json.dumps(doc.to_json(), indent=2) + "\n").encode())
    return entry


def save_dataset(models_dir: str | os.PathLike[str], info: DatasetInfo, probes: bytes) -> DatasetInfo:
    """Register an image set in a models folder: its probe file, then its manifest entry, each atomically.

    Args:
        models_dir: the folder with ``manifest.json`` (created if missing).
        info: the descriptor; its probe file name and hash are filled in.
        probes: the ``.npz`` bytes of the probe set (``images`` (M, C, H, W) uint8,
            ``labels``, ``indices``, ``files``).

    Returns:
        The registered descriptor (replacing one with the same id).

    Raises:
        CheckpointError: when the id is a built-in dataset's or the manifest is unreadable.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    if info.id in builtin_datasets():
        raise CheckpointError(f"dataset id {info.id!r} is built in; choose another id")
    doc = _existing_manifest(models_dir)
    info = dataclasses.replace(info, probes=f"probes_{info.id}.npz", probes_sha256=hashlib.sha256(probes).hexdigest())
    _atomic_write(models_dir / info.probes, probes)
    datasets = [d for d in doc.datasets if d.id != info.id] + [info]
    doc = dataclasses.replace(doc, datasets=tuple(datasets))
    _atomic_write(models_dir / MANIFEST, (json.dumps(doc.to_json(), indent=2) + "\n").encode())
    return info
