"""The 3-D NIfTI pipeline shared by the MSD and NIfTI-folder data modules (they only differ in how cases are found).

Per case (cached by MONAI's CacheDataset): load channels-first, check the image/label pair, reorient (e.g. RAS),
resample to ``spacing``, normalise (``zoo.data.normalize``, recorded for `zoo predict`). Training then takes
label-balanced random patches (``RandCropByPosNegLabeld`` or ``RandCropByLabelClassesd``) and the MONAI
augmentations of ``zoo.data.augment.build_augment_3d``; validation/test batches are whole volumes.

Case protocol: a subclass gives a training split and a held-out split (``_split``). By default the held-out split
is both the validation set (checkpoint selection) and the test set (`zoo test`, `zoo predict --config`), so a
best-by-validation score is optimistic. ``val_from_train`` in (0, 1) gives the honest protocol: validation is that
seeded fraction of the training split (at least one case), training the rest, and the held-out split is used for
test and predict only. ``case_split`` holds the case names of the three sets after ``setup``.
"""
from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from monai.transforms import Transform

from zoo.data.augment import build_augment_3d
from zoo.data.base import SegDataModule
from zoo.data.cases import check_label_range
from zoo.data.normalize import check_normalization, normalize

__all__ = ["VolumeDataModule", "check_nifti_pairs"]

_CROPS = ("pos_neg", "classes")


def check_nifti_pairs(records: Sequence[Mapping[str, Any]]) -> None:
    """Read every header once: unreadable files and image/label size mismatches fail here with both file names."""
    import nibabel as nib
    for r in records:
        shapes = []
        for key in ("image", "label"):
            try:
                shapes.append(tuple(nib.load(str(r[key])).shape))
            except Exception as e:  # nibabel raises several types for missing/corrupt files
                raise ValueError(f"cannot read {key} file {r[key]}: {e}") from e
        if shapes[0][:3] != shapes[1][:3]:
            raise ValueError(f"case {r['name']}: image {r['image']} has size {shapes[0][:3]} but label {r['label']} "
                             f"has size {shapes[1][:3]}")


def _check_case(d: Mapping[Hashable, Any], num_classes: int, in_channels: int) -> None:
    img, lab = d["image"], d["label"]
    if img.shape[0] != in_channels:
        raise ValueError(f"case {d['name']}: image has {img.shape[0]} channel(s), expected in_channels={in_channels}")
    if lab.shape[0] != 1 or tuple(lab.shape[1:]) != tuple(img.shape[1:]):
        raise ValueError(f"case {d['name']}: label shape {tuple(lab.shape)} does not match image shape "
                         f"{tuple(img.shape)} (one label channel expected)")
    file = getattr(lab, "meta", {}).get("filename_or_obj", "(not recorded)")
    check_label_range(lab, num_classes, f"case {d['name']}: label file {file}")


def _root_cause(e: BaseException) -> BaseException:
    """MONAI wraps transform errors in ``RuntimeError('applying transform ...')``; surface our own clear error."""
    while e.__cause__ is not None and isinstance(e, RuntimeError):
        e = e.__cause__
    return e


def collate_volumes(items: list) -> dict:
    """Flatten MONAI multi-sample lists and build a contract batch of plain tensors (label without channel dim)."""
    from monai.data import MetaTensor
    flat = [s for it in items for s in (it if isinstance(it, list) else [it])]

    def plain(x: Any) -> torch.Tensor:
        return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    return {"image": torch.stack([plain(s["image"]).float() for s in flat]),
            "label": torch.stack([plain(s["label"])[0].round().long() for s in flat]),
            "name": [s["name"] for s in flat]}


