"""Reading and writing 2-D images and label maps (PNG, JPEG, TIFF; GIF read only) with errors that name the file.

``read_image`` -> float32 ``[C, H, W]`` with the file's raw values (not normalised); ``read_mask`` -> int64
``[H, W]`` class indices. Palette PNG masks are read as their palette indices (as Pascal VOC stores them); GIF
masks, whose palette is only how the format stores gray levels (DRIVE's annotations and FOV), as gray values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["IMAGE_SUFFIXES", "READ_SUFFIXES", "is_image_file", "read_image", "read_mask", "write_image", "write_mask"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
READ_SUFFIXES = IMAGE_SUFFIXES + (".gif",)  # read, never listed as cases nor written
_GRAY = {"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_TO_RGB = {"P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


def is_image_file(path: str | Path) -> bool:
    """True for a file whose suffix is one of IMAGE_SUFFIXES (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _open(path: str | Path, what: str) -> Image.Image:
    """Open and fully decode one single-frame image, turning every failure into a clear error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{what} path must be a file, got a directory: {path}")
    if path.suffix.lower() not in READ_SUFFIXES:
        raise ValueError(f"{what} file {path} must be one of {', '.join(READ_SUFFIXES)}; got suffix {path.suffix!r}")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read {what} file {path} (corrupt or not an image): {e}") from e
    if getattr(img, "n_frames", 1) > 1:
        raise ValueError(f"{what} file {path} has {img.n_frames} frames/pages; expected a single 2-D image")
    return img


def read_image(path: str | Path) -> np.ndarray:
    """Read a 2-D image as float32 ``[C, H, W]``: grayscale C=1, colour C=3 (alpha dropped, palettes expanded)."""
    img = _open(path, "image")
    if img.mode == "LA":
        img = img.getchannel("L")
    elif img.mode in _TO_RGB:
        img = img.convert("RGB")
    elif img.mode not in _GRAY and img.mode != "RGB":
        raise ValueError(f"image file {path} has unsupported mode {img.mode!r}; expected grayscale or RGB")
    arr = np.asarray(img)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr, dtype=np.float32)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a 2-D label map as int64 ``[H, W]``; a 3-channel mask is accepted only if its channels are equal."""
    img = _open(path, "mask")
    if img.format == "GIF" and img.mode in ("P", "PA"):
        img = img.convert("RGB")  # gray levels through the palette; a colour palette is refused below
    if img.mode in ("LA", "PA"):
        img = img.getchannel(0)
    if img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img)[..., :3]
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()):
            raise ValueError(f"mask file {path} is a colour ({img.mode}) image; expected a single-channel label map "
                             "(grayscale or palette PNG whose values are class indices)")
        return rgb[..., 0].astype(np.int64)
    if img.mode not in _GRAY and img.mode != "P":
        raise ValueError(f"mask file {path} has unsupported mode {img.mode!r}; expected a single-channel label map")
    arr = np.asarray(img)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"mask file {path} holds non-integer values; expected class indices")
    if arr.min(initial=0) < 0:
        raise ValueError(f"mask file {path} holds negative labels (min {int(arr.min())}); expected class indices >= 0")
    return arr.astype(np.int64)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 or uint16 ``[C, H, W]`` (C = 1 or 3) image losslessly; the format follows the suffix."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be [C, H, W] with C = 1 or 3, got shape {tuple(image.shape)}")
    if image.dtype not in (np.uint8, np.uint16) or (image.dtype == np.uint16 and image.shape[0] == 3):
        raise ValueError(f"image dtype must be uint8 (or uint16 when C = 1), got {image.dtype} with C = {image.shape[0]}")
    arr = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    Image.fromarray(np.ascontiguousarray(arr)).save(Path(path))


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write an integer ``[H, W]`` label map as 8-bit (labels < 256) or 16-bit PNG/TIFF."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {tuple(mask.shape)}")
    if mask.size and (mask.min() < 0 or mask.max() > 65535):
        raise ValueError(f"mask labels must be in [0, 65535], got [{mask.min()}, {mask.max()}]")
    dtype = np.uint8 if mask.size == 0 or mask.max() < 256 else np.uint16
    Image.fromarray(np.ascontiguousarray(mask.astype(dtype))).save(Path(path))
