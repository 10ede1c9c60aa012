"""A new image through a model: safe reading, MNIST-style preparation, projection, placement and dissimilarity rows (against scikit-learn and scipy)."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from repgeom.core.datasets import DatasetInfo
from repgeom.core.embedding.pca import pca_2d
from repgeom.core.errors import RepgeomError
from repgeom.core.probe import ImageLimits, decode_data_url, dissimilarity_rows, pca_project, place_by_neighbours, prepare_image, read_image
from repgeom.core.rdm import RDM_METHODS, compute_rdm
from repgeom.core.stimuli import normalize


def _png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _url(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


# ---------------------------------------------------------------------------- reading untrusted images
def test_png_and_jpeg_data_urls_are_read():
    img = Image.new("RGB", (30, 20), (10, 200, 30))
    for fmt, kind in (("PNG", "png"), ("JPEG", "jpeg")):
        pixels = read_image(decode_data_url(_url(_png(img, fmt), kind)))
        assert pixels.shape == (20, 30, 3) and pixels.dtype == np.float32
        assert pixels[..., 1].mean() == pytest.approx(200 / 255, abs=0.02)


def test_transparent_pixels_read_as_white_paper():
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    img.putpixel((3, 3), (0, 0, 0, 255))
    pixels = read_image(_png(img))
    assert pixels[0, 0].tolist() == [1.0, 1.0, 1.0] and pixels[3, 3].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "PNG or JPEG data URL"),
        (12, "PNG or JPEG data URL"),
        ("data:image/gif;base64,R0lGODlhAQABAAAAACw=", "only PNG and JPEG images are accepted, got image/gif"),
        ("data:text/html;base64,PHNjcmlwdD4=", "only PNG and JPEG images are accepted, got text/html"),
        ("../../etc/passwd", "only PNG and JPEG images are accepted, got not a data URL"),
        ("data:image/png;base64,@@@notbase64@@@", "not valid base64"),
        ("data:image/png;base64," + "A" * (3 << 20), "larger than 2048 KiB"),
    ],
)
def test_bad_data_urls_are_refused_with_one_line(url, message):
    with pytest.raises(RepgeomError, match=message) as err:
        decode_data_url(url)
    assert "\n" not in str(err.value)


def test_a_gif_or_text_behind_a_png_label_is_refused_by_its_bytes():
    gif = _png(Image.new("L", (4, 4)), "GIF")
    with pytest.raises(RepgeomError, match="only PNG and JPEG"):
        read_image(decode_data_url(_url(gif)))
    with pytest.raises(RepgeomError, match="only PNG and JPEG"):
        read_image(b"<svg xmlns='http://www.w3.org/2000/svg'/>")


def test_a_decompression_bomb_is_refused_from_its_header():
    bomb = _png(Image.new("L", (20_000, 20_000)))  # 400 M pixels in a few hundred KB of zeros
    assert len(bomb) < 2 << 20
    t0 = time.perf_counter()
    with pytest.raises(RepgeomError, match=r"too many pixels; allowed: sides up to 2048"):
        read_image(decode_data_url(_url(bomb)))  # past Pillow's own bound: refused while reading the header
    wide = _png(Image.new("L", (9000, 300)))
    with pytest.raises(RepgeomError, match=r"9000 × 300 pixels; allowed: sides up to 2048"):
        read_image(decode_data_url(_url(wide)))
    assert time.perf_counter() - t0 < 1.0  # the header only: decoding it would take seconds and 400 MB
    with pytest.raises(RepgeomError, match="allowed: sides up to 64 and up to 100 pixels"):
        read_image(_png(Image.new("L", (20, 20))), ImageLimits(max_side=64, max_pixels=100))


def test_too_many_bytes_and_truncated_files_are_refused():
    noisy = _png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)))
    with pytest.raises(RepgeomError, match="larger than 10 KiB"):
        decode_data_url(_url(noisy), ImageLimits(max_bytes=10 << 10))
    with pytest.raises(RepgeomError, match="larger than 10 KiB"):
        read_image(noisy, ImageLimits(max_bytes=10 << 10))
    with pytest.raises(RepgeomError, match="could not be read as PNG or JPEG"):
        read_image(noisy[: len(noisy) // 2])


# ---------------------------------------------------------------------------- preparing like the dataset
def test_a_drawing_is_fitted_to_the_content_box_and_centred_by_mass(engine):
    mnist = engine.dataset
    assert (mnist.content_box, mnist.centring) == (20, "mass")
    canvas = np.zeros((280, 280, 3), np.float32)
    canvas[30:130, 200:240] = 1.0  # a bar, off-centre: 100 tall, 40 wide
    px = prepare_image(canvas, mnist)
    assert px.shape == mnist.input_shape and px.dtype == np.float32 and 0 <= px.min() and px.max() <= 1
    rows = np.flatnonzero(px[0].max(axis=1) > 0.5)
    assert rows[-1] - rows[0] + 1 == 20  # the longer side fills the 20-pixel box
    w = px[0]
    cy, cx = (w.sum(1) * np.arange(28)).sum() / w.sum(), (w.sum(0) * np.arange(28)).sum() / w.sum()
    assert abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5
    inverted = prepare_image(1.0 - canvas, mnist)  # dark ink on white paper gives the same digit
    np.testing.assert_allclose(inverted, px, atol=1e-5)


def test_another_dataset_shape_comes_from_its_descriptor():
    tiles = DatasetInfo("tiles", "Tiles", tuple("abc"), 3, (16, 12), (0.5,), (0.25,), content_box=0, centring="box")
    img = np.ones((50, 50, 3), np.float32)
    img[10:20, 5:45] = [1.0, 0.0, 0.0]  # red ink on white
    px = prepare_image(img, tiles)
    assert px.shape == (3, 16, 12)
    assert np.flatnonzero(px.max(axis=(0, 1)) > 0.5).size == 12  # the box is the whole (narrower) side


def test_a_blank_image_is_refused():
    with pytest.raises(RepgeomError, match="the image is blank: draw a digit"):
        prepare_image(np.zeros((100, 100, 3), np.float32), DatasetInfo("d", "D", ("a", "b"), 1, (28, 28), (0.5,), (0.5,)))


def test_real_mnist_digits_drawn_large_and_off_centre_are_classified_as_the_originals(engine):
    """The embedded probes are MNIST test digits: drawn 10× larger, off-centre, dark on white, as a PNG."""
    model = engine.models["recurrent"].module
    src, dataset = engine.source, engine.dataset
    picks = np.arange(0, src.labels.size, 10)[:100]
    prepared = []
    for i in picks:
        big = Image.fromarray(255 - src.images[i, 0]).resize((280, 280), Image.BILINEAR)
        sheet = Image.new("L", (420, 330), 255)
        sheet.paste(big, (120, 40))
        prepared.append(prepare_image(read_image(_png(sheet)), dataset))
    with torch.no_grad():
        pred = model(normalize(torch.from_numpy(np.stack(prepared)), dataset)).argmax(1).numpy()
        orig = model(normalize(torch.from_numpy(src.images[picks].astype(np.float32) / 255), dataset)).argmax(1).numpy()
    labels = src.labels[picks]
    assert (pred == labels).mean() >= 0.95 and (orig == labels).mean() >= 0.95
    assert (pred == orig).mean() >= 0.95


# ---------------------------------------------------------------------------- where a new point lands
def test_pca_projection_matches_sklearn_transform():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 9)) * np.linspace(3, 0.3, 9) + 2.0
    new = rng.normal(size=(4, 9))
    coords = pca_2d(torch.from_numpy(x)).numpy()
    ours = pca_project(torch.from_numpy(x).float(), coords, torch.from_numpy(new).float())
    sk = PCA(2).fit(x)
    signs = np.sign((sk.transform(x) * coords).sum(axis=0))  # the embedding's own signs
    np.testing.assert_allclose(ours, sk.transform(new) * signs, atol=1e-5)
    np.testing.assert_allclose(pca_project(x, coords, x), coords, atol=1e-9)  # the stimuli land on themselves
    wide = rng.normal(size=(12, 40))  # N < D: the scores come from the Gram matrix
    wc = pca_2d(torch.from_numpy(wide)).numpy()
    sk = PCA(2).fit(wide)
    other = rng.normal(size=(3, 40))
    np.testing.assert_allclose(pca_project(wide, wc, other), sk.transform(other) * np.sign((sk.transform(wide) * wc).sum(0)), atol=1e-9)


def test_placement_is_the_mean_of_sklearns_nearest_neighbours():
    rng = np.random.default_rng(1)
    x, coords, new = rng.normal(size=(50, 6)), rng.normal(size=(50, 2)), rng.normal(size=(3, 6))
    xy, rows, dist = place_by_neighbours(x, coords, new, k=4)
    d, idx = NearestNeighbors(n_neighbors=4).fit(x).kneighbors(new)
    np.testing.assert_array_equal(rows, idx)
    np.testing.assert_allclose(dist, d, atol=1e-9)
    np.testing.assert_allclose(xy, coords[idx].mean(axis=1), atol=1e-12)


@pytest.mark.parametrize("method", RDM_METHODS)
def test_dissimilarity_rows_match_scipy_and_the_rdm(method):
    rng = np.random.default_rng(2)
    x, new = rng.normal(size=(30, 17)) + 0.5, rng.normal(size=(2, 17))
    rows = dissimilarity_rows(torch.from_numpy(x).float(), torch.from_numpy(new).float(), method)
    x32, n32 = x.astype(np.float32).astype(np.float64), new.astype(np.float32).astype(np.float64)
    oracle = {"correlation": cdist(n32, x32, "correlation"), "cosine": cdist(n32, x32, "cosine"), "euclidean": cdist(n32, x32, "sqeuclidean") / 17}
    np.testing.assert_allclose(rows, oracle[method], atol=1e-10)
    full = compute_rdm(torch.from_numpy(np.vstack([x32, n32[:1]])), method).numpy()  # the RDM of stimuli + image: its last row
    np.testing.assert_allclose(rows[0], full[-1, :-1], atol=1e-10)
    with pytest.raises(RepgeomError, match="allowed: correlation, euclidean, cosine"):
        dissimilarity_rows(x, new, "manhattan")


# ---------------------------------------------------------------------------- through the engine
def test_a_stimulus_sent_as_a_probe_lands_on_itself(engine):
    spec = engine.spec(6)
    assert not engine.embeddings_ready("recurrent", ["conv2", "conv2_4"], spec, "tsne")
    stim = engine.stimuli(spec)
    row = 17
    result = engine.probe("recurrent", stim.pixels[row], ["conv2", "conv2_4"], spec, "correlation", ("pca", "tsne"))
    assert engine.embeddings_ready("recurrent", ["conv2", "conv2_4"], spec, "tsne")  # the probe computed them, as the engine asked
    dataset = engine.dataset
    assert result.probabilities.shape == (dataset.n_classes,) and result.probabilities.sum() == pytest.approx(1, abs=1e-5)
    assert int(result.probabilities.argmax()) == int(stim.labels[row])
    for node in result.nodes:
        assert result.rows[node].shape == (stim.n,) and result.rows[node][row] == pytest.approx(0, abs=1e-6)
        assert int(np.argmin(result.rows[node])) == row
    for place in result.places["pca"]:
        np.testing.assert_allclose(place.xy, place.embedding.coords[row], atol=1e-4)
        assert place.neighbours.size == 0
    for place in result.places["tsne"]:
        assert place.neighbours[0] == row and place.neighbours.size == 5
        np.testing.assert_allclose(place.xy, place.embedding.coords[place.neighbours].mean(axis=0))
    with pytest.raises(RepgeomError, match=r"must be \(1, 28, 28\) pixels in \[0, 1\]"):
        engine.probe("recurrent", np.ones((3, 28, 28)), ["conv2"], spec)
    with pytest.raises(RepgeomError, match="unknown embedding method"):
        engine.probe("recurrent", stim.pixels[0], ["conv2"], spec, methods=("umap",))
