"""ImageFolderDataModule on generated JPEG class folders (plus grayscale and corrupt files)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data.imagefolder import DEFAULT_RAND_AUGMENT, ImageFolderDataModule


def make_imagefolder(root: Path, classes: tuple[str, ...] = ("n02", "n01", "n03"), per_class: int = 3,
                     size: tuple[int, int] = (40, 32)) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.JPEG", quality=90)
    Image.fromarray(np.full((size[1], size[0]), 77, np.uint8)).save(root / "val" / classes[0] / "gray.JPEG")
    return root


def test_batches_labels_and_transforms(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "imnette")
    dm = ImageFolderDataModule(str(root), image_size=24, batch_size=4, num_workers=0)
    assert dm.class_names == ["n01", "n02", "n03"] and (dm.num_classes, dm.in_channels) == (3, 3)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 24, 24) and batch["image"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and set(batch["label"].tolist()) <= {0, 1, 2}
    dm.setup("fit")
    labels, grays = [], []
    for b in dm.val_dataloader():
        labels += b["label"].tolist()
        assert b["image"].shape[1:] == (3, 24, 24)
        grays.append(b["image"])
    assert sorted(labels) == [0] * 3 + [1] * 4 + [2] * 3  # class n02 holds the extra grayscale image
    # the grayscale image (value 77 everywhere) is converted to RGB and normalised with the ImageNet statistics
    gray = torch.cat(grays)[[i for i, (p, _) in enumerate(dm.val_samples) if p.name == "gray.JPEG"][0]]
    mean, std = torch.tensor(dm.normalization["mean"]), torch.tensor(dm.normalization["std"])
    assert torch.allclose(gray.mean((1, 2)), (77 - mean) / std, atol=0.02)


def test_clear_errors(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "a")
    (root / "val" / "n01").rename(root / "val" / "n09")
    dm = ImageFolderDataModule(str(root), num_workers=0)
    with pytest.raises(ValueError, match=r"classes do not match the training classes: "
                                         r"missing \['n01'\], extra \['n09'\]"):
        dm.setup("fit")

    root = make_imagefolder(tmp_path / "b")
    (root / "train" / "n03" / "0.JPEG").write_bytes(b"not a jpeg")
    dm = ImageFolderDataModule(str(root), image_size=16, batch_size=1, num_workers=0)
    with pytest.raises(ValueError, match="cannot read image file .*n03/0.JPEG"):
        for _ in dm.train_dataloader():
            pass

    (tmp_path / "c" / "train" / "empty_class").mkdir(parents=True)
    with pytest.raises(ValueError, match="class folder .*empty_class has no images"):
        ImageFolderDataModule(str(tmp_path / "c"))
    (tmp_path / "d" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="has no class sub-folders"):
        ImageFolderDataModule(str(tmp_path / "d"))
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolderDataModule(str(tmp_path / "nope"))


def test_real_imagenette_one_batch(shared_datasets: Path) -> None:
    dm = ImageFolderDataModule(str(shared_datasets / "imagenette2-160"), batch_size=8, num_workers=0)
    dm.setup("fit")
    assert dm.num_classes == 10 and len(dm.train_samples) == 9469 and len(dm.val_samples) == 3925
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 160, 160) and batch["label"].max() < 10
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (8, 3, 160, 160)


def test_default_rand_augment_never_posterizes_to_zero_bits() -> None:
    """timm's increasing posterize keeps 0 bits at magnitude 10, which Pillow >= 12 rejects; the default recipe caps
    the magnitude below that. 4000 draws of 2 ops reach magnitude 10 with the uncapped recipe almost surely."""
    import random

    from timm.data.auto_augment import rand_augment_transform

    random.seed(0)
    augment = rand_augment_transform(DEFAULT_RAND_AUGMENT, {})
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    for _ in range(4000):
        augment(image)
