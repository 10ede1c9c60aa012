"""Digit images as PNG data URIs for hover panels (no Plotly: small <img> tags)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

__all__ = ["digit_data_uri"]


def digit_data_uri(pixels: np.ndarray, scale: int = 3) -> str:
    """A (28, 28) image in [0, 1] as a ``data:image/png;base64,...`` URI, ink dark on white.

    Args:
        pixels: (H, W) floats in [0, 1].
        scale: integer upscaling (nearest neighbour) so digits stay crisp.
    """
    arr = (255 - np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
    img = Image.fromarray(arr, mode="L").resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
