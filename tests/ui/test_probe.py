"""The live probe tab: callbacks as plain functions, the per-client bound, and hostile images posted through Dash's endpoint."""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from dash import no_update
from PIL import Image

from repgeom.core.probe import decode_data_url, pca_project, prepare_image, read_image
from repgeom.core.stimuli import normalize
from repgeom.figures.probe import PROBE_NAME
from repgeom.ui.callbacks import probe
from repgeom.ui.ids import ID
from repgeom.ui.state import View, default_nodes


def _view(engine, **changes):
    return View.parse(engine, {**View.default(engine).controls(), **changes}).controls()


def _url(img: Image.Image, fmt: str = "PNG", kind: str = "png") -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return f"data:image/{kind};base64," + base64.b64encode(buf.getvalue()).decode()


def _drawing(engine, row: int = 0) -> tuple[str, int]:
    """A probe-set digit as a canvas would send it: 10× larger, white on black, off-centre; and its label."""
    src = engine.source
    big = Image.fromarray(src.images[row, 0]).resize((280, 280), Image.BILINEAR)
    canvas = Image.new("RGBA", (320, 320), (0, 0, 0, 255))
    canvas.paste(big.convert("RGBA"), (35, 5))
    return _url(canvas), int(src.labels[row])


def _text(value) -> str:
    return json.dumps(value.to_plotly_json() if hasattr(value, "to_plotly_json") else value, default=str, ensure_ascii=False)


PROBE_VIEW = {"tab": "probe", "n_embed": 4, "embed_methods": ["pca", "tsne"], "nodes": ["conv2", "conv2_4"]}


def test_a_drawing_passes_through_the_model(engine):
    image, label = _drawing(engine, 130)
    view = _view(engine, **PROBE_VIEW)
    seen, note, probs, embed, rows, message = probe.probe_figures(engine, image, view)
    names = engine.dataset.class_names
    assert message == "" and seen.startswith("data:image/png;base64,")
    assert "box scaled to fit 20 × 20 pixels in a 28 × 28 image" in note and "centre of mass" in note
    assert isinstance(probs, go.Figure) and list(probs.data[0].x) == list(names) and len(probs.data[0].y) == engine.dataset.n_classes
    assert int(np.argmax(probs.data[0].y)) == label and f"predicts <b>{names[label]}</b>" in probs.layout.title.text
    stars = [t for t in embed.data if t.name == PROBE_NAME]
    assert len(stars) == 2  # PCA of two nodes; t-SNE is not computed yet, and the note says so
    assert "t-SNE: not computed yet for these nodes and stimuli; open the Embeddings tab" in note
    assert any("PCA · conv2<br><sup>projected" in a.text for a in embed.layout.annotations)
    # the PCA star is the projection of the image's features onto the grid's own embedding
    spec = engine.spec(PROBE_VIEW["n_embed"])
    emb = engine.embedding("recurrent", "conv2", spec, "pca")
    pixels = prepare_image(read_image(decode_data_url(image)), engine.dataset)
    feats = engine._extractors["recurrent"](normalize(torch.from_numpy(pixels[None]), engine.dataset), ["conv2"])["conv2"]
    expected = pca_project(engine.features("recurrent", "conv2", spec), emb.coords, feats)[0]
    np.testing.assert_allclose([stars[0].x[0], stars[0].y[0]], expected, atol=1e-6)
    heat = rows.data[0]
    assert np.asarray(heat.z).shape == (2, engine.stimuli(spec).n) and list(heat.y) == ["conv2", "conv2_4"]
    assert heat.colorbar.title.text == "dissimilarity" and "correlation distance" in rows.layout.title.text
    # once the embeddings tab has computed t-SNE, the image is placed there too
    engine.embeddings("recurrent", ["conv2", "conv2_4"], spec, "tsne", perplexity=view["perplexity"])
    _seen, note, _probs, embed, _rows, message = probe.probe_figures(engine, image, view)
    stars = [t for t in embed.data if t.name == PROBE_NAME]
    assert message == "" and len(stars) == 4 and "not computed yet" not in note
    assert any("t-SNE · conv2_4<br><sup>at the mean of its 5 nearest stimuli" in a.text for a in embed.layout.annotations)
    lines = [t for t in embed.data if t.name == "its nearest stimuli"]
    assert len(lines) == 2 and len(lines[0].x) == 3 * 5  # a dotted line to each of the 5 neighbours


