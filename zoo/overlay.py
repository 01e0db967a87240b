"""Colour overlays of 2-D label maps on their images, for looking at predictions (PNG)."""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["class_colors", "overlay_rgb", "save_overlay"]

# Distinct colours for the first classes (tab10-like); more classes get evenly spaced hues.
_BASE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
         (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def class_colors(num_classes: int) -> np.ndarray:
    """``[num_classes, 3]`` uint8 colours; class 0 (background) is black and is left uncoloured in overlays."""
    cols = [(0, 0, 0)] + _BASE[: max(num_classes - 1, 0)]
    extra = num_classes - len(cols)
    for i in range(max(extra, 0)):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.8, 0.95)
        cols.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.array(cols[:num_classes], dtype=np.uint8).reshape(num_classes, 3)


def _display_rgb(image: np.ndarray) -> np.ndarray:
    """A ``[C, H, W]`` image as uint8 ``[H, W, 3]``: first three channels (or the first, as gray), 0.5-99.5 %ile."""
    img = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    lo, hi = np.percentile(img, [0.5, 99.5])
    scaled = np.clip((img - lo) / max(hi - lo, 1e-8), 0, 1) * 255
    return np.moveaxis(scaled.astype(np.uint8), 0, -1)


def overlay_rgb(image: np.ndarray, labels: np.ndarray, num_classes: int, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours (``alpha``) over the image wherever the label is not background: uint8 ``[H, W, 3]``."""
    if image.shape[1:] != labels.shape:
        raise ValueError(f"image spatial shape {image.shape[1:]} does not match label shape {labels.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = _display_rgb(image).astype(np.float32)
    colours = class_colors(num_classes)[np.clip(labels, 0, num_classes - 1)].astype(np.float32)
    fg = (labels > 0)[..., None]
    out = np.where(fg, (1 - alpha) * base + alpha * colours, base)
    return out.round().astype(np.uint8)


def save_overlay(path: str | Path, image: np.ndarray, labels: np.ndarray, num_classes: int,
                 alpha: float = 0.5) -> Path:
    """Write `overlay_rgb` as an RGB PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_rgb(image, labels, num_classes, alpha)).save(path)
    return path
