"""Any Medical Segmentation Decathlon task from its own folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``).

Classes and modalities come from ``dataset.json``. The split is ``split_train.txt`` / ``split_val.txt`` in the task
folder when present (one case per line, with or without ``.nii.gz``), otherwise a seeded ``val_fraction`` of the
labelled cases. MSD test images have no public labels, so by default `test` (and `zoo predict --config`) runs on
that validation split too, which also selects the best checkpoint: an optimistic score.

``val_from_train`` in (0, 1) is the honest protocol (as nnU-Net validates inside its training folds): validation is
that seeded fraction of the training split (at least one case; seed ``seed``), training the rest, and `zoo test`
runs on ``split_val.txt`` only. Without split files the test set is the seeded ``val_fraction`` hold-out and
validation a ``val_from_train`` fraction of the remaining cases. The three case lists are disjoint and are logged
and kept in ``case_split`` after ``setup``; the checkpoint's ``data_info`` does not depend on this choice.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zoo.data.cases import is_nifti, split_name
from zoo.data.volume import VolumeDataModule

__all__ = ["DecathlonDataModule", "read_decathlon"]


def read_decathlon(root: str | Path) -> tuple[dict, list[dict]]:
    """Parse ``dataset.json``: returns the json and the labelled records ``{"image", "label", "name"}``."""
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"MSD task folder must contain dataset.json, not found: {meta_path}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot parse {meta_path}: {e}") from e
    for key in ("labels", "modality", "training"):
        if key not in meta:
            raise ValueError(f"{meta_path} has no '{key}' entry (keys: {sorted(meta)})")
    records, missing = [], []
    for entry in meta["training"]:
        rec = {k: root / str(entry[k]).removeprefix("./") for k in ("image", "label")}
        missing += [str(p) for p in rec.values() if not p.is_file()]
        records.append({**{k: str(v) for k, v in rec.items()}, "name": split_name(rec["image"])[0]})
    if missing:
        raise FileNotFoundError(f"{len(missing)} file(s) listed in {meta_path} are missing, e.g. {missing[:3]}")
    if not records:
        raise ValueError(f"{meta_path} lists no training cases")
    return meta, records


def _read_split(path: Path, known: set[str]) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    names = [split_name(line)[0] if is_nifti(line) else line for line in lines]
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"{path} names {len(unknown)} case(s) not in dataset.json, e.g. {unknown[:3]}")
    if not names:
        raise ValueError(f"split file {path} is empty")
    return names


class DecathlonDataModule(VolumeDataModule):
    """An MSD task (e.g. Task04_Hippocampus): 3-D patches by label for training, whole volumes for validation.

    ``crop``: ``pos_neg`` (``pos_fraction`` of patches centred on foreground) or ``classes`` (``class_ratios``
    per class). ``orientation`` (e.g. ``RAS``) and ``spacing`` (mm; null keeps the native grid) are applied with
    MONAI. ``normalization``: ``zscore`` per volume (MRI) or ``window`` with ``intensity_window`` (CT).
    ``val_from_train`` > 0 validates on that fraction of the training split and tests on the validation split
    (module docstring); 0 keeps validation = test = the validation split.
    """

    def __init__(self, root: str, patch_size: Sequence[int] = (96, 96, 96), batch_size: int = 2,
                 samples_per_volume: int = 2, crop: str = "pos_neg", pos_fraction: float = 0.67,
                 class_ratios: Sequence[float] | None = None, orientation: str | None = "RAS",
                 spacing: Sequence[float] | None = None, normalization: str = "zscore",
                 intensity_window: Sequence[float] | None = None, augment: dict[str, Any] | None = None,
                 split_train: str | None = None, split_val: str | None = None, val_fraction: float = 0.2,
                 val_from_train: float = 0.0, cache_rate: float = 1.0, num_workers: int = 2, seed: int = 0) -> None:
        self.root = Path(root)
        self.meta, self.records = read_decathlon(self.root)
        labels = {int(k): v for k, v in self.meta["labels"].items()}
        if sorted(labels) != list(range(len(labels))):
            raise ValueError(f"dataset.json labels must be numbered 0..N-1, got {sorted(labels)}")
        super().__init__(num_classes=len(labels), in_channels=len(self.meta["modality"]),
                         class_names=[str(labels[i]) for i in range(len(labels))], patch_size=patch_size,
                         batch_size=batch_size, samples_per_volume=samples_per_volume, crop=crop,
                         pos_fraction=pos_fraction, class_ratios=class_ratios, orientation=orientation,
                         spacing=spacing, normalization=normalization, intensity_window=intensity_window,
                         augment=augment, cache_rate=cache_rate, num_workers=num_workers, seed=seed,
                         val_from_train=val_from_train)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.split_files = [Path(p) if p else None for p in (split_train, split_val)]
        for i, default in enumerate(("split_train.txt", "split_val.txt")):
            if self.split_files[i] is None and (self.root / default).is_file():
                self.split_files[i] = self.root / default
            elif self.split_files[i] is not None and not self.split_files[i].is_file():
                raise FileNotFoundError(f"split file not found: {self.split_files[i]}")
        self.val_fraction = val_fraction

    def _split(self) -> tuple[list[dict], list[dict]]:
        by_name = {r["name"]: r for r in self.records}
        train_file, val_file = self.split_files
        if val_file is not None:
            val = _read_split(val_file, set(by_name))
            train = _read_split(train_file, set(by_name)) if train_file else sorted(set(by_name) - set(val))
            overlap = sorted(set(train) & set(val))
            if overlap:
                raise ValueError(f"{len(overlap)} case(s) are in both the training and validation splits, "
                                 f"e.g. {overlap[:3]}")
        else:
            names = sorted(by_name)
            n_val = max(1, int(round(self.val_fraction * len(names)))) if self.val_fraction > 0 else 0
            perm = np.random.default_rng(self.seed).permutation(names).tolist()
            val, train = sorted(perm[:n_val]), sorted(perm[n_val:])
        return [by_name[n] for n in train], [by_name[n] for n in val]
