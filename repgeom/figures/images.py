"""Stimulus images as PNG data URIs for the hover panel (no Plotly: small ``<img>`` tags)."""

from __future__ import annotations

import base64
import io

import numpy as np

__all__ = ["image_data_uri"]


def image_data_uri(pixels: np.ndarray, size: int = 84, invert_grey: bool = True) -> str:
    """One image as a ``data:image/png;base64,...`` URI about ``size`` pixels on its longer side.

    Small images are enlarged by a whole factor with nearest-neighbour sampling (pixels stay
    crisp); large ones are reduced with a Lanczos filter. Grey images are drawn dark on
    white by default (ink on paper); colour images as they are.

    Args:
        pixels: (C, H, W) with C = 1 (grey) or 3 (RGB), or (H, W) grey; floats in [0, 1].
        size: the longer side of the drawn image, in pixels.
        invert_grey: draw grey images dark on white.

    Raises:
        ValueError: for another shape or channel count.
    """
    from PIL import Image

    arr = np.asarray(pixels, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or min(arr.shape[1:]) < 1:
        raise ValueError(f"an image must be (H, W), (1, H, W) or (3, H, W), got shape {tuple(np.shape(pixels))}")
    arr = np.nan_to_num(np.clip(arr, 0.0, 1.0))
    grey = arr.shape[0] == 1
    if grey and invert_grey:
        arr = 1.0 - arr
    data = (arr * 255).round().astype(np.uint8)
    img = Image.fromarray(data[0], mode="L") if grey else Image.fromarray(np.ascontiguousarray(data.transpose(1, 2, 0)), mode="RGB")
    h, w = data.shape[1:]
    longer = max(h, w)
    if longer <= size:
        factor = max(1, size // longer)
        img = img.resize((w * factor, h * factor), Image.NEAREST)
    else:
        img = img.resize((max(1, round(w * size / longer)), max(1, round(h * size / longer))), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
