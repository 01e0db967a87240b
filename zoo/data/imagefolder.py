"""Classification from ``root/train/<class>/*`` and ``root/val/<class>/*`` (e.g. Imagenette) for encoder pretraining.

Batches are ``{"image": float32 [B, 3, S, S], "label": int64 [B]}``. Training uses timm's ImageNet recipe
(random resized crop, flip, RandAugment, random erasing); evaluation resizes the short side and centre-crops.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["ImageFolderDataModule", "scan_image_folder"]

_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def scan_image_folder(folder: str | Path,
                      classes: Sequence[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """Sorted class names (sub-folders) and ``(path, class index)`` samples; ``classes`` fixes the expected classes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise ValueError(f"{folder} has no class sub-folders (expected {folder}/<class>/<image>)")
    if classes is not None and found != list(classes):
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise ValueError(f"{folder} classes do not match the training classes: missing {missing}, extra {extra}")
    samples = []
    for idx, name in enumerate(found):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in _EXTENSIONS)
        if not files:
            raise ValueError(f"class folder {folder / name} has no images ({', '.join(_EXTENSIONS)})")
        samples += [(p, idx) for p in files]
    return found, samples


class _ImageDataset(Dataset):
    def __init__(self, samples: list[tuple[Path, int]], transform: Callable[[Any], torch.Tensor]) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        from PIL import Image, UnidentifiedImageError
        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")  # some Imagenette images are grayscale
        except (OSError, UnidentifiedImageError) as e:
            raise ValueError(f"cannot read image file {path}: {e}") from e
        return {"image": self.transform(image), "label": label}


# timm's RandAugment recipe with the magnitude capped at 9 ('mmax9'): at magnitude 10, which 'mstd0.5' reaches about
# once in 40 draws, the increasing posterize keeps 0 bits, and Pillow >= 12 raises for that.
DEFAULT_RAND_AUGMENT = "rand-m9-mstd0.5-inc1-mmax9"


class ImageFolderDataModule(L.LightningDataModule):
    """ImageFolder classification (class = sub-folder name, sorted) with ``num_classes`` and ``in_channels`` set."""

    def __init__(self, root: str, image_size: int = 160, batch_size: int = 128, train_dir: str = "train",
                 val_dir: str = "val", crop_scale: Sequence[float] = (0.35, 1.0),
                 auto_augment: str | None = DEFAULT_RAND_AUGMENT, random_erasing: float = 0.25,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 num_workers: int = 4) -> None:
        super().__init__()
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std must be 3 values with std > 0, got mean={list(mean)}, std={list(std)}")
        self.root = Path(root)
        self.train_dir, self.val_dir = self.root / train_dir, self.root / val_dir
        self.class_names, self.train_samples = scan_image_folder(self.train_dir)
        self.num_classes, self.in_channels = len(self.class_names), 3
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.crop_scale, self.auto_augment, self.random_erasing = tuple(crop_scale), auto_augment, random_erasing
        self.mean, self.std = tuple(mean), tuple(std)
        # Same convention as the segmentation modules: values in the files' 0-255 scale.
        self.normalization = {"kind": "mean_std", "mean": [m * 255 for m in mean], "std": [s * 255 for s in std]}
        self.val_samples: list[tuple[Path, int]] | None = None

    def describe(self) -> dict:
        """Facts the classifier is built from and stores in its checkpoint (linked into the model by `zoo fit`)."""
        return dict(task="classification", num_classes=self.num_classes, in_channels=self.in_channels,
                    spatial_dims=2, image_size=self.image_size, class_names=list(self.class_names),
                    normalization=dict(self.normalization))

    def setup(self, stage: str | None = None) -> None:
        if self.val_samples is None:
            _, self.val_samples = scan_image_folder(self.val_dir, self.class_names)

    def _transform(self, train: bool) -> Callable[[Any], torch.Tensor]:
        from timm.data import create_transform
        if train:
            return create_transform(self.image_size, is_training=True, scale=self.crop_scale,
                                    auto_augment=self.auto_augment, re_prob=self.random_erasing,
                                    interpolation="bicubic", mean=self.mean, std=self.std)
        return create_transform(self.image_size, is_training=False, crop_pct=1.0, interpolation="bicubic",
                                mean=self.mean, std=self.std)

    def _loader(self, samples: list, train: bool) -> DataLoader:
        return DataLoader(_ImageDataset(samples, self._transform(train)), batch_size=self.batch_size, shuffle=train,
                          drop_last=train and len(samples) >= self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_samples, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_samples, train=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
