"""DRIVE retinal vessels in the official layout; batches carry the field of view as ``roi`` so metrics stay inside it.

Layout (unchanged from the release)::

    root/training/images/21_training.tif  1st_manual/21_manual1.gif  mask/21_training_mask.gif
    root/test/images/01_test.tif          1st_manual/01_manual1.gif  mask/01_test_mask.gif

Training uses random patches (centred inside the FOV) of the training images minus a validation split; validation
and test batches are whole images. The 20 official test images are the test set.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from zoo.data.augment import build_augment_2d
from zoo.data.base import SegDataModule
from zoo.data.io import read_image, read_mask
from zoo.data.normalize import normalize

__all__ = ["DriveDataModule", "read_drive_split", "read_binary_mask"]

_CHANNELS = {"green": [1], "rgb": [0, 1, 2]}


@dataclass
class _Case:
    name: str
    image: np.ndarray  # H x W x 3 uint8
    label: np.ndarray | None  # H x W uint8 in {0, 1}
    fov: np.ndarray  # H x W bool


def _read_rgb(path: Path) -> np.ndarray:
    """An 8-bit image as uint8 ``[H, W, 3]`` (grayscale repeated), as the 2-D augmentations take it."""
    image = read_image(path)
    if image.max(initial=0) > 255:
        raise ValueError(f"image file {path} holds values up to {image.max():g}; expected an 8-bit image (0..255)")
    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image
    return np.ascontiguousarray(rgb.transpose(1, 2, 0)).astype(np.uint8)


def read_binary_mask(path: str | Path) -> np.ndarray:
    """A 0/255 (or 0/1) mask as uint8 {0, 1}; any other value is an error naming the file."""
    a = read_mask(path)
    values = np.unique(a)
    if not set(values.tolist()) <= {0, 255} and not set(values.tolist()) <= {0, 1}:
        raise ValueError(f"{path}: expected a binary mask with values {{0, 255}} or {{0, 1}} (num_classes=2), "
                         f"got values {values[:10].tolist()}")
    return (a > 0).astype(np.uint8)


def _case_id(path: Path) -> str:
    return path.name.split("_")[0]


def read_drive_split(root: str | Path, split: str, require_labels: bool = True) -> list[_Case]:
    """Load one official split (``training`` or ``test``) into memory, checking the image/annotation/FOV pairs."""
    if split not in ("training", "test"):
        raise ValueError(f"split must be 'training' or 'test', got {split!r}")
    base = Path(root) / split
    img_dir, man_dir, fov_dir = base / "images", base / "1st_manual", base / "mask"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"DRIVE {split} images folder not found: {img_dir} (root={root})")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    if not images:
        raise ValueError(f"no .tif images in {img_dir}")
    has_labels = man_dir.is_dir() and any(man_dir.iterdir())
    if require_labels and not has_labels:
        raise FileNotFoundError(f"DRIVE {split} manual annotations not found: {man_dir}")
    manual = {_case_id(p): p for p in man_dir.glob("*.gif")} if has_labels else {}
    fovs = {_case_id(p): p for p in fov_dir.glob("*.gif")} if fov_dir.is_dir() else {}
    cases = []
    for path in images:
        cid = _case_id(path)
        if has_labels and cid not in manual:
            raise ValueError(f"image {path.name} has no manual annotation {cid}_manual1.gif in {man_dir}")
        if cid not in fovs:
            raise ValueError(f"image {path.name} has no field-of-view mask {cid}_{split}_mask.gif in {fov_dir}")
        image = _read_rgb(path)
        label = read_binary_mask(manual[cid]) if has_labels else None
        fov = read_binary_mask(fovs[cid]).astype(bool)
        for what, arr, p in (("manual annotation", label, manual.get(cid)), ("FOV mask", fov, fovs[cid])):
            if arr is not None and arr.shape != image.shape[:2]:
                raise ValueError(f"{what} {p} has size {arr.shape} but image {path} has size {image.shape[:2]}")
        cases.append(_Case(cid, image, label, fov))
    extra = sorted(set(manual) - {c.name for c in cases})
    if extra:
        raise ValueError(f"manual annotations without an image in {img_dir}: ids {extra}")
    return cases


def _to_sample(image: np.ndarray, label: np.ndarray, roi: np.ndarray, name: str, norm: Mapping[str, Any]) -> dict:
    x = normalize(np.moveaxis(image, -1, 0), norm)
    return {"image": torch.from_numpy(x), "label": torch.from_numpy(label.astype(np.int64)),
            "roi": torch.from_numpy(roi.astype(bool)), "name": name}


class _PatchDataset(Dataset):
    """``per_case`` random patches per case and epoch, centred on a random FOV pixel, then augmented."""

    def __init__(self, cases: list[_Case], patch_size: Sequence[int], per_case: int, augment: Any,
                 norm: Mapping[str, Any], seed: int) -> None:
        self.patch, self.per_case, self.augment, self.norm = tuple(patch_size), per_case, augment, norm
        self.reseed(seed)
        self.names, self.shapes = [c.name for c in cases], [c.fov.shape for c in cases]
        self.centres = [np.argwhere(c.fov if c.fov.any() else np.ones_like(c.fov)) for c in cases]
        ph, pw = self.patch
        border = [(ph, ph), (pw, pw)]  # zero border of one patch so any crop position is valid
        self.arrays = [(np.pad(c.image, border + [(0, 0)]), np.pad(c.label, border),
                        np.pad(c.fov.astype(np.uint8), border)) for c in cases]

    def __len__(self) -> int:
        return len(self.names) * self.per_case

    def reseed(self, seed: int) -> None:
        """Give this copy (e.g. a DataLoader worker) its own random stream for crops and augmentation."""
        self.rng = np.random.default_rng(seed)
        if self.augment is not None:
            self.augment.set_random_seed(seed)

    def __getitem__(self, i: int) -> dict:
        k = i % len(self.names)
        (ph, pw), (h, w) = self.patch, self.shapes[k]
        cy, cx = self.centres[k][self.rng.integers(len(self.centres[k]))]
        # top-left in padded coordinates: centred on (cy, cx), kept inside the image when it is larger than the patch
        y0 = min(max(int(cy) - ph // 2, 0), h - ph) + ph if h >= ph else ph - (ph - h) // 2
        x0 = min(max(int(cx) - pw // 2, 0), w - pw) + pw if w >= pw else pw - (pw - w) // 2
        image, label, roi = (a[y0:y0 + ph, x0:x0 + pw] for a in self.arrays[k])
        if self.augment is not None:
            out = self.augment(image=image, mask=label, roi=roi)
            image, label, roi = out["image"], out["mask"], out["roi"]
        return _to_sample(image, label, roi, self.names[k], self.norm)


class _WholeDataset(Dataset):
    def __init__(self, cases: list[_Case], norm: Mapping[str, Any]) -> None:
        self.cases, self.norm = cases, norm

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> dict:
        c = self.cases[i]
        label = c.label if c.label is not None else np.zeros(c.fov.shape, np.uint8)
        return _to_sample(c.image, label, c.fov, c.name, self.norm)


def _seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(torch.initial_seed() % 2**32)


class DriveDataModule(SegDataModule):
    """DRIVE (Staal et al. 2004): 20 training / 20 test fundus images, vessel vs background, FOV as ``roi``.

    ``channels``: ``green`` (1 channel, the usual choice) or ``rgb``. ``normalization``: ``zscore`` (per image)
    or ``dataset`` (mean/std of the training images, recorded as ``mean_std``). Validation is ``val_fraction``
    of the training images (or ``val_ids``); ``val_set: test`` validates on the official test set instead.
    """

    def __init__(self, root: str, patch_size: Sequence[int] = (128, 128), batch_size: int = 8,
                 patches_per_image: int = 32, val_fraction: float = 0.2, val_ids: Sequence[str] | None = None,
                 val_set: str = "split", channels: str = "green", normalization: str = "zscore",
                 augment: dict[str, Any] | None = None, num_workers: int = 2, seed: int = 0) -> None:
        super().__init__()
        if channels not in _CHANNELS:
            raise ValueError(f"channels must be one of {sorted(_CHANNELS)}, got {channels!r}")
        if normalization not in ("zscore", "dataset"):
            raise ValueError(f"normalization must be 'zscore' or 'dataset', got {normalization!r}")
        if val_set not in ("split", "test"):
            raise ValueError(f"val_set must be 'split' or 'test', got {val_set!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if len(patch_size) != 2 or min(patch_size) < 1:
            raise ValueError(f"patch_size must be two positive ints (H, W), got {list(patch_size)}")
        if not Path(root).is_dir():
            raise FileNotFoundError(f"DRIVE root not found: {root}")
        self.root = Path(root)
        self.num_classes, self.in_channels, self.spatial_dims = 2, len(_CHANNELS[channels]), 2
        self.patch_size, self.class_names = [int(s) for s in patch_size], ["background", "vessel"]
        self.batch_size, self.patches_per_image = batch_size, patches_per_image
        self.num_workers, self.seed = num_workers, seed
        self.val_fraction, self.val_ids, self.val_set = val_fraction, list(val_ids) if val_ids else None, val_set
        self.channels, self.norm_kind = _CHANNELS[channels], normalization
        self.augment_spec = augment
        build_augment_2d(augment, extra_masks=("roi",), patch_size=self.patch_size)  # fail early
        self.normalization: dict[str, Any] = {"kind": "zscore", "channels": self.channels}
        self.train_cases: list[_Case] | None = None
        self.val_cases: list[_Case] | None = None
        self.test_cases: list[_Case] | None = None

    def _split_training(self, cases: list[_Case]) -> tuple[list[_Case], list[_Case]]:
        ids = [c.name for c in cases]
        if self.val_ids is not None:
            missing = sorted(set(self.val_ids) - set(ids))
            if missing:
                raise ValueError(f"val_ids {missing} are not DRIVE training ids (available: {ids})")
            val = set(self.val_ids)
        elif self.val_set == "test" or self.val_fraction == 0:
            val = set()
        else:
            n_val = max(1, int(round(self.val_fraction * len(ids))))
            if n_val >= len(ids):
                raise ValueError(f"val_fraction={self.val_fraction} leaves no training image out of {len(ids)}")
            val = set(np.random.default_rng(self.seed).permutation(ids)[:n_val].tolist())
        return [c for c in cases if c.name not in val], [c for c in cases if c.name in val]

    def setup(self, stage: str | None = None) -> None:
        if self.train_cases is None and (stage in (None, "fit", "validate") or self.norm_kind == "dataset"):
            self.train_cases, self.val_cases = self._split_training(read_drive_split(self.root, "training"))
            if self.val_set == "test":
                self.val_cases = self._test()
            elif not self.val_cases:
                raise ValueError("no validation images: set val_fraction > 0, val_ids, or val_set: test")
            if self.norm_kind == "dataset":  # statistics of the training split, whatever the stage
                pix = np.concatenate([c.image[..., self.channels].reshape(-1, len(self.channels))
                                      for c in self.train_cases]).astype(np.float64)
                self.normalization = {"kind": "mean_std", "channels": self.channels,
                                      "mean": pix.mean(0).tolist(), "std": pix.std(0).tolist()}
        if stage in (None, "test", "predict"):
            self._test()

    def _test(self) -> list[_Case]:
        if self.test_cases is None:
            self.test_cases = read_drive_split(self.root, "test")
        return self.test_cases

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          worker_init_fn=_seed_worker, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available(), drop_last=shuffle and len(ds) >= batch_size)

    def train_dataloader(self) -> DataLoader:
        if self.train_cases is None:
            self.setup("fit")
        augment = build_augment_2d(self.augment_spec, extra_masks=("roi",), patch_size=self.patch_size)
        ds = _PatchDataset(self.train_cases, self.patch_size, self.patches_per_image, augment, self.normalization,
                           self.seed)
        return self._loader(ds, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_cases is None:
            self.setup("validate")
        return self._loader(_WholeDataset(self.val_cases, self.normalization), 1, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(_WholeDataset(self._test(), self.normalization), 1, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

