"""Case files, one set of rules for training, `zoo predict` and `zoo eval`: names, pairing, label range.

A case is its file's stem: suffixes are matched case-insensitively and ``.nii.gz`` counts as one suffix, so
``X.NII.GZ``, ``X.nii`` and ``X.png`` all name case ``X``. Two folders pair by case name (`pair_by_stem`), and a
label map must hold class indices ``0..num_classes-1`` (`check_label_range`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from zoo.data.io import IMAGE_SUFFIXES

__all__ = ["NIFTI_SUFFIXES", "SUPPORTED_SUFFIXES", "split_name", "is_nifti", "case_files", "files_by_stem",
           "pair_by_stem", "check_label_range"]

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


def case_files(folder: str | Path, what: str, suffixes: Iterable[str], kind: str) -> list[Path]:
    """The files directly in ``folder`` whose suffix is one of ``suffixes`` (hidden files skipped), sorted.

    ``what`` names the folder in errors and ``kind`` the files (e.g. "PNG/JPEG/TIFF"): FileNotFoundError when the
    folder is missing, NotADirectoryError for a file, ValueError when it holds no such file."""
    folder, suffixes = Path(folder), tuple(suffixes)
    if not folder.exists():
        raise FileNotFoundError(f"{what} folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} must be a folder, got a file: {folder}")
    files = sorted(f for f in folder.iterdir()
                   if f.is_file() and not f.name.startswith(".") and split_name(f)[1] in suffixes)
    if not files:
        raise ValueError(f"{what} folder {folder} holds no {kind} files")
    return files


def files_by_stem(files: Iterable[str | Path], where: str,
                  key: Callable[[str], str] | None = None) -> dict[str, Path]:
    """Each file under its case name (its stem, passed through ``key`` when given); two files with one case name
    raise ValueError naming ``where`` and both files."""
    out: dict[str, Path] = {}
    for f in map(Path, files):
        stem = split_name(f)[0]
        name = key(stem) if key is not None else stem
        if name in out:
            raise ValueError(f"{where}: two files for case {name!r}: {out[name].name!r} and {f.name!r}; keep one")
        out[name] = f
    return out


def _listed(files: list[Path], limit: int = 10) -> str:
    shown = ", ".join(repr(f.name) for f in files[:limit])
    return shown + (f" (and {len(files) - limit} more)" if len(files) > limit else "")


def pair_by_stem(left: Mapping[str, Path], right: Mapping[str, Path], what: tuple[str, str],
                 folders: tuple[str | Path, str | Path], note: str = "") -> list[tuple[str, Path, Path]]:
    """``(case, left file, right file)`` for every case name, sorted (maps from `files_by_stem`); a case on one
    side only raises ValueError listing, per side, the count and names of its unmatched files.

    ``what`` names the two kinds of file (e.g. ``("image", "mask")``), ``folders`` where they came from and
    ``note`` is appended to the first sentence (e.g. the suffix option that shapes the case names)."""
    parts = []
    for (a, b), (mine, other), folder in ((what, (left, right), folders[0]),
                                          (what[::-1], (right, left), folders[1])):
        alone = [mine[n] for n in sorted(set(mine) - set(other))]
        if alone:
            parts.append(f"{len(alone)} {a}(s) in {str(folder)!r} without a matching {b}: {_listed(alone)}")
    if parts:
        raise ValueError(f"{what[0]} and {what[1]} files must match by file stem{note}; " + "; ".join(parts))
    return [(n, left[n], right[n]) for n in sorted(left)]


def check_label_range(labels: Any, num_classes: int, source: str, arg: str = "num_classes") -> None:
    """Raise ValueError unless every value of ``labels`` (array or CPU tensor) is an integer class index in
    ``0..num_classes-1``; the message names ``source`` (file or case), the range and up to 10 offending values."""
    arr = np.asarray(labels)
    if arr.size == 0:
        return
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "uif":
        raise ValueError(f"{source} must hold integer class indices 0..{num_classes - 1}, got dtype {arr.dtype}")
    lo, hi = arr.min(), arr.max()
    if lo >= 0 and hi < num_classes and (arr.dtype.kind in "ui" or np.array_equal(arr, np.round(arr))):
        return
    values = np.unique(arr)
    bad = values[~((values >= 0) & (values < num_classes) & (values == np.round(values)))]
    shown = [int(v) if float(v).is_integer() else float(v) for v in bad[:10].tolist()]
    more = f" (and {bad.size - 10} more)" if bad.size > 10 else ""
    hint = " (a 0/255 binary mask? store foreground as 1)" if shown == [255] else ""
    raise ValueError(f"{source} holds label values {shown}{more} outside the classes 0..{num_classes - 1} "
                     f"({arg}={num_classes}){hint}")
