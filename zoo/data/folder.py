"""Train on your own 2-D data: a folder of images and a folder of label masks, matched by file stem.

Images (PNG/JPEG/TIFF, grayscale or RGB) are z-scored per image and channel (``zoo.data.normalize``); masks hold
class indices ``0 .. num_classes-1``. Training samples are random ``patch_size`` crops (zero-padded when the image
is smaller), then the ``augment`` spec of ``zoo.data.augment`` (``true``: `DEFAULT_AUGMENT`, flips, 90-degree
rotations on square patches and a light unclipped intensity scale/shift); validation uses whole images, one per
batch. Every file is read and checked in ``setup`` so a bad file fails
before training starts, with an error that names it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from zoo.data.augment import augment_2d_ops
from zoo.data.base import SegDataModule
from zoo.data.cases import case_files, check_label_range, files_by_stem, pair_by_stem, split_name
from zoo.data.io import IMAGE_SUFFIXES, read_image, read_mask
from zoo.data.normalize import ZSCORE, normalize

if TYPE_CHECKING:  # albumentations (and OpenCV) load only when a training transform is built
    import albumentations as A

__all__ = ["match_pairs", "load_case", "FolderSegDataset", "FolderSegDataModule", "DEFAULT_AUGMENT"]

Case = tuple[Path, Path]
DEFAULT_AUGMENT: dict[str, Any] = {"hflip": 0.5, "vflip": 0.5, "rot90": 0.5,
                                   "intensity": {"scale": 0.1, "shift": 0.1, "p": 0.5}}
"""What ``augment: true`` means (``rot90`` only on square patches); images are z-scored before augmentation."""


def match_pairs(images: str | Path, masks: str | Path, mask_suffix: str = "") -> list[Case]:
    """(image, mask) pairs whose stems match (mask stem = image stem + ``mask_suffix``), sorted by image stem;
    unmatched stems are an error."""
    imgs = files_by_stem(case_files(images, "images", IMAGE_SUFFIXES, "PNG/JPEG/TIFF"), f"images folder {images}",
                         key=lambda s: s + mask_suffix)
    msks = files_by_stem(case_files(masks, "masks", IMAGE_SUFFIXES, "PNG/JPEG/TIFF"), f"masks folder {masks}")
    note = f" (mask stem = image stem + mask_suffix={mask_suffix!r})" if mask_suffix else ""
    pairs = pair_by_stem(imgs, msks, ("image", "mask"), (images, masks), note)
    return [(img, msk) for _, img, msk in sorted(pairs, key=lambda p: split_name(p[1])[0])]


def load_case(image_path: Path, mask_path: Path, num_classes: int, in_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one pair: z-scored float32 ``[C, H, W]`` image and int64 ``[H, W]`` mask."""
    image = read_image(image_path)
    if image.shape[0] != in_channels:
        raise ValueError(f"image {image_path} has {image.shape[0]} channel(s); expected in_channels={in_channels}")
    mask = read_mask(mask_path)
    if mask.shape != image.shape[1:]:
        raise ValueError(f"mask {mask_path} has size {tuple(mask.shape)} (H, W) but image {image_path} has size "
                         f"{tuple(image.shape[1:])}")
    check_label_range(mask, num_classes, f"mask {mask_path}")
    return normalize(image, ZSCORE), mask


def _augment_spec(augment: bool | Mapping[str, Any] | None, patch_size: tuple[int, int]) -> dict[str, Any] | None:
    """The 2-D augmentation spec that ``augment`` stands for (``true``: `DEFAULT_AUGMENT`, square-only rot90)."""
    if augment is True:
        return {k: v for k, v in DEFAULT_AUGMENT.items() if k != "rot90" or patch_size[0] == patch_size[1]}
    if augment is None or augment is False:
        return None
    if not isinstance(augment, Mapping):
        raise ValueError(f"augment must be true, false, null or a dict of 2-D augmentations, got {augment!r}")
    return dict(augment)


