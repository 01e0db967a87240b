"""Case file names, the one rule shared by training, `zoo predict` and `zoo eval`: a case is its file's stem.

Suffixes are matched case-insensitively and ``.nii.gz`` counts as one suffix, so ``X.NII.GZ``, ``X.nii`` and
``X.png`` all name case ``X``.
"""
from __future__ import annotations

from pathlib import Path

from zoo.data.io import IMAGE_SUFFIXES

__all__ = ["NIFTI_SUFFIXES", "SUPPORTED_SUFFIXES", "split_name", "is_nifti"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + NIFTI_SUFFIXES


def split_name(path: str | Path) -> tuple[str, str]:
    """``(stem, suffix)`` with the suffix lower-cased and ``.nii.gz`` kept whole: ``a.b.nii.gz -> (a.b, .nii.gz)``."""
    name = Path(path).name
    low = name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)], suffix
    p = Path(name)
    return p.stem, p.suffix.lower()


def is_nifti(path: str | Path) -> bool:
    """Whether `path` names a NIfTI file (``.nii`` or ``.nii.gz``, any case)."""
    return split_name(path)[1] in NIFTI_SUFFIXES
