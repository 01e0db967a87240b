"""Case files for `zoo predict` and `zoo eval`: listing and stem matching, NIfTI volumes, 2-D vs 3-D dispatch.

2-D images (PNG/JPEG/TIFF) are read by `zoo.data.io`, as training reads them. Arrays are channel-first
``[C, *spatial]`` for images and ``[*spatial]`` for label maps. 2-D arrays are
``[H, W]`` (PIL's row-major order); NIfTI arrays keep nibabel's voxel order ``[X, Y, Z]``, so a label map
written back with the input's affine and header lines up with the input in any viewer.

Probability maps (`zoo predict --save-probs`) hold every class, background included, as float32 so that ranking
metrics (ROC AUC) read back exactly what the model gave: ``<stem>_prob.tif`` for 2-D (multi-page TIFF, page k =
class k, deflate-compressed) and ``<stem>_prob.nii.gz`` for 3-D (``[X, Y, Z, K]``, the input's affine).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import nibabel as nib
import numpy as np

from PIL import Image, features

from zoo.data.cases import NIFTI_SUFFIXES, SUPPORTED_SUFFIXES, is_nifti, split_name
from zoo.data.io import IMAGE_SUFFIXES, read_image, read_mask, write_mask

__all__ = ["IMAGE_SUFFIXES", "NIFTI_SUFFIXES", "SUPPORTED_SUFFIXES", "split_name", "is_nifti", "list_cases",
           "read_input", "read_nifti", "read_label_map", "write_label_map", "label_dtype", "PROB_SUFFIX",
           "prob_map_name", "find_prob_map", "write_prob_map", "read_prob_map"]

PROB_SUFFIX = "_prob"
_PROB_SUFFIXES = (".tif", ".tiff") + NIFTI_SUFFIXES


def list_cases(path: str | Path, arg: str, suffixes: Iterable[str] = SUPPORTED_SUFFIXES) -> list[Path]:
    """The supported files a file-or-folder argument names (a folder: its direct children, sorted).

    Raises ``FileNotFoundError`` naming ``arg`` when the path is missing and ``ValueError`` when it holds no
    supported file or has an unsupported suffix.
    """
    p = Path(path)
    suffixes = tuple(suffixes)
    if not p.exists():
        raise FileNotFoundError(f"{arg}: path {str(p)!r} does not exist")
    if p.is_file():
        if split_name(p)[1] not in suffixes:
            raise ValueError(f"{arg}: file {str(p)!r} has an unsupported suffix; expected one of {list(suffixes)}")
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and split_name(f)[1] in suffixes)
    if not files:
        raise ValueError(f"{arg}: folder {str(p)!r} holds no file ending in any of {list(suffixes)}")
    return files


def read_input(path: str | Path) -> tuple[np.ndarray, nib.Nifti1Image | None]:
    """An input image as raw float32 ``[C, *spatial]`` plus, for NIfTI, the image whose affine/header to keep."""
    if is_nifti(path):
        return read_nifti(path)
    return read_image(path), None


def _load_nifti(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(str(path))
        img.get_fdata(caching="unchanged")  # decode now so a truncated file fails here, naming the file
    except Exception as err:  # nibabel/gzip/zlib raise many types for corrupt files
        raise ValueError(f"cannot read NIfTI file {str(path)!r}: {err}") from err
    return img


def read_nifti(path: str | Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """A NIfTI volume as float32 ``[C, X, Y, Z]`` (a 4-D file's last axis is the channel axis) plus the image."""
    path = Path(path)
    img = _load_nifti(path)
    arr = np.asarray(img.get_fdata(dtype=np.float32))
    if arr.ndim == 3:
        arr = arr[None]
    elif arr.ndim == 4:
        arr = np.moveaxis(arr, -1, 0)
    else:
        raise ValueError(f"NIfTI file {str(path)!r} must be 3-D [X, Y, Z] or 4-D [X, Y, Z, C], got shape {arr.shape}")
    return np.ascontiguousarray(arr), img


def read_label_map(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """An integer label map ``[*spatial]`` (int64) and its pixel/voxel spacing (NIfTI zooms; 1.0 for images).

    Raises ValueError naming the file for corrupt files, multi-channel images, non-integer or negative values.
    """
    path = Path(path)
    if not is_nifti(path):
        return read_mask(path), (1.0, 1.0)
    img = _load_nifti(path)
    arr = np.asarray(img.dataobj)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    spacing = tuple(float(z) for z in img.header.get_zooms()[: arr.ndim])
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"label map {str(path)!r} must hold integer class indices, got non-integer values")
    elif arr.dtype.kind not in "uib":
        raise ValueError(f"label map {str(path)!r} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"label map {str(path)!r} must hold class indices >= 0, got minimum {arr.min()}")
    return arr, spacing


def label_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned dtype holding labels ``0..num_classes-1`` (uint8 up to 256 classes, else uint16)."""
    if num_classes > 65536:
        raise ValueError(f"num_classes must be <= 65536 to save label maps, got {num_classes}")
    return np.dtype(np.uint8 if num_classes <= 256 else np.uint16)


def write_label_map(path: str | Path, labels: np.ndarray, num_classes: int,
                    reference: nib.Nifti1Image | None = None) -> Path:
    """Save a label map: NIfTI with ``reference``'s affine and header, else a single-channel PNG/TIFF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if reference is not None:
        return write_label_nifti(path, labels, reference, num_classes)
    write_mask(path, labels)
    return path


def write_label_nifti(path: str | Path, labels: np.ndarray, reference: nib.Nifti1Image, num_classes: int) -> Path:
    """Save a 3-D label map with the reference image's affine and header (dtype and scaling set for labels)."""
    if labels.shape != reference.shape[:3]:
        raise ValueError(f"label map shape {labels.shape} does not match the reference volume {reference.shape[:3]}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = reference.header.copy()
    dtype = label_dtype(num_classes)
    header.set_data_dtype(dtype)
    out = type(reference)(labels.astype(dtype), reference.affine, header=header)
    out.header.set_slope_inter(1.0, 0.0)  # labels are stored unscaled whatever the input's scaling was
    out.header["cal_min"], out.header["cal_max"] = 0, 0  # the input's display window means nothing for labels
    nib.save(out, str(path))
    return path



def prob_map_name(stem: str, nifti: bool) -> str:
    """File name of a case's probability map: ``<stem>_prob.nii.gz`` (3-D) or ``<stem>_prob.tif`` (2-D)."""
    return stem + PROB_SUFFIX + (".nii.gz" if nifti else ".tif")


def find_prob_map(folder: str | Path, stem: str) -> Path | None:
    """The probability map of case ``stem`` in ``folder`` (any of .tif/.tiff/.nii.gz/.nii), or None."""
    for suffix in _PROB_SUFFIXES:
        path = Path(folder) / (stem + PROB_SUFFIX + suffix)
        if path.is_file():
            return path
    return None


def write_prob_map(path: str | Path, probs: np.ndarray, reference: nib.Nifti1Image | None = None) -> Path:
    """Save class probabilities ``[K, *spatial]`` as float32: NIfTI ``[X, Y, Z, K]`` with ``reference``'s affine,
    else a K-page TIFF (page k = class k)."""
    path = Path(path)
    probs = np.asarray(probs, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if reference is not None:
        if probs.ndim != 4 or probs.shape[1:] != reference.shape[:3]:
            raise ValueError(f"probability map shape {list(probs.shape)} must be [K, *{list(reference.shape[:3])}] "
                             "to match the reference volume")
        header = reference.header.copy()
        header.set_data_dtype(np.float32)
        out = type(reference)(np.ascontiguousarray(np.moveaxis(probs, 0, -1)), reference.affine, header=header)
        out.header.set_slope_inter(1.0, 0.0)
        out.header["cal_min"], out.header["cal_max"] = 0, 1
        nib.save(out, str(path))
        return path
    if probs.ndim != 3:
        raise ValueError(f"a 2-D probability map must be [K, H, W], got shape {list(probs.shape)}")
    pages = [Image.fromarray(np.ascontiguousarray(p)) for p in probs]
    kwargs = {"compression": "tiff_adobe_deflate"} if features.check("libtiff") else {}
    pages[0].save(path, format="TIFF", save_all=True, append_images=pages[1:], **kwargs)
    return path


def read_prob_map(path: str | Path) -> np.ndarray:
    """A probability map written by `write_prob_map` as float32 ``[K, *spatial]`` (errors name the file)."""
    path = Path(path)
    if is_nifti(path):
        img = _load_nifti(path)
        arr = np.asarray(img.dataobj, dtype=np.float32)
        if arr.ndim != 4:
            raise ValueError(f"probability map {str(path)!r} must be 4-D [X, Y, Z, K], got shape {list(arr.shape)}")
        arr = np.moveaxis(arr, -1, 0)
    else:
        try:
            with Image.open(path) as img:
                pages = []
                for i in range(getattr(img, "n_frames", 1)):
                    img.seek(i)
                    pages.append(np.asarray(img, dtype=np.float32))
        except (OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"cannot read probability map {str(path)!r}: {err}") from err
        if len({p.shape for p in pages}) != 1 or pages[0].ndim != 2:
            raise ValueError(f"probability map {str(path)!r} must hold single-channel pages of one size (one per "
                             f"class), got page shapes {[p.shape for p in pages]}")
        arr = np.stack(pages)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"probability map {str(path)!r} holds non-finite values (NaN or inf)")
    return np.ascontiguousarray(arr)