class FolderSegDataset(Dataset):
    """Cases of one split, read once (``cache``) or on every access; an optional albumentations transform."""

    def __init__(self, cases: list[Case], load: Callable[[Path, Path], tuple[np.ndarray, np.ndarray]],
                 transform: A.Compose | None = None, length: int | None = None, cache: bool = True) -> None:
        self.cases, self.load, self.transform = cases, load, transform
        self.length = length or len(cases)
        self.cache = [load(*c) for c in cases] if cache else None
        self._seeded_for: int | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        k = i % len(self.cases)
        image, mask = self.cache[k] if self.cache is not None else self.load(*self.cases[k])
        self._seed_worker()
        if self.transform is not None:
            out = self.transform(image=image.transpose(1, 2, 0), mask=mask.astype(np.int32))
            image, mask = out["image"].transpose(2, 0, 1), out["mask"]
        return {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                "label": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)), "name": self.cases[k][0].stem}

    def _seed_worker(self) -> None:
        """Give each DataLoader worker (and each epoch's workers) its own augmentation stream."""
        info = get_worker_info()
        if info is not None and self._seeded_for != info.seed:
            if self.transform is not None:
                self.transform.set_random_seed(info.seed % 2**32)
            self._seeded_for = info.seed


class FolderSegDataModule(SegDataModule):
    """2-D images + masks from folders; validation from ``val_images``/``val_masks`` or a seeded ``val_fraction``.

    ``augment``: ``true`` (`DEFAULT_AUGMENT`), ``false``/``null`` (crops only) or a ``zoo.data.augment`` 2-D spec.
    """

    def __init__(
        self, num_classes: int, train_images: str, train_masks: str, val_images: str | None = None,
        val_masks: str | None = None, val_fraction: float = 0.2, patch_size: int | tuple[int, int] = 256,
        batch_size: int = 8, num_workers: int = 0, seed: int = 0,
        augment: bool | dict[str, Any] | None = True,
        in_channels: int | None = None, class_names: list[str] | None = None, mask_suffix: str = "",
        samples_per_epoch: int | None = None, cache: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2 (background + classes), got {num_classes!r}")
        size = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(f"patch_size must be a positive int or two of them (H, W), got {patch_size!r}")
        if (val_images is None) != (val_masks is None):
            raise ValueError(f"val_images and val_masks must be given together, got val_images={val_images!r}, "
                             f"val_masks={val_masks!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names must have num_classes={num_classes} entries, got {len(class_names)}")
        for name, v in (("batch_size", batch_size), ("num_workers", num_workers + 1)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

        train = match_pairs(train_images, train_masks, mask_suffix)
        if val_images is not None:
            val = match_pairs(val_images, val_masks, mask_suffix)
        else:
            if not 0 < val_fraction < 1:
                raise ValueError(f"val_fraction must be in (0, 1) when no val_images are given, got {val_fraction!r}")
            if len(train) < 2:
                raise ValueError(f"need at least 2 image/mask pairs to split off validation, found {len(train)}")
            order = np.random.default_rng(seed).permutation(len(train))
            n_val = min(max(1, int(round(val_fraction * len(train)))), len(train) - 1)
            val = [train[i] for i in sorted(order[:n_val])]
            train = [train[i] for i in sorted(order[n_val:])]
        self.train_cases, self.val_cases = train, val

        self.num_classes, self.spatial_dims, self.patch_size = num_classes, 2, size
        self.in_channels = in_channels if in_channels is not None else read_image(train[0][0]).shape[0]
        self.class_names = (list(class_names) if class_names
                            else ["background"] + [f"class_{i}" for i in range(1, num_classes)])
        self.normalization = dict(ZSCORE)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.augment, self.samples_per_epoch, self.cache = augment, samples_per_epoch, cache
        self.augment_spec = _augment_spec(augment, size)
        augment_2d_ops(self.augment_spec, patch_size=size)  # fail early on a bad spec
        self.train_set: FolderSegDataset | None = None
        self.val_set: FolderSegDataset | None = None

    def _load(self, image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
        return load_case(image_path, mask_path, self.num_classes, self.in_channels)

    def train_transform(self) -> A.Compose:
        """Pad to the patch, random crop, then the ``augment`` spec's transforms (`zoo.data.augment`)."""
        import albumentations as A
        import cv2

        h, w = self.patch_size
        ops: list = [A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
                     A.RandomCrop(height=h, width=w)]
        return A.Compose(ops + augment_2d_ops(self.augment_spec, patch_size=self.patch_size), seed=self.seed)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            # Checking every file up front: a bad one fails now, not hours into training.
            if not self.cache:
                for c in self.train_cases:
                    self._load(*c)
            self.train_set = FolderSegDataset(self.train_cases, self._load, self.train_transform(),
                                              self.samples_per_epoch, self.cache)
        if self.val_set is None:
            self.val_set = FolderSegDataset(self.val_cases, self._load, None, None, self.cache)
            if not self.cache:
                for c in self.val_cases:
                    self._load(*c)

    def _loader(self, ds: FolderSegDataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
                          drop_last=shuffle and len(ds) > batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, 1, False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
