"""Bring your own network and images: an image folder and a torchvision ResNet-18 registered and exported through the CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rsatoolbox
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("cat", "dog", "fish")


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "repgeom", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    """3 classes x 20 colour 32 x 32 PNGs and seeded random ResNet-18 weights, registered through the CLI."""
    import torchvision

    base = tmp_path_factory.mktemp("byo")
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (base / "images" / name).mkdir(parents=True)
        for i in range(20):
            tint = np.array([c * 90, 200 - c * 60, 60 + c * 50])
            pixels = (rng.random((32, 32, 3)) * 90 + tint).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(base / "images" / name / f"{i:03d}.png")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), base / "resnet18.pt")
    models = base / "models"
    r = _cli("add-dataset", "toy", "--images", str(base / "images"), "--models-dir", str(models))
    assert r.returncode == 0, r.stderr
    r = _cli("add-model", "r18", "--arch", "torchvision:resnet18", "--weights", str(base / "resnet18.pt"),
             "--dataset", "toy", "--models-dir", str(models))
    assert r.returncode == 0, r.stderr
    assert "registered model r18: torchvision:resnet18 on toy" in r.stdout
    return base


def test_registered_dataset_and_model_are_listed(byo):
    r = _cli("datasets", "--models-dir", str(byo / "models"))
    assert r.returncode == 0, r.stderr
    assert "toy\t3 classes\t32x32\t3 channels\t20 probes/class" in r.stdout.splitlines()
    r = _cli("models", "--models-dir", str(byo / "models"))
    assert r.stdout.split("\t")[:2] == ["r18", "toy"]
    doc = json.loads((byo / "models" / "manifest.json").read_text())
    entry = doc["models"][0]
    assert entry["architecture"] == "torchvision:resnet18" and entry["output"] == "logits"
    assert "layer1.0.conv1" in entry["nodes"] and entry["nodes"][0] == "x"


def test_export_rdms_path_and_class_names_match_rsatoolbox(byo):
    out = byo / "geo.npz"
    layers = "x,layer1.0.conv1,layer4.1.relu_1,fc"
    r = _cli("export", "--models-dir", str(byo / "models"), "--models", "r18", "--out", str(out), "--layers", layers,
             "--n-per-class", "20", "--save-features", "--rdm", "correlation", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    z = np.load(out)
    assert list(z["class_names"]) == list(CLASSES)
    assert z["labels"].tolist() == [c for c in range(3) for _ in range(20)]
    assert list(z["path/names"]) == [f"r18/{n}" for n in layers.split(",")] + ["labels"]
    assert z["path/distances"].shape == (5, 5)
    for node in layers.split(","):
        feats = z[f"features/r18/{node}"]
        ref = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(feats.astype(np.float64)), method="correlation").get_matrices()[0]
        np.testing.assert_allclose(z[f"rdm/r18/{node}"], ref, atol=1e-6)
    assert z["features/r18/x"].shape == (60, 3 * 32 * 32)


def test_fgsm_on_a_logit_model_stays_in_pixel_range(byo):
    from repgeom.pipeline import Engine

    engine = Engine(byo / "models", device="cpu")
    clean = engine.stimuli(engine.spec(5, dataset="toy"))
    adv = engine.stimuli(engine.spec(5, "fgsm", 0.1, "r18"))
    assert adv.pixels.shape == (15, 3, 32, 32) and adv.dataset.id == "toy"
    assert 0.0 <= adv.pixels.min() and adv.pixels.max() <= 1.0
    assert 0 < np.abs(adv.pixels - clean.pixels).max() <= 0.1 + 1e-6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add-dataset", "bad", "--images", "/nonexistent"], "not a folder"),
        (["add-dataset", "mnist", "--images", "{images}"], "dataset id 'mnist' is built in"),
        (["add-dataset", "one", "--images", "{images}/cat"], "2 to 100 class subfolders allowed, found 0"),
        (["add-model", "m", "--arch", "torchvision:nope", "--weights", "{weights}", "--dataset", "toy"], "unknown torchvision classifier 'nope'"),
        (["add-model", "m", "--arch", "keras:net", "--weights", "{weights}", "--dataset", "toy"], "unknown architecture 'keras:net'"),
        (["add-model", "m", "--arch", "torchvision:resnet34", "--weights", "{weights}", "--dataset", "toy"], "the weights do not fit torchvision:resnet34"),
        (["add-model", "m", "--arch", "repgeom:recurrent", "--weights", "{weights}", "--dataset", "mnist"],
         "class count disagrees: the weights have 3 outputs"),
        (["add-model", "m", "--arch", "torchvision:resnet18", "--weights", "{weights}", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["add-model", "m", "--arch", "torchvision:resnet18", "--weights", "{images}/cat/000.png", "--dataset", "toy"],
         "refused, not a plain weights-only state dict"),
    ],
)
def test_bad_registrations_are_one_line_exit_2_and_change_nothing(byo, capsys, args, message):
    from repgeom.cli import main

    models = byo / "models"
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    filled = [a.format(images=byo / "images", weights=byo / "resnet18.pt") for a in args]
    assert main([*filled, "--models-dir", str(models)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before


def test_a_python_file_architecture_needs_trust_code_and_never_loads_in_the_dashboard(byo, tmp_path, capsys):
    from repgeom.cli import main
    from repgeom.pipeline import Engine

    models = tmp_path / "models"
    code = tmp_path / "mynet.py"
    code.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class TinyNet(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 4, 3)\n        self.pool = nn.AdaptiveAvgPool2d(1)\n        self.fc = nn.Linear(4, 3)\n\n"
        "    def forward(self, x):\n        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))\n"
    )
    torch.manual_seed(0)
    spec = importlib.util.spec_from_file_location("mynet_test", code)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.save(mod.TinyNet().state_dict(), tmp_path / "tiny.pt")
    assert main(["add-dataset", "toy", "--images", str(byo / "images"), "--models-dir", str(models)]) == 0
    args = ["add-model", "tiny", "--arch", f"python:{code}:TinyNet", "--weights", str(tmp_path / "tiny.pt"), "--dataset", "toy",
            "--models-dir", str(models)]
    assert main(args) == 2
    assert "runs that file's code: add --trust-code" in capsys.readouterr().err
    assert not (models / "tiny.pt").exists()
    assert main([*args, "--trust-code"]) == 0
    capsys.readouterr()
    # the dashboard's engine refuses it; the command line with --trust-code serves it
    engine = Engine(models, device="cpu")
    assert engine.model_ids == [] and "only the command line loads it, with --trust-code" in engine.load_errors["tiny"]
    engine = Engine(models, device="cpu", trust_code=True)
    assert engine.model_ids == ["tiny"] and engine.nodes("tiny")[0] == "x"
    # an edited file is refused until registered again
    code.write_text(code.read_text() + "\n# edited\n")
    engine = Engine(models, device="cpu", trust_code=True)
    assert "changed since the model was registered" in engine.load_errors["tiny"]
