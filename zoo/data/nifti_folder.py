"""Generic 3-D data: a folder of NIfTI images and a folder of NIfTI label maps, matched by file stem.

``images/case_a.nii.gz`` pairs with ``labels/case_a.nii.gz`` (``image_suffix`` strips e.g. nnU-Net's ``_0000``
from image names). Validation comes from its own folders or from a seeded ``val_fraction`` of the cases, and is
also the test set; ``val_from_train`` in (0, 1) instead validates on that seeded fraction of the training cases and
keeps the held-out cases for `zoo test` only (see ``zoo.data.volume``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zoo.data.cases import NIFTI_SUFFIXES, case_files, files_by_stem, pair_by_stem
from zoo.data.volume import VolumeDataModule

__all__ = ["NiftiFolderDataModule", "pair_nifti_folders"]


def pair_nifti_folders(image_dir: str | Path, label_dir: str | Path, image_suffix: str = "") -> list[dict]:
    """Records ``{"image", "label", "name"}`` for every stem present in both folders; any unmatched file is an error."""
    strip = (lambda s: s.removesuffix(image_suffix)) if image_suffix else None
    images = files_by_stem(case_files(image_dir, "image", NIFTI_SUFFIXES, ".nii/.nii.gz"), f"image folder {image_dir}",
                           key=strip)
    labels = files_by_stem(case_files(label_dir, "label", NIFTI_SUFFIXES, ".nii/.nii.gz"), f"label folder {label_dir}")
    note = f" (image_suffix={image_suffix!r} cut from image stems)" if image_suffix else ""
    pairs = pair_by_stem(images, labels, ("image", "label"), (image_dir, label_dir), note)
    return [{"image": str(image), "label": str(label), "name": name} for name, image, label in pairs]


class NiftiFolderDataModule(VolumeDataModule):
    """Train on your own 3-D NIfTI volumes from a config: same pipeline as the MSD module, cases from folders."""

    def __init__(self, image_dir: str, label_dir: str, num_classes: int, in_channels: int = 1,
                 class_names: Sequence[str] | None = None, val_image_dir: str | None = None,
                 val_label_dir: str | None = None, val_fraction: float = 0.2, val_from_train: float = 0.0,
                 image_suffix: str = "",
                 patch_size: Sequence[int] = (96, 96, 96), batch_size: int = 2, samples_per_volume: int = 2,
                 crop: str = "pos_neg", pos_fraction: float = 0.67, class_ratios: Sequence[float] | None = None,
                 orientation: str | None = "RAS", spacing: Sequence[float] | None = None,
                 normalization: str = "zscore", intensity_window: Sequence[float] | None = None,
                 augment: dict[str, Any] | None = None, cache_rate: float = 1.0, num_workers: int = 2,
                 seed: int = 0) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, class_names=class_names,
                         patch_size=patch_size, batch_size=batch_size, samples_per_volume=samples_per_volume,
                         crop=crop, pos_fraction=pos_fraction, class_ratios=class_ratios, orientation=orientation,
                         spacing=spacing, normalization=normalization, intensity_window=intensity_window,
                         augment=augment, cache_rate=cache_rate, num_workers=num_workers, seed=seed,
                         val_from_train=val_from_train)
        if (val_image_dir is None) != (val_label_dir is None):
            raise ValueError(f"give both val_image_dir and val_label_dir or neither, got {val_image_dir!r} and "
                             f"{val_label_dir!r}")
        if val_image_dir is None and not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1) when there are no validation folders, got {val_fraction}")
        self.records = pair_nifti_folders(image_dir, label_dir, image_suffix)
        self.val_records = pair_nifti_folders(val_image_dir, val_label_dir, image_suffix) if val_image_dir else None
        self.val_fraction = val_fraction

    def _split(self) -> tuple[list[dict], list[dict]]:
        if self.val_records is not None:
            return self.records, self.val_records
        n_val = max(1, int(round(self.val_fraction * len(self.records))))
        if n_val >= len(self.records):
            raise ValueError(f"val_fraction={self.val_fraction} leaves no training case out of {len(self.records)}")
        perm = np.random.default_rng(self.seed).permutation(len(self.records))
        val = set(perm[:n_val].tolist())
        return ([r for i, r in enumerate(self.records) if i not in val],
                [r for i, r in enumerate(self.records) if i in val])