def test_another_datasets_model_prepares_and_names_by_its_descriptor(engine):
    fashion = next(m for m in engine.model_ids if engine.dataset_of(m).id != engine.dataset.id)
    info = engine.dataset_of(fashion)
    image, _ = _drawing(engine, 0)
    nodes = list(default_nodes(engine, fashion))
    view = _view(engine, tab="probe", model=fashion, nodes=nodes, attack_model=fashion, path_models=[fashion], n_embed=2, embed_methods=["pca"])
    _seen, note, probs, embed, rows, message = probe.probe_figures(engine, image, view)
    box = info.content_box or min(info.image_size)
    assert message == "" and f"Prepared like {info.name}'s images" in note and f"fit {box} × {box} pixels" in note
    assert list(probs.data[0].x) == list(info.class_names) and np.asarray(rows.data[0].z).shape[1] == 2 * info.n_classes
    assert len([t for t in embed.data if t.name == PROBE_NAME]) == len(view["nodes"])


def test_presentation_mode_restyles_the_probe_for_a_projector(engine):
    image, _ = _drawing(engine, 0)
    _seen, _note, probs, embed, rows, message = probe.probe_figures(engine, image, _view(engine, **PROBE_VIEW, mode="present"))
    assert message == ""
    for fig in (probs, embed, rows):
        assert fig.layout.font.size >= 18


def test_before_a_drawing_the_panels_say_what_to_do(engine):
    seen, note, probs, _embed, _rows, message = probe.probe_figures(engine, None, _view(engine, tab="probe"))
    assert seen == "" and message == "" and probe.DRAW_HINT in _text(probs)
    assert probe.probe_figures(engine, "data:image/png;base64,AAAA", _view(engine)) == (no_update,) * 6  # another tab: nothing


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (12345, "must be a PNG or JPEG data URL"),
        ("data:image/gif;base64,R0lGODlhAQABAAAAACw=", "only PNG and JPEG images are accepted, got image/gif"),
        ("data:image/png;base64,R0lGODlhAQABAAAAACw=", "only PNG and JPEG images are accepted (the file's first bytes"),
        ("data:image/png;base64,@@", "not valid base64"),
        ("data:image/png;base64," + "A" * (3 << 20), "larger than 2048 KiB"),
        ([1, 2, 3], "must be a PNG or JPEG data URL"),
    ],
)
def test_bad_images_get_a_one_line_message(engine, image, message):
    out = probe.probe_figures(engine, image, _view(engine, tab="probe"))
    assert out[:5] == (no_update,) * 5 and message in _text(out[5]) and "\\n" not in _text(out[5])


def test_bombs_blank_and_huge_images_are_refused(engine):
    view = _view(engine, tab="probe")
    url = _url(Image.new("L", (20_000, 20_000)))
    t0 = time.perf_counter()
    bomb = probe.probe_figures(engine, url, view)
    assert time.perf_counter() - t0 < 1.0 and "too many pixels; allowed: sides up to 2048" in _text(bomb[5])
    wide = probe.probe_figures(engine, _url(Image.new("L", (4000, 100))), view)
    assert "4000 × 100 pixels; allowed: sides up to 2048" in _text(wide[5])
    blank = probe.probe_figures(engine, _url(Image.new("L", (280, 280))), view)
    assert "the image is blank: draw a digit" in _text(blank[5])


def test_an_upload_reaches_the_store_only_when_it_is_a_png_or_jpeg():
    jpeg = _url(Image.new("RGB", (10, 10), (255, 255, 255)), "JPEG", "jpeg")
    assert probe.take_upload(None, jpeg) == (jpeg, "")
    assert probe.take_upload(None, None) == (no_update, no_update)
    refused = probe.take_upload(None, "data:application/pdf;base64,JVBERi0=")
    assert refused[0] is no_update and "only PNG and JPEG images are accepted, got application/pdf" in _text(refused[1])


def test_the_rate_bound_is_per_client_and_refills():
    now = [0.0]
    limit = probe.RateLimit(per_second=2.0, burst=3, clock=lambda: now[0])
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b")  # another client has its own bucket
    now[0] = 0.5  # one token back after half a second
    assert limit.allow("a") and not limit.allow("a")
    small = probe.RateLimit(burst=1, max_clients=2, clock=lambda: now[0])
    for c in ("x", "y", "z"):
        small.allow(c)
    assert small.allow("x")  # forgotten (the least recently seen), so a full bucket again