class VolumeDataModule(SegDataModule):
    """Base of the 3-D modules; subclasses implement ``_split() -> (train_records, held_out_records)``.

    Records are dicts ``{"image": path, "label": path, "name": case}``. With ``val_from_train=0`` the held-out
    split is validation and test at once (public 3-D sets rarely ship test labels); with ``val_from_train`` in
    (0, 1) validation is a seeded fraction of the training split and the held-out split is the test set only.
    """

    def __init__(self, *, num_classes: int, in_channels: int, class_names: Sequence[str] | None,
                 patch_size: Sequence[int], batch_size: int, samples_per_volume: int, crop: str,
                 pos_fraction: float, class_ratios: Sequence[float] | None, orientation: str | None,
                 spacing: Sequence[float] | None, normalization: str, intensity_window: Sequence[float] | None,
                 augment: dict[str, Any] | None, cache_rate: float, num_workers: int, seed: int,
                 val_from_train: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + foreground), got {num_classes}")
        if len(patch_size) != 3 or min(patch_size) < 1:
            raise ValueError(f"patch_size must be three positive ints, got {list(patch_size)}")
        if crop not in _CROPS:
            raise ValueError(f"crop must be one of {_CROPS}, got {crop!r}")
        if not 0.0 <= pos_fraction <= 1.0:
            raise ValueError(f"pos_fraction must be in [0, 1], got {pos_fraction}")
        if class_ratios is not None and len(class_ratios) != num_classes:
            raise ValueError(f"class_ratios needs {num_classes} values (one per class), got {list(class_ratios)}")
        if spacing is not None and (len(spacing) != 3 or min(spacing) <= 0):
            raise ValueError(f"spacing must be three positive numbers (mm) or null, got {list(spacing)}")
        if not 0.0 <= cache_rate <= 1.0:
            raise ValueError(f"cache_rate must be in [0, 1], got {cache_rate}")
        if not 0.0 <= val_from_train < 1.0:
            raise ValueError(f"val_from_train must be in [0, 1) (0: validate on the held-out split, which is then also "
                             f"the test set), got {val_from_train}")
        if normalization == "window":
            if intensity_window is None or len(intensity_window) != 2:
                raise ValueError(f"normalization 'window' needs intensity_window [min, max], got {intensity_window}")
            norm = {"kind": "window", "min": float(intensity_window[0]), "max": float(intensity_window[1])}
        elif normalization == "zscore":
            norm = {"kind": "zscore"}
        else:
            raise ValueError(f"normalization must be 'zscore' or 'window', got {normalization!r}")
        self.normalization: dict[str, Any] = check_normalization(norm)
        self.num_classes, self.in_channels, self.spatial_dims = num_classes, in_channels, 3
        default_names = ["background"] + [f"class_{i}" for i in range(1, num_classes)]
        self.class_names = list(class_names) if class_names else default_names
        if len(self.class_names) != num_classes:
            raise ValueError(f"class_names needs {num_classes} names, got {self.class_names}")
        self.patch_size = [int(s) for s in patch_size]
        self.batch_size, self.samples_per_volume, self.crop = batch_size, samples_per_volume, crop
        self.pos_fraction, self.class_ratios = pos_fraction, list(class_ratios) if class_ratios else None
        self.orientation, self.spacing = orientation, list(spacing) if spacing else None
        self.augment_spec, self.cache_rate, self.num_workers, self.seed = augment, cache_rate, num_workers, seed
        self.val_from_train = float(val_from_train)
        build_augment_3d(augment, patch_size=self.patch_size)  # fail early on a bad spec
        self.train_ds: Any = None
        self.val_ds: Any = None
        self.test_ds: Any = None
        self.case_split: dict[str, list[str]] | None = None  # {"train", "val", "test"} case names, set by setup

    def _split(self) -> tuple[list[dict], list[dict]]:
        raise NotImplementedError

    def _splits(self) -> tuple[list[dict], list[dict], list[dict]]:
        """(train, val, test) records from ``_split``: test = the held-out split; validation = the held-out split
        too (``val_from_train=0``) or a seeded ``val_from_train`` fraction of the training split."""
        train, held_out = self._split()
        if not held_out:
            if self.val_from_train:
                raise ValueError(f"val_from_train={self.val_from_train} tests on the held-out split, which is empty: "
                                 "give held-out cases (split_val / validation folders) or a val_fraction > 0")
            raise ValueError("the validation split is empty: give validation cases or a val_fraction > 0")
        if not self.val_from_train:
            val, test = held_out, held_out
        else:
            n_val = max(1, int(round(self.val_from_train * len(train))))
            if n_val >= len(train):
                raise ValueError(f"val_from_train={self.val_from_train} takes {n_val} of the {len(train)} training "
                                 "case(s) for validation and leaves none to train on")
            rng = np.random.default_rng((self.seed, 1))  # a stream of its own, not the one of the hold-out draw
            chosen = set(rng.permutation(sorted(r["name"] for r in train))[:n_val].tolist())
            train, val, test = ([r for r in train if r["name"] not in chosen],
                                [r for r in train if r["name"] in chosen], held_out)
            sets = {"train": train, "val": val, "test": test}
            for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
                both = sorted({r["name"] for r in sets[a]} & {r["name"] for r in sets[b]})
                if both:
                    raise ValueError(f"{len(both)} case(s) are in both the {a} and {b} sets, e.g. {both[:3]}")
        self.case_split = {k: [r["name"] for r in recs] for k, recs in (("train", train), ("val", val), ("test", test))}
        rank_zero_info(f"{type(self).__name__}: {len(train)} training, {len(val)} validation, {len(test)} test cases"
                       + ("" if self.val_from_train else " (test = validation)") + "; names in .case_split")
        return train, val, test

    def describe(self) -> dict:
        """Adds the grid the model was trained on: ``orientation`` (axis codes) and ``spacing`` (mm, None = native)."""
        return {**super().describe(), "orientation": self.orientation, "spacing": self.spacing}

    # ---- transforms --------------------------------------------------------------------------------------------
    def _deterministic(self, train: bool) -> list:
        from monai.transforms import (EnsureTyped, FgBgToIndicesd, ClassesToIndicesd, LoadImaged,
                                      Orientationd, Spacingd, SpatialPadd)
        keys = ["image", "label"]
        nc, ic = self.num_classes, self.in_channels
        t: list = [LoadImaged(keys, ensure_channel_first=True, image_only=True),
                   _CheckCase(nc, ic)]
        if self.orientation:
            t.append(Orientationd(keys, axcodes=self.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S"))))
        if self.spacing:
            t.append(Spacingd(keys, pixdim=self.spacing, mode=("bilinear", "nearest")))
        t += [_Normalize(self.normalization), EnsureTyped("image", dtype=torch.float32, track_meta=False),
              EnsureTyped("label", dtype=torch.uint8 if nc <= 256 else torch.int64, track_meta=False)]
        if train:
            t.append(SpatialPadd(keys, spatial_size=self.patch_size))
            if self.crop == "pos_neg":
                t.append(FgBgToIndicesd("label", fg_postfix="_fg", bg_postfix="_bg"))
            else:
                t.append(ClassesToIndicesd("label", num_classes=nc, indices_postfix="_cls"))
        return t

    def _random(self) -> list:
        from monai.transforms import RandCropByLabelClassesd, RandCropByPosNegLabeld
        keys = ["image", "label"]
        if self.crop == "pos_neg":
            crop = RandCropByPosNegLabeld(keys, label_key="label", spatial_size=self.patch_size,
                                          pos=self.pos_fraction, neg=1.0 - self.pos_fraction,
                                          num_samples=self.samples_per_volume, fg_indices_key="label_fg",
                                          bg_indices_key="label_bg")
        else:
            crop = RandCropByLabelClassesd(keys, label_key="label", spatial_size=self.patch_size,
                                           ratios=self.class_ratios, num_classes=self.num_classes,
                                           num_samples=self.samples_per_volume, indices_key="label_cls")
        return [crop] + build_augment_3d(self.augment_spec, keys=keys, patch_size=self.patch_size)

    def _dataset(self, records: list[dict], train: bool) -> Any:
        from monai.data import CacheDataset
        from monai.transforms import Compose
        transform = Compose(self._deterministic(train) + (self._random() if train else []))
        transform.set_random_state(seed=self.seed)
        try:
            return CacheDataset(records, transform, cache_rate=self.cache_rate, num_workers=max(1, self.num_workers),
                                progress=False)
        except RuntimeError as e:
            raise _root_cause(e) from None

    # ---- Lightning hooks ---------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build the datasets ``stage`` needs: fit: train + val, validate: val, test/predict: test, None: all."""
        need = {"train": stage in (None, "fit"), "val": stage in (None, "fit", "validate"),
                "test": stage in (None, "test", "predict")}
        if not self.val_from_train and need["test"]:  # the test set is the validation set
            need["val"] = True
            self.test_ds = self.val_ds
        need = {k for k, v in need.items() if v and getattr(self, f"{k}_ds") is None}
        if not need:
            return
        train, val, test = self._splits()
        check_nifti_pairs(train + val + (test if test is not val else []))
        if "train" in need:
            if not train:
                raise ValueError("the training split is empty")
            self.train_ds = self._dataset(train, train=True)
        if "val" in need:
            self.val_ds = self._dataset(val, train=False)
        if "test" in need:
            self.test_ds = self._dataset(test, train=False) if self.val_from_train else self.val_ds

    def _loader(self, ds: Any, batch_size: int, shuffle: bool) -> Any:
        from monai.data import DataLoader
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=collate_volumes, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> Any:
        if self.train_ds is None:
            self.setup("fit")
        return self._loader(self.train_ds, self.batch_size, shuffle=True)

    def val_dataloader(self) -> Any:
        if self.val_ds is None:
            self.setup("validate")
        return self._loader(self.val_ds, 1, shuffle=False)

    def test_dataloader(self) -> Any:
        if self.test_ds is None:
            self.setup("test")
        return self._loader(self.test_ds, 1, shuffle=False)

    def predict_dataloader(self) -> Any:
        """`zoo predict --config` runs over the test cases (the validation cases when ``val_from_train=0``)."""
        return self.test_dataloader()


class _CheckCase(Transform):
    """Transform: clear errors for channel count, label size and label values (runs on the raw loaded data)."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        self.num_classes, self.in_channels = num_classes, in_channels

    def __call__(self, d: Mapping[Hashable, Any]) -> Mapping[Hashable, Any]:
        _check_case(d, self.num_classes, self.in_channels)
        return d


class _Normalize(Transform):
    """Transform: ``zoo.data.normalize`` on the image (after reorientation and resampling)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)

    def __call__(self, d: Mapping[Hashable, Any]) -> dict:
        return {**d, "image": normalize(torch.as_tensor(d["image"]), self.spec)}
