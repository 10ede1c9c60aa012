"""A new image through a model: reading it safely, preparing it like the dataset's images, and placing it among the stimuli.

Design notes:
    *Untrusted bytes.* An image arrives as a ``data:`` URL from the browser (the drawing
    canvas or an upload). :func:`decode_data_url` bounds the text before decoding it;
    :func:`read_image` accepts PNG and JPEG only (by their magic bytes and by Pillow's
    format list), and checks the declared width, height and pixel count *before* any
    pixel is decoded, so a small file that declares a huge image (a decompression bomb)
    costs a header read. Every refusal is a :class:`~repgeom.core.errors.RepgeomError`
    of one line naming what is allowed.

    *Like the dataset's images.* MNIST digits were scaled to fit a 20 × 20 box and
    placed in the 28 × 28 field with their centre of mass at its centre (LeCun et al.).
    :func:`prepare_image` does the same for any dataset from its
    :class:`~repgeom.core.datasets.DatasetInfo`: the content's bounding box is scaled
    (aspect kept, anti-aliased) to fit ``content_box`` pixels and placed by its centre
    of mass or its box, in an image of the dataset's size and channels. Dark ink on a
    light background (a photo of paper) is inverted first, so the ink is bright as in
    the dataset. The result is pixels in [0, 1]; the dataset's normalisation is applied
    by :func:`~repgeom.core.stimuli.normalize` when a model sees it, as for every stimulus.

    *Where it lands.* PCA is a linear map, so a new point is projected exactly: the
    components follow from the stimuli's features and their 2-D scores
    (:func:`pca_project`). MDS and t-SNE have no map for a new point; it is placed at the
    mean 2-D position of its ``k`` nearest stimuli in feature space
    (:func:`place_by_neighbours`). Its dissimilarities to the stimuli use the RDM's own
    definitions (:func:`dissimilarity_rows`).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

import numpy as np
import torch

from .datasets import DatasetInfo
from .errors import RepgeomError, choice_error
from .rdm import RDM_METHODS

__all__ = [
    "ImageLimits",
    "decode_data_url",
    "dissimilarity_rows",
    "pca_project",
    "place_by_neighbours",
    "prepare_image",
    "read_image",
]

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_DATA_URL = re.compile(r"data:image/(png|jpeg|jpg);base64", re.IGNORECASE)
#: Grey levels below this fraction of the brightest are background when finding the content's box.
INK_THRESHOLD = 0.1


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on an image read from a client.

    Attributes:
        max_bytes: largest file (decoded from base64), in bytes.
        max_side: largest width or height, in pixels.
        max_pixels: largest width × height.
    """

    max_bytes: int = 2 << 20
    max_side: int = 2048
    max_pixels: int = 2048 * 2048


