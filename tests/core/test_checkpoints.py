"""Checkpoints load only as verified weights: hashes, truncation, pickles, architectures."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from repgeom.core.checkpoints import ModelEntry, load_all, load_checkpoint, read_manifest, read_manifest_doc, save_checkpoint
from repgeom.core.errors import CheckpointError
from repgeom.core.nets import Net, RecurrentNet, count_parameters

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def models_dir(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path, _entry("feedforward", "Net"), Net())
    save_checkpoint(tmp_path, _entry("recurrent", "RecurrentNet"), RecurrentNet())
    return tmp_path


def _entry(model_id: str, architecture: str, **extra) -> ModelEntry:
    return ModelEntry(model_id, architecture, "", "", 0, "mnist", {"clean": 0.1}, {"seed": 0}, **extra)


def _set_entry(models_dir: Path, model_id: str, **fields):
    doc = json.loads((models_dir / "manifest.json").read_text())
    for e in doc["models"]:
        if e["id"] == model_id:
            e.update(fields)
    (models_dir / "manifest.json").write_text(json.dumps(doc))


def test_round_trip_and_manifest_fields(models_dir):
    models, errors = load_all(models_dir)
    assert errors == {}
    assert list(models) == ["feedforward", "recurrent"]
    entry = read_manifest(models_dir)[1]
    assert entry.parameters == 2650 == count_parameters(models["recurrent"].module)
    assert entry.sha256 == hashlib.sha256((models_dir / "recurrent.pt").read_bytes()).hexdigest()
    assert not models["recurrent"].module.training


def test_hash_mismatch_is_refused_and_others_still_load(models_dir):
    data = bytearray((models_dir / "recurrent.pt").read_bytes())
    data[-100] ^= 0xFF
    (models_dir / "recurrent.pt").write_bytes(bytes(data))
    models, errors = load_all(models_dir)
    assert list(models) == ["feedforward"]
    assert "recurrent.pt" in errors["recurrent"] and "SHA-256" in errors["recurrent"]


def test_truncated_file_is_refused_even_with_matching_hash(models_dir):
    data = (models_dir / "recurrent.pt").read_bytes()[:1000]
    (models_dir / "recurrent.pt").write_bytes(data)
    _set_entry(models_dir, "recurrent", sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(CheckpointError, match=r"recurrent\.pt: refused, not a plain weights-only checkpoint"):
        load_checkpoint(read_manifest(models_dir)[1], models_dir)


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (shutil.copyfile, (__file__, self.marker))


def test_code_running_pickle_is_refused_and_never_runs(models_dir, tmp_path):
    marker = tmp_path / "pwned"
    evil = models_dir / "recurrent.pt"
    torch.save({"conv1.weight": _Evil(str(marker))}, evil)
    _set_entry(models_dir, "recurrent", sha256=hashlib.sha256(evil.read_bytes()).hexdigest())
    models, errors = load_all(models_dir)
    assert "recurrent" not in models and "feedforward" in models
    assert "refused" in errors["recurrent"] and "recurrent.pt" in errors["recurrent"]
    assert not marker.exists()
    # and a bare pickle (not torch's zip format) likewise
    evil.write_bytes(pickle.dumps(_Evil(str(marker))))
    _set_entry(models_dir, "recurrent", sha256=hashlib.sha256(evil.read_bytes()).hexdigest())
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(read_manifest(models_dir)[1], models_dir)
    assert not marker.exists()


def test_wrong_architecture_is_refused(models_dir):
    shutil.copy(models_dir / "feedforward.pt", models_dir / "recurrent.pt")
    _set_entry(models_dir, "recurrent", sha256=hashlib.sha256((models_dir / "recurrent.pt").read_bytes()).hexdigest())
    with pytest.raises(CheckpointError, match=r"recurrent\.pt: not a RecurrentNet state dict"):
        load_checkpoint(read_manifest(models_dir)[1], models_dir)


def test_missing_file_and_path_in_manifest_are_refused(models_dir):
    (models_dir / "recurrent.pt").unlink()
    _, errors = load_all(models_dir)
    assert "recurrent.pt: no such checkpoint" in errors["recurrent"]
    _set_entry(models_dir, "feedforward", file="../feedforward.pt")
    assert "bare file name" in read_manifest_doc(models_dir).rejected["feedforward"]
    assert [e.id for e in read_manifest(models_dir)] == ["recurrent"]


def test_shipped_manifest_hashes_match_files():
    entries = read_manifest(ROOT / "models")
    assert {e.id for e in entries} == {"feedforward", "recurrent", "robust", "feedforward_seed2", "fashion_feedforward", "fashion_recurrent"}
    for e in entries:
        assert hashlib.sha256((ROOT / "models" / e.file).read_bytes()).hexdigest() == e.sha256


def test_shipped_manifest_names_dataset_defaults_presets_and_traced_nodes():
    from repgeom.core.features import node_names

    doc = read_manifest_doc(ROOT / "models")
    ids = [e.id for e in doc.entries]
    assert doc.default_model in ids and doc.attack_model in ids
    assert all(set(p.models) <= set(ids) for p in doc.presets)
    models, errors = load_all(ROOT / "models")
    assert errors == {}
    for e in doc.entries:
        assert e.dataset == ("fashion-mnist" if e.id.startswith("fashion_") else "mnist")
        # the node list the CLI prints without tracing is exactly the traced graph's
        assert list(e.nodes) == node_names(models[e.id].module)


def test_save_keeps_manifest_order_defaults_and_replaces_in_place(models_dir):
    doc = json.loads((models_dir / "manifest.json").read_text())
    doc["defaults"] = {"model": "recurrent"}
    (models_dir / "manifest.json").write_text(json.dumps(doc))
    torch.manual_seed(1)
    save_checkpoint(models_dir, _entry("feedforward", "Net", color="#112233"), Net())
    after = read_manifest_doc(models_dir)
    assert [e.id for e in after.entries] == ["feedforward", "recurrent"]
    assert after.default_model == "recurrent" and after.entries[0].color == "#112233"
    models, errors = load_all(models_dir)
    assert errors == {} and list(models) == ["feedforward", "recurrent"]


def test_a_classifier_head_of_another_size_loads_from_its_state_dict(tmp_path):
    save_checkpoint(tmp_path, _entry("three", "RecurrentNet"), RecurrentNet(num_classes=3, in_channels=3))
    models, errors = load_all(tmp_path)
    assert errors == {}
    out = models["three"].module(torch.zeros(2, 3, 28, 28))
    assert out.shape == (2, 3)


@pytest.mark.parametrize(("field", "value", "message"), [("color", "red", "#rrggbb"), ("dataset", None, "dataset")])
def test_bad_entry_fields_are_refused(models_dir, field, value, message):
    doc = json.loads((models_dir / "manifest.json").read_text())
    if value is None:
        del doc["models"][0][field]
    else:
        doc["models"][0][field] = value
    (models_dir / "manifest.json").write_text(json.dumps(doc))
    assert [e.id for e in read_manifest(models_dir)] == ["recurrent"]
    assert message in read_manifest_doc(models_dir).rejected["feedforward"]


def test_one_malformed_entry_refuses_that_model_only(models_dir):
    doc = json.loads((models_dir / "manifest.json").read_text())
    doc["models"].insert(0, {"id": "broken", "architecture": "Net"})
    doc["models"].append(dict(doc["models"][1]))  # a duplicate id
    doc["models"].append(["not", "an", "object"])
    (models_dir / "manifest.json").write_text(json.dumps(doc))
    models, errors = load_all(models_dir)
    assert list(models) == ["feedforward", "recurrent"]
    assert set(errors) == {"broken", "feedforward (entry 4)", "entry 5"}
    assert all(len(v.splitlines()) == 1 for v in errors.values()) and "missing or bad 'file'" in errors["broken"]


def test_deeply_nested_manifest_is_one_line(models_dir):
    (models_dir / "manifest.json").write_text('{"models": [], "x": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(CheckpointError, match="nested deeper than 32"):
        read_manifest(models_dir)


def test_a_fifo_is_refused_without_blocking(models_dir):
    import os
    import threading

    os.remove(models_dir / "recurrent.pt")
    os.mkfifo(models_dir / "recurrent.pt")
    result = {}
    t = threading.Thread(target=lambda: result.update(zip(("models", "errors"), load_all(models_dir), strict=True)), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "loading blocked on a FIFO"
    assert list(result["models"]) == ["feedforward"] and "is a FIFO" in result["errors"]["recurrent"]
    os.remove(models_dir / "manifest.json")
    os.mkfifo(models_dir / "manifest.json")
    with pytest.raises(CheckpointError, match="manifest is a FIFO"):
        read_manifest(models_dir)
