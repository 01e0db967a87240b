"""Tiny NIfTI volumes for the 3-D data-module tests (MSD layout and plain folders)."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (16, 14, 12)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))


def make_case(rng: np.random.Generator, shape: tuple[int, ...] = SHAPE,
              channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """An image and a label with two small blobs (classes 1 and 2) far from each other: rare foreground."""
    label = np.zeros(shape, np.uint8)
    c = [int(rng.integers(2, s - 3)) for s in shape]
    label[c[0]:c[0] + 2, c[1]:c[1] + 2, c[2]:c[2] + 2] = 1
    label[c[0] - 1, c[1] - 1, c[2] - 1] = 2
    image = rng.normal(100.0, 20.0, shape + ((channels,) if channels > 1 else ())).astype(np.float32)
    image[label > 0] += 80
    return image, label


def make_msd(root: Path, n: int = 6, channels: int = 1, split: bool = True, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n):
        name = f"toy_{i:03d}"
        image, label = make_case(rng, channels=channels)
        write_nifti(root / "imagesTr" / f"{name}.nii.gz", image)
        write_nifti(root / "labelsTr" / f"{name}.nii.gz", label)
        entries.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    meta = {"name": "Toy", "modality": {str(i): f"MR{i}" for i in range(channels)},
            "labels": {"0": "background", "1": "head", "2": "tail"}, "numTraining": n, "training": entries, "test": []}
    (root / "dataset.json").write_text(json.dumps(meta))
    if split:
        (root / "split_train.txt").write_text("".join(f"toy_{i:03d}.nii.gz\n" for i in range(n - 2)))
        (root / "split_val.txt").write_text("".join(f"toy_{i:03d}\n" for i in range(n - 2, n)))
    return root