def test_a_refused_client_gets_a_message_and_no_work(engine):
    image, _ = _drawing(engine, 0)
    view = _view(engine, **PROBE_VIEW)
    limit = probe.RateLimit(per_second=0.001, burst=1)
    first = probe.probe_figures(engine, image, view, "10.0.0.1", limit)
    second = probe.probe_figures(engine, image, view, "10.0.0.1", limit)
    assert first[5] == "" and second[:5] == (no_update,) * 5
    assert "too many images from your address: at most 1 at once" in _text(second[5])
    assert probe.probe_figures(engine, image, view, "10.0.0.2", limit)[5] == ""


# ---------------------------------------------------------------------------- through Dash's endpoint
@pytest.fixture
def client_at(dash):
    """Send the next requests from another address (each test its own bucket of the app's bound)."""

    def use(address: str):
        dash.client.environ_base["REMOTE_ADDR"] = address
        return dash

    yield use
    dash.client.environ_base.pop("REMOTE_ADDR", None)


def test_the_probe_through_the_endpoint_with_hostile_images(client_at, engine):
    dash = client_at("10.9.0.1")
    values = {"probe-image.data": _drawing(engine, 40)[0], "view.data": _view(engine, **PROBE_VIEW)}
    r = dash.call("probe-seen.src", values, ["probe-image.data"])
    assert r.status_code == 200
    answer = r.get_json()["response"]
    assert answer["probe-probs"]["figure"]["data"][0]["type"] == "bar"
    assert any(t.get("name") == PROBE_NAME for t in answer["probe-embed"]["figure"]["data"])
    hostile = {
        "gif": "data:image/gif;base64,R0lGODlhAQABAAAAACw=",
        "bomb": _url(Image.new("L", (20_000, 20_000))),
        "html": "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "number": 1e308,
        "object": {"src": "../../etc/passwd"},
        "truncated": _url(Image.new("L", (50, 50), 255))[:60],
    }
    for name, image in hostile.items():
        t0 = time.perf_counter()
        r = dash.call("probe-seen.src", {**values, "probe-image.data": image}, ["probe-image.data"])
        text = r.get_data(as_text=True)
        assert time.perf_counter() - t0 < 1.0, name
        assert r.status_code == 200 and "Traceback" not in text, name
        assert "message-box error" in text and "probe-probs" not in r.get_json()["response"], name


def test_the_endpoint_bounds_each_client(client_at, engine):
    """Every image costs a token, read or refused: a client sending many quickly is refused with a message."""
    dash = client_at("10.9.0.2")
    view = _view(engine, tab="probe")
    burst = probe.RateLimit().burst
    texts = []
    for k in range(burst + 4):  # distinct bodies, so the response cache cannot answer them
        gif = "data:image/gif;base64," + base64.b64encode(b"GIF89a" + bytes([k])).decode()
        r = dash.call("probe-seen.src", {"probe-image.data": gif, "view.data": view}, ["probe-image.data"])
        assert r.status_code == 200
        texts.append(r.get_data(as_text=True))
    refused = [t for t in texts if "too many images from your address" in t]
    assert 3 <= len(refused) <= 4 and all("message-box" in t for t in refused)
    assert "too many images" not in "".join(texts[: burst - 1])
    other = client_at("10.9.0.3").call("probe-seen.src", {"probe-image.data": "data:image/gif;base64,R0lG", "view.data": view}, ["probe-image.data"])
    assert "only PNG and JPEG" in other.get_data(as_text=True)  # another address still gets its own answer


def test_the_probe_is_wired_to_the_store_and_the_view(app):
    key = next(k for k in app.callback_map if "probe-seen.src" in k)
    spec = app.callback_map[key]
    assert spec["inputs"] == [{"id": ID.PROBE_IMAGE, "property": "data"}, {"id": ID.VIEW, "property": "data"}]
    upload = next(k for k in app.callback_map if k.startswith("..probe-image.data"))
    assert app.callback_map[upload]["inputs"] == [{"id": ID.PROBE_UPLOAD, "property": "contents"}]