def decode_data_url(url: object, limits: ImageLimits = ImageLimits()) -> bytes:
    """The file bytes of a ``data:image/png;base64,...`` (or ``image/jpeg``) URL.

    Args:
        url: the untrusted value.
        limits: bounds on the decoded size.

    Returns:
        The decoded bytes (at most ``limits.max_bytes``).

    Raises:
        RepgeomError: not a string, not a PNG/JPEG base64 data URL, larger than allowed, or
            not valid base64.
    """
    if not isinstance(url, str):
        raise RepgeomError("the image must be a PNG or JPEG data URL (data:image/png;base64,...)")
    head, comma, body = url[:64].partition(",")
    if not comma or not _DATA_URL.fullmatch(head):
        kind = head.split(";")[0][5:] if head.startswith("data:") else "not a data URL"
        raise RepgeomError(f"only PNG and JPEG images are accepted, got {kind[:30] or 'nothing'}")
    encoded = len(url) - len(head) - 1
    if encoded > 4 * (-(-limits.max_bytes // 3)) + 4:
        raise RepgeomError(f"the image file is larger than {limits.max_bytes // 1024} KiB; allowed: up to {limits.max_bytes // 1024} KiB")
    try:
        data = base64.b64decode(url[len(head) + 1 :], validate=True)
    except (binascii.Error, ValueError):
        raise RepgeomError("the image is not valid base64; send a PNG or JPEG data URL") from None
    if len(data) > limits.max_bytes:
        raise RepgeomError(f"the image file is larger than {limits.max_bytes // 1024} KiB; allowed: up to {limits.max_bytes // 1024} KiB")
    return data


def read_image(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Decode a PNG or JPEG into RGB pixels, refusing anything else or anything too large before decoding it.

    Transparent pixels are composited over white (a drawing on a transparent sheet reads
    as ink on paper).

    Args:
        data: the file's bytes.
        limits: bounds on the file and the image.

    Returns:
        (H, W, 3) float32 in [0, 1].

    Raises:
        RepgeomError: not PNG/JPEG, too many bytes, a side or the pixel count over the
            limits (checked from the header, before decoding), or an unreadable file.
    """
    from PIL import Image  # noqa: PLC0415 - Pillow only where an image is read

    if not isinstance(data, (bytes, bytearray)) or not (data.startswith(_PNG) or data.startswith(_JPEG)):
        raise RepgeomError("only PNG and JPEG images are accepted (the file's first bytes say it is neither)")
    if len(data) > limits.max_bytes:
        raise RepgeomError(f"the image file is larger than {limits.max_bytes // 1024} KiB; allowed: up to {limits.max_bytes // 1024} KiB")
    try:
        with Image.open(io.BytesIO(bytes(data)), formats=("PNG", "JPEG")) as img:
            width, height = img.size
            if max(width, height) > limits.max_side or width * height > limits.max_pixels:
                raise RepgeomError(
                    f"the image is {width} × {height} pixels; allowed: sides up to {limits.max_side} and up to {limits.max_pixels:,} pixels"
                )
            if width < 1 or height < 1:
                raise RepgeomError("the image has no pixels")
            img.load()
            rgba = img.convert("RGBA")
    except RepgeomError:
        raise
    except Image.DecompressionBombError:  # Pillow's own bound, far above ours, hit while reading the header
        raise RepgeomError(f"the image declares too many pixels; allowed: sides up to {limits.max_side} and up to {limits.max_pixels:,} pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError):
        raise RepgeomError("the image could not be read as PNG or JPEG (damaged or truncated file)") from None
    arr = np.asarray(rgba, dtype=np.float32) / np.float32(255.0)
    alpha = arr[..., 3:4]
    return np.ascontiguousarray(arr[..., :3] * alpha + (1.0 - alpha))


def _resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """(C, h, w) -> (C, height, width), bilinear with anti-aliasing (area-like when shrinking)."""
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None]
    out = torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return out[0].clamp_(0.0, 1.0).numpy()


def prepare_image(rgb: np.ndarray, dataset: DatasetInfo) -> np.ndarray:
    """Prepare an image like the dataset's: ink bright, content fitted to its box and centred.

    Args:
        rgb: (H, W, 3) float in [0, 1] (from :func:`read_image`), or (H, W) grey.
        dataset: the dataset whose images the model knows (size, channels, ``content_box``,
            ``centring``).

    Returns:
        (C, H', W') float32 in [0, 1], (C, H', W') = ``dataset.input_shape``.

    Raises:
        RepgeomError: for an image with no content (blank, or a single grey level).
    """
    arr = np.asarray(rgb, dtype=np.float32)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise RepgeomError(f"an image must be (H, W) or (H, W, 3), got shape {arr.shape}")
    arr = np.nan_to_num(np.clip(arr, 0.0, 1.0))
    grey = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    if background > 0.5:  # dark ink on a light background: make the ink bright
        arr, grey, background = 1.0 - arr, 1.0 - grey, 1.0 - background
    grey = np.clip(grey - background, 0.0, None)  # the background becomes 0, as in the dataset
    peak = float(grey.max())
    if peak < 0.05:
        raise RepgeomError("the image is blank: draw a digit (or upload an image with something on it)")
    rows = np.flatnonzero((grey > INK_THRESHOLD * peak).any(axis=1))
    cols = np.flatnonzero((grey > INK_THRESHOLD * peak).any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    content = arr[r0:r1, c0:c1].transpose(2, 0, 1) if dataset.channels == 3 else grey[None, r0:r1, c0:c1] / max(peak, 1e-6)
    out_h, out_w = dataset.image_size
    box = dataset.content_box or min(out_h, out_w)
    h, w = r1 - r0, c1 - c0
    scale = box / max(h, w)
    new_h, new_w = max(1, min(out_h, round(h * scale))), max(1, min(out_w, round(w * scale)))
    small = _resize(content, new_h, new_w)
    if dataset.centring == "mass":
        weight = small.sum(axis=0)
        total = float(weight.sum())
        cy = float((weight.sum(axis=1) * np.arange(new_h)).sum() / total) if total > 0 else (new_h - 1) / 2
        cx = float((weight.sum(axis=0) * np.arange(new_w)).sum() / total) if total > 0 else (new_w - 1) / 2
        top, left = round((out_h - 1) / 2 - cy), round((out_w - 1) / 2 - cx)
    else:
        top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    canvas = np.zeros((small.shape[0], out_h, out_w), dtype=np.float32)
    ys, xs = slice(max(top, 0), min(top + new_h, out_h)), slice(max(left, 0), min(left + new_w, out_w))
    canvas[:, ys, xs] = small[:, ys.start - top : ys.stop - top, xs.start - left : xs.stop - left]
    return canvas


def _as64(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.reshape(t.shape[0], -1).to(device="cpu", dtype=torch.float64)


def pca_project(features: torch.Tensor | np.ndarray, coords: np.ndarray, new: torch.Tensor | np.ndarray) -> np.ndarray:
    """Project new points into a PCA embedding of ``features`` whose scores are ``coords``.

    The scores of centred features ``X`` are ``Y = X V`` with ``V`` the unit principal
    axes, and ``Xᵀ Y = V Λ`` with ``Λ`` the squared norms of ``Y``'s columns, so the
    axes (with the embedding's own signs) are ``Xᵀ Y Λ⁻¹`` and a new point ``x`` lands at
    ``(x - mean) V``: exactly where ``sklearn.decomposition.PCA.transform`` puts it.

    Args:
        features: (N, D) the stimuli's features (higher dims flattened).
        coords: (N, 2) their PCA scores (the embedding).
        new: (M, D) features of the new points.

    Returns:
        (M, 2) float64 coordinates (an axis with zero variance gives 0).
    """
    x = _as64(features)
    mean = x.mean(dim=0, keepdim=True)
    y = torch.from_numpy(np.asarray(coords, dtype=np.float64))
    lam = (y**2).sum(dim=0)
    axes = (x - mean).T @ y / torch.where(lam > 0, lam, torch.ones_like(lam))
    return ((_as64(new) - mean) @ axes).numpy()


def place_by_neighbours(
    features: torch.Tensor | np.ndarray, coords: np.ndarray, new: torch.Tensor | np.ndarray, k: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Place new points in a 2-D embedding at the mean position of their ``k`` nearest stimuli in feature space.

    Args:
        features: (N, D) the stimuli's features.
        coords: (N, 2) their positions in the embedding.
        new: (M, D) features of the new points.
        k: neighbours (at most N).

    Returns:
        ``(positions, neighbours, distances)``: (M, 2) float64, (M, k) stimulus rows
        nearest first, (M, k) their Euclidean distances in feature space.
    """
    x, z = _as64(features), _as64(new)
    k = max(1, min(int(k), x.shape[0]))
    d2 = (z**2).sum(dim=1, keepdim=True) - 2.0 * z @ x.T + (x**2).sum(dim=1)[None, :]
    dist, idx = torch.topk(d2.clamp_(min=0.0), k, dim=1, largest=False)
    rows = idx.numpy()
    return np.asarray(coords, dtype=np.float64)[rows].mean(axis=1), rows, dist.sqrt().numpy()


def dissimilarity_rows(features: torch.Tensor | np.ndarray, new: torch.Tensor | np.ndarray, method: str = "correlation") -> np.ndarray:
    """Dissimilarities of new points to every stimulus, as the RDM of ``method`` defines them.

    Args:
        features: (N, D) the stimuli's features.
        new: (M, D) features of the new points.
        method: one of :data:`~repgeom.core.rdm.RDM_METHODS`: ``"correlation"``
            (1 - Pearson r), ``"euclidean"`` (squared Euclidean distance / D) or
            ``"cosine"`` (1 - cosine similarity).

    Returns:
        (M, N) float64. As in :func:`~repgeom.core.rdm.compute_rdm`, a pattern with zero
        variance (correlation) or zero norm (cosine) has dissimilarity 1 to every other.

    Raises:
        RepgeomError: for an unknown method.
    """
    if method not in RDM_METHODS:
        raise choice_error("RDM method", method, RDM_METHODS)
    x, z = _as64(features), _as64(new)
    if x.shape[1] != z.shape[1]:
        raise RepgeomError(f"the new points have {z.shape[1]} features, the stimuli {x.shape[1]}")
    if method == "euclidean":  # |z|² + |x|² - 2 z·x after removing the mean pattern (less cancellation)
        mean = x.mean(dim=0, keepdim=True)
        x, z = x - mean, z - mean
        d2 = (z**2).sum(dim=1, keepdim=True) - 2.0 * z @ x.T + (x**2).sum(dim=1)[None, :]
        return (d2.clamp_(min=0.0) / x.shape[1]).numpy()
    if method == "correlation":
        x, z = x - x.mean(dim=1, keepdim=True), z - z.mean(dim=1, keepdim=True)
    nx, nz = torch.linalg.vector_norm(x, dim=1), torch.linalg.vector_norm(z, dim=1)
    xs = x / torch.where(nx > 0, nx, torch.ones_like(nx))[:, None]
    zs = z / torch.where(nz > 0, nz, torch.ones_like(nz))[:, None]
    return (1.0 - zs @ xs.T).numpy()
