"""DriveDataModule on a tiny generated copy of the official DRIVE layout (tif images, gif annotations and FOV)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data.drive import DriveDataModule

H, W = 36, 40


def _write_case(root: Path, split: str, cid: str, rng: np.random.Generator, size: tuple[int, int] = (H, W)) -> None:
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    fov = ((yy - h / 2) ** 2 / (h / 2.2) ** 2 + (xx - w / 2) ** 2 / (w / 2.2) ** 2) <= 1
    vessels = (rng.random((h, w)) < 0.15) & fov
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for sub in ("images", "1st_manual", "mask"):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / split / "images" / f"{cid}_{split}.tif")
    Image.fromarray((vessels * 255).astype(np.uint8)).save(root / split / "1st_manual" / f"{cid}_manual1.gif")
    Image.fromarray((fov * 255).astype(np.uint8)).save(root / split / "mask" / f"{cid}_{split}_mask.gif")


def make_drive(root: Path, n_train: int = 5, n_test: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n_train):
        _write_case(root, "training", f"{21 + i}", rng)
    for i in range(n_test):
        _write_case(root, "test", f"{1 + i:02d}", rng)
    return root


@pytest.fixture
def drive(tmp_path: Path) -> Path:
    return make_drive(tmp_path / "DRIVE")


def _windows(a: np.ndarray, ph: int, pw: int) -> set[bytes]:
    """Every ph x pw window of ``a`` zero-padded by one patch on each side."""
    p = np.pad(a, ((ph, ph), (pw, pw)))
    return {p[y:y + ph, x:x + pw].tobytes() for y in range(p.shape[0] - ph + 1) for x in range(p.shape[1] - pw + 1)}


def test_batches_keep_the_contract_and_patches_come_from_their_case(drive: Path) -> None:
    dm = DriveDataModule(str(drive), patch_size=(16, 12), batch_size=4, patches_per_image=3, num_workers=0)
    dm.setup("fit")
    assert (len(dm.train_cases), len(dm.val_cases)) == (4, 1)
    assert (dm.num_classes, dm.in_channels, dm.spatial_dims) == (2, 1, 2)
    sources = {c.name: c for c in dm.train_cases}
    seen = 0
    for batch in dm.train_dataloader():
        assert batch["image"].shape == (4, 1, 16, 12) and batch["image"].dtype == torch.float32
        assert batch["label"].shape == (4, 16, 12) and batch["label"].dtype == torch.int64
        assert batch["roi"].dtype == torch.bool and set(batch["label"].unique().tolist()) <= {0, 1}
        for label, roi, name in zip(batch["label"], batch["roi"], batch["name"]):
            src = sources[name]
            assert roi.any()  # centred on a field-of-view pixel
            assert label.numpy().astype(np.uint8).tobytes() in _windows(src.label, 16, 12)
            assert roi.numpy().astype(np.uint8).tobytes() in _windows(src.fov.astype(np.uint8), 16, 12)
            assert not (label.bool() & ~roi).any()  # the fixture's vessels lie inside the FOV
            seen += 1
    assert seen == 12  # 4 images x 3 patches, no sample dropped
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (1, 1, H, W) and val["label"].shape == (1, H, W) and val["roi"].shape == (1, H, W)
    assert abs(val["image"].mean().item()) < 1e-4 and abs(val["image"].std(unbiased=False).item() - 1) < 1e-3
    green = np.asarray(Image.open(drive / "training/images" / f"{val['name'][0]}_training.tif"))[..., 1]
    z = (green - green.mean()) / green.std()
    assert np.allclose(val["image"][0, 0].numpy(), z, atol=1e-4)
    assert dm.describe()["normalization"] == {"kind": "zscore", "channels": [1]}


def test_full_size_patch_with_flip_matches_the_flipped_case(drive: Path) -> None:
    dm = DriveDataModule(str(drive), patch_size=(H, W), batch_size=1, patches_per_image=1, num_workers=0,
                         channels="rgb", augment={"hflip": 1.0})
    dm.setup("fit")
    sources = {c.name: c for c in dm.train_cases}
    batch = next(iter(dm.train_dataloader()))
    src = sources[batch["name"][0]]
    assert batch["image"].shape == (1, 3, H, W)
    assert torch.equal(batch["label"][0], torch.from_numpy(src.label[:, ::-1].astype(np.int64)))
    assert torch.equal(batch["roi"][0], torch.from_numpy(src.fov[:, ::-1].copy()))
    img = np.moveaxis(src.image[:, ::-1].astype(np.float64), -1, 0)
    z = (img - img.mean((1, 2), keepdims=True)) / img.std((1, 2), keepdims=True)
    assert np.allclose(batch["image"][0].numpy(), z, atol=1e-4)


def test_patch_larger_than_image_is_zero_padded(drive: Path) -> None:
    dm = DriveDataModule(str(drive), patch_size=(48, 48), batch_size=2, patches_per_image=1, num_workers=0)
    batch = next(iter(dm.train_dataloader()))
    assert batch["label"].shape == (2, 48, 48)
    by_name = {c.name: c for c in dm.train_cases}
    assert batch["roi"].sum(dim=(1, 2)).tolist() == [int(by_name[n].fov.sum()) for n in batch["name"]]
    assert batch["label"].sum(dim=(1, 2)).tolist() == [int(by_name[n].label.sum()) for n in batch["name"]]


def test_dataset_normalization_and_val_on_test(drive: Path) -> None:
    dm = DriveDataModule(str(drive), normalization="dataset", val_set="test", num_workers=0)
    dm.setup("fit")
    assert len(dm.train_cases) == 5 and [c.name for c in dm.val_cases] == ["01", "02"]
    pix = np.concatenate([c.image[..., 1].ravel() for c in dm.train_cases]).astype(np.float64)
    norm = dm.describe()["normalization"]
    assert norm["kind"] == "mean_std" and norm["channels"] == [1]
    assert np.allclose(norm["mean"], [pix.mean()]) and np.allclose(norm["std"], [pix.std()])
    dm.setup("test")
    test = next(iter(dm.test_dataloader()))
    assert test["name"] == ["01"] and test["roi"].any()
    fresh = DriveDataModule(str(drive), normalization="dataset", val_set="test", num_workers=0)
    fresh.setup("test")  # e.g. `zoo test` from a checkpoint: the training statistics are still the ones used
    assert fresh.describe()["normalization"] == norm


def test_workers_get_distinct_random_streams(drive: Path) -> None:
    dm = DriveDataModule(str(drive), patch_size=(8, 8), batch_size=2, patches_per_image=2, num_workers=0,
                         augment={"rotate": {"limit": 90, "p": 1.0}})
    ds = dm.train_dataloader().dataset
    ds.reseed(1)
    a = [ds[0]["label"] for _ in range(4)]
    ds.reseed(1)
    b = [ds[0]["label"] for _ in range(4)]
    ds.reseed(2)
    c = [ds[0]["label"] for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    dm.num_workers = 2
    names = [n for batch in dm.train_dataloader() for n in batch["name"]]
    assert len(names) == 8


def test_val_ids_and_bad_arguments(drive: Path) -> None:
    dm = DriveDataModule(str(drive), val_ids=["22", "24"], num_workers=0)
    dm.setup("fit")
    assert sorted(c.name for c in dm.val_cases) == ["22", "24"] and len(dm.train_cases) == 3
    with pytest.raises(ValueError, match=r"val_ids \['99'\] are not DRIVE training ids"):
        DriveDataModule(str(drive), val_ids=["99"]).setup("fit")
    with pytest.raises(ValueError, match="channels must be one of"):
        DriveDataModule(str(drive), channels="blue")
    with pytest.raises(ValueError, match=r"unknown 2-D augmentation\(s\) \['twirl'\]"):
        DriveDataModule(str(drive), augment={"twirl": 0.5})
    with pytest.raises(FileNotFoundError, match="DRIVE root not found"):
        DriveDataModule(str(drive / "nope"))


def test_clear_errors_for_broken_layouts(tmp_path: Path) -> None:
    root = make_drive(tmp_path / "a", n_train=3, n_test=1)
    (root / "training/1st_manual/22_manual1.gif").unlink()
    with pytest.raises(ValueError, match="22_training.tif has no manual annotation"):
        DriveDataModule(str(root)).setup("fit")

    root = make_drive(tmp_path / "b", n_train=3, n_test=1)
    _write_case(root, "training", "22", np.random.default_rng(1), size=(H, W))
    Image.fromarray(np.zeros((H + 2, W), np.uint8)).save(root / "training/mask/22_training_mask.gif")
    with pytest.raises(ValueError, match=r"FOV mask .*22_training_mask.gif has size \(38, 40\) but image"):
        DriveDataModule(str(root)).setup("fit")

    root = make_drive(tmp_path / "c", n_train=3, n_test=1)
    Image.fromarray(np.full((H, W), 128, np.uint8)).save(root / "training/1st_manual/23_manual1.gif")
    with pytest.raises(ValueError, match=r"23_manual1.gif: expected a binary mask .*got values \[128\]"):
        DriveDataModule(str(root)).setup("fit")

    root = make_drive(tmp_path / "d", n_train=3, n_test=1)
    (root / "training/images/21_training.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="cannot read image file .*21_training.tif"):
        DriveDataModule(str(root)).setup("fit")

    root = tmp_path / "e"
    (root / "training/images").mkdir(parents=True)
    with pytest.raises(ValueError, match="no .tif images in"):
        DriveDataModule(str(root)).setup("fit")


def test_real_drive_one_batch(shared_datasets: Path) -> None:
    dm = DriveDataModule(str(shared_datasets / "DRIVE"), patch_size=(64, 64), batch_size=2, num_workers=0,
                         augment={"hflip": 0.5, "rotate": 0.5, "elastic": 0.2, "brightness_contrast": 0.5})
    dm.setup("fit")
    assert (len(dm.train_cases), len(dm.val_cases)) == (16, 4)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 1, 64, 64) and batch["label"].max() == 1
    dm.setup("test")
    assert len(dm.test_cases) == 20 and dm.test_cases[0].image.shape == (584, 565, 3)
    fov_frac = dm.test_cases[0].fov.mean()
    assert 0.6 < fov_frac < 0.8  # the DRIVE field of view covers about 70 % of the frame
