"""The dashboard on a dataset and models that are not MNIST's: twelve colour classes, no manifest defaults or presets.

Everything here goes through the same callbacks as the shipped models; nothing about
MNIST (ten digits, grey 28 × 28, feedforward/recurrent ids) may show up.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from dash import no_update

from repgeom.figures.style import MODEL_PALETTE, class_colors
from repgeom.settings import Settings
from repgeom.ui import create_app
from repgeom.ui.callbacks import download, embeddings, models, paths, rdms, selection, sync
from repgeom.ui.ids import ID
from repgeom.ui.state import View

CLASSES = [f"kind-{k:02d}" for k in range(12)]


@pytest.fixture(scope="module")
def tiles_folder(tmp_path_factory):
    """A models folder with a registered 12-class colour dataset and two randomly initialised repgeom nets."""
    from PIL import Image

    from repgeom.core.nets import build_net, canonical_architecture
    from repgeom.registry import register_dataset, register_model

    tmp = tmp_path_factory.mktemp("tiles")
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        (tmp / "images" / name).mkdir(parents=True)
        for i in range(3):
            pixels = (rng.random((28, 28, 3)) * 120).astype(np.uint8)
            pixels[..., k % 3] = 255  # each class leans to one primary colour
            Image.fromarray(pixels).save(tmp / "images" / name / f"{i}.png")
    folder = tmp / "models"
    folder.mkdir()
    register_dataset(folder, "tiles", tmp / "images")
    for model_id, arch in (("ff12", "repgeom:feedforward"), ("rec12", "repgeom:recurrent")):
        torch.manual_seed(0)
        torch.save(build_net(canonical_architecture(arch), num_classes=12, in_channels=3).state_dict(), tmp / f"{model_id}.pt")
        register_model(folder, model_id, arch, tmp / f"{model_id}.pt", "tiles")
    return folder


@pytest.fixture(scope="module")
def tiles(tiles_folder):
    from repgeom.pipeline import Engine

    return Engine(tiles_folder, device="cpu")


def _view(engine, **changes):
    return View.parse(engine, {**View.default(engine).controls(), **changes}).controls()


def _text(component) -> str:
    return json.dumps(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component, default=str, ensure_ascii=False)


def test_the_page_names_the_dataset_and_offers_no_presets(tiles):
    assert tiles.dataset.class_names == tuple(CLASSES) and tiles.dataset.channels == 3 and tiles.presets == ()
    app = create_app(Settings(warm=False), engine=tiles)
    page = json.dumps(app.server.test_client().get("/_dash-layout").get_json())
    assert "tiles" in page and "MNIST" not in page and "digit" not in page
    assert f'"type": "{ID.PRESET}"' not in page
    out = sync.sync(tiles, ID.URL, "", {})
    assert out[1]["model"] == "ff12" and out[1]["attack_model"] == "ff12"  # no manifest defaults: the first model
    assert out[3] == ""  # a feedforward net: no steps hint
    out = sync.sync(tiles, ID.MODEL, "", {**_view(tiles), "model": "rec12"})
    assert out[1]["nodes"] == list(tiles.steps("rec12")) and out[3].startswith("recurrent steps: conv2, conv2_1")


def test_rdms_ticks_and_the_pair_use_the_class_names(tiles):
    view = _view(tiles, n_rdm=3)
    grid, slider, message = rdms.rdm_figures(tiles, view, [])
    assert message == "" and list(grid.layout.yaxis.ticktext) == CLASSES and list(slider.layout.yaxis.ticktext) == CLASSES
    assert len([s for s in grid.layout.shapes if s.type == "line"]) == len(grid.data) * 2 * 11
    stim = tiles.stimuli(tiles.spec(3))
    sel = selection.select(tiles, ID.RDM_GRID, {"points": [{"x": 34, "y": 1}]}, [], view)
    assert sel == [int(stim.indices[1]), int(stim.indices[34])]
    fig, _, _ = selection.pair(tiles, sel, view)
    assert "(class kind-00)" in fig.layout.title.text and "(class kind-11)" in fig.layout.title.text
    assert fig.data[0].line.color == MODEL_PALETTE[0]


def test_hover_shows_colour_images_captioned_with_class_names(tiles):
    from PIL import Image

    panel = selection.hover(tiles, ID.RDM_GRID, {"points": [{"x": 34, "y": 1, "curveNumber": 0}]}, _view(tiles, n_rdm=3))
    text = _text(panel)
    assert "class kind-00 · image #" in text and "class kind-11 · image #" in text
    uris = [card.children[0].src for card in panel.children[:2]]
    img = Image.open(io.BytesIO(base64.b64decode(uris[0].split(",", 1)[1])))
    assert img.mode == "RGB" and img.size == (84, 84)
    assert np.asarray(img)[..., 0].mean() > 200  # kind-00 leans red


def test_embeddings_colour_twelve_classes(tiles):
    view = _view(tiles, tab="embeddings", n_embed=3, embed_methods=["pca"], anim_method="pca", nodes=["conv1", "fc2"])
    request = embeddings.embedding_request(tiles, view, [])
    grid, anim, _shepard, message = embeddings.embedding_figures(tiles, lambda _v: None, request)
    points = [t for t in grid.data if t.name != "selected"]
    assert message == "" and [t.name for t in points[:12]] == CLASSES
    assert [t.marker.color for t in points[:12]] == list(class_colors(12)) and len(set(class_colors(12))) == 12
    assert "class kind-05<br>" in points[5].hovertemplate and grid.layout.legend.title.text == "class"
    assert [f.name for f in anim.frames] == ["conv1", "fc2"]


def test_path_models_and_download_for_other_models(tiles):
    fig, _labels, _shepard, _note, message = paths.path_figure(tiles, _view(tiles, tab="paths", n_embed=2, path_models=["ff12", "rec12"]))
    lines = [t for t in fig.data if t.type == "scatter" and t.mode == "lines+markers"]
    assert message == "" and [(t.name, t.line.color) for t in lines] == [("ff12", MODEL_PALETTE[0]), ("rec12", MODEL_PALETTE[1])]
    table, message = models.models_panel(tiles, _view(tiles, tab="models", n_rdm=2))
    metrics, _m = models.metrics_job(tiles, lambda _p: None, {"view": _view(tiles, tab="models", n_rdm=2)})
    assert message == _m == "" and "ff12" in _text(table) and "rec12" in _text(table) and metrics.data[0].line.color == MODEL_PALETTE[0]
    data, message = download.download(tiles, _view(tiles, n_rdm=2))
    z = np.load(io.BytesIO(base64.b64decode(data["content"])))
    assert message == "" and z["rdm/ff12/conv1"].shape == (24, 24)


def test_a_link_naming_a_shipped_model_is_refused_with_the_loaded_ones(tiles):
    out = sync.sync(tiles, ID.URL, "?model=recurrent", {})
    assert "unknown model 'recurrent'; allowed: ff12, rec12" in _text(out[4]) and out[1]["model"] == "ff12"
    assert sync.sync(tiles, {"type": ID.PRESET, "index": 0}, "", _view(tiles))[1] is no_update


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, tiles_folder):
    """The shipped feedforward and recurrent MNIST nets beside the tiles dataset and its feedforward net."""
    import shutil
    from pathlib import Path

    from repgeom.pipeline import Engine
    from repgeom.registry import register_model

    shipped = Path(__file__).resolve().parents[2] / "models"
    folder = tmp_path_factory.mktemp("mixed")
    doc = json.loads((shipped / "manifest.json").read_text())
    doc["models"] = [m for m in doc["models"] if m["id"] in ("feedforward", "recurrent")]
    for m in doc["models"]:
        for f in [m["file"], *(h["file"] for h in m.get("history", []))]:
            shutil.copy(shipped / f, folder / f)
    doc["datasets"] = json.loads((tiles_folder / "manifest.json").read_text())["datasets"]
    (folder / "manifest.json").write_text(json.dumps(doc))
    for f in tiles_folder.glob("*.npz"):
        shutil.copy(f, folder / f.name)
    torch.manual_seed(0)
    from repgeom.core.nets import build_net

    torch.save(build_net("Net", num_classes=12, in_channels=3).state_dict(), folder / "ff12-weights.pt")
    register_model(folder, "ff12", "repgeom:feedforward", folder / "ff12-weights.pt", "tiles")
    return Engine(folder, device="cpu")


def test_switching_to_a_model_of_another_dataset_brings_its_stimuli_and_names(mixed):
    assert mixed.model_ids == ["feedforward", "recurrent", "ff12"] and View.default(mixed).model == "recurrent"
    app = create_app(Settings(warm=False), engine=mixed)
    page = json.dumps(app.server.test_client().get("/_dash-layout").get_json())
    assert "MNIST and tiles networks" in page and "1 to 100 for MNIST; 1 to 3 for tiles" in page
    out = sync.sync(mixed, ID.MODEL, "", {**_view(mixed, condition="fgsm"), "model": "ff12"})
    view = out[1]
    assert (view["model"], view["attack_model"], view["path_models"], view["n_rdm"], view["n_embed"]) == ("ff12", "ff12", ["ff12"], 3, 3)
    grid, _slider, message = rdms.rdm_figures(mixed, {**view, "n_rdm": 2}, [])
    assert message == "" and list(grid.layout.yaxis.ticktext) == CLASSES
    assert "FGSM ε=0.2 against ff12" in grid.layout.title.text
    back = sync.sync(mixed, ID.MODEL, "", {**view, "model": "recurrent"})[1]
    assert (back["attack_model"], back["path_models"], back["n_rdm"]) == ("feedforward", ["recurrent"], 3)
    linked = View.from_query(mixed, "?model=ff12&n_embed=2")
    assert (linked.attack_model, linked.path_models, linked.n_rdm, linked.n_embed) == ("ff12", ("ff12",), 3, 2)
    table, _ = models.models_panel(mixed, _view(mixed, tab="models", n_rdm=2))
    assert "tiles" in _text(table) and "MNIST" in _text(table)


def test_a_path_across_datasets_is_refused_with_a_message(mixed):
    fig, _labels, _shepard, _note, message = paths.path_figure(mixed, _view(mixed, tab="paths", n_embed=2, path_models=["recurrent", "ff12"]))
    assert fig is no_update and "different datasets" in _text(message) and "recurrent (mnist), ff12 (tiles)" in _text(message)
    side, message = paths.survive_figure(mixed, _view(mixed, tab="paths", n_embed=2, path_models=["recurrent", "ff12"]))
    assert side is no_update and "different datasets" in _text(message)
    grid, _s, message = rdms.rdm_figures(mixed, _view(mixed, model="ff12", nodes=["fc2"], n_rdm=2, n_embed=2, condition="fgsm", attack_model="recurrent"), [])
    assert grid is no_update and "is for dataset 'mnist', not 'tiles'" in _text(message)
