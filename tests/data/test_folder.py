"""Image/mask folder data module and 2-D IO: pairing, splits, crops, augmentation, and errors that name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data import FolderSegDataModule, SegDataModule
from zoo.data.io import read_image, read_mask
from zoo.data.normalize import ZSCORE, normalize


def _write(folder: Path, stem: str, image: np.ndarray, mask: np.ndarray | None = None, ext: str = ".png") -> None:
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "msk").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "img" / f"{stem}{ext}")
    if mask is not None:
        Image.fromarray(mask.astype(np.uint8)).save(folder / "msk" / f"{stem}.png")


def _dataset(root: Path, n: int = 5, size: tuple[int, int] = (24, 20), rgb: bool = False) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        shape = (*size, 3) if rgb else size
        _write(root, f"case{i}", rng.integers(0, 255, shape, dtype=np.uint8), rng.integers(0, 3, size))


@pytest.mark.parametrize("cache", [True, False])
def test_pairs_split_and_batches(tmp_path, cache):
    _dataset(tmp_path, n=5, rgb=True)
    kw = dict(num_classes=3, train_images=str(tmp_path / "img"), train_masks=str(tmp_path / "msk"),
              val_fraction=0.4, patch_size=16, batch_size=2, seed=1, cache=cache)
    dm = FolderSegDataModule(**kw)
    assert isinstance(dm, SegDataModule) and dm.in_channels == 3 and dm.spatial_dims == 2
    train = {p[0].stem for p in dm.train_cases}
    val = {p[0].stem for p in dm.val_cases}
    assert len(val) == 2 and len(train) == 3 and not train & val
    assert val == {p[0].stem for p in FolderSegDataModule(**kw).val_cases}  # seeded split
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (2, 16, 16) and batch["label"].dtype == torch.int64
    assert set(batch["name"]) <= train
    vb = next(iter(dm.val_dataloader()))
    assert vb["image"].shape == (1, 3, 24, 20) and vb["name"][0] in val
    assert dm.describe()["class_names"] == ["background", "class_1", "class_2"]


def test_explicit_val_folders_and_padding(tmp_path):
    _dataset(tmp_path / "tr", n=2, size=(10, 12))
    _dataset(tmp_path / "va", n=1, size=(10, 12))
    dm = FolderSegDataModule(num_classes=3, train_images=str(tmp_path / "tr/img"), train_masks=str(tmp_path / "tr/msk"),
                             val_images=str(tmp_path / "va/img"), val_masks=str(tmp_path / "va/msk"),
                             patch_size=(16, 20), batch_size=2, augment=False, samples_per_epoch=6)
    dm.setup("fit")
    assert len(dm.train_set) == 6 and len(dm.val_cases) == 1
    for batch in dm.train_dataloader():
        assert batch["image"].shape == (2, 1, 16, 20)
        image, label = batch["image"][:, 0], batch["label"]
        # the 10x12 image fills a 10x12 window of the patch: outside it, image 0 and label 0 (padding)
        inside = torch.zeros(2, 16, 20, dtype=torch.bool)
        for b in range(2):
            rows = (image[b] != 0).any(1).nonzero()
            cols = (image[b] != 0).any(0).nonzero()
            r0, c0 = int(rows.min()), int(cols.min())
            inside[b, r0:r0 + 10, c0:c0 + 12] = True
        assert (image[~inside] == 0).all() and (label[~inside] == 0).all()
        assert inside.sum() == 2 * 120


def test_augmentation_keeps_image_and_mask_aligned(tmp_path):
    rng = np.random.default_rng(3)
    mask = np.zeros((16, 16), np.uint8)
    mask[2:7, 3:12] = 1
    mask[10:14, 1:4] = 2
    image = (mask * 60 + rng.integers(0, 40, (16, 16))).astype(np.uint8)
    _write(tmp_path, "a", image, mask)
    _write(tmp_path, "b", image, mask)
    dm = FolderSegDataModule(num_classes=3, train_images=str(tmp_path / "img"), train_masks=str(tmp_path / "msk"),
                             patch_size=16, batch_size=1, augment=True, samples_per_epoch=24, val_fraction=0.5)
    dm.setup("fit")
    ref = normalize(image[None].astype(np.float32), ZSCORE)[0]
    ops = [lambda x, k=k, f=f: np.rot90(x[:, ::-1] if f else x, k) for k in range(4) for f in (0, 1)]
    seen = set()
    for i in range(len(dm.train_set)):
        s = dm.train_set[i]
        lab, img = s["label"].numpy(), s["image"][0].numpy()
        match = [j for j, op in enumerate(ops) if np.array_equal(op(mask), lab)]
        assert match, "label is not a flip/rotation of the mask"
        seen.add(match[0])
        assert np.corrcoef(ops[match[0]](ref).ravel(), img.ravel())[0, 1] > 0.99  # same geometry for the image
    assert len(seen) >= 3  # augmentation actually varies
    dm_off = FolderSegDataModule(num_classes=3, train_images=str(tmp_path / "img"), train_masks=str(tmp_path / "msk"),
                                 patch_size=16, augment=False, val_fraction=0.5)
    dm_off.setup("fit")
    np.testing.assert_allclose(dm_off.train_set[0]["image"][0].numpy(), ref, atol=1e-6)


def test_augment_spec_uses_the_shared_2d_builder(tmp_path):
    from zoo.data.albu_ops import ScaleShift

    rng = np.random.default_rng(4)
    mask = np.zeros((16, 16), np.uint8)
    mask[2:7, 3:12] = 1
    image = (mask * 60 + rng.integers(0, 40, (16, 16))).astype(np.uint8)
    _write(tmp_path, "a", image, mask)
    _write(tmp_path, "b", image, mask)
    kw = dict(num_classes=3, train_images=str(tmp_path / "img"), train_masks=str(tmp_path / "msk"), patch_size=16,
              val_fraction=0.5, samples_per_epoch=8)
    ref = normalize(image[None].astype(np.float32), ZSCORE)[0]
    dm = FolderSegDataModule(augment={"hflip": 1.0}, **kw)  # a spec, not just on/off: exactly one flip
    dm.setup("fit")
    for i in range(len(dm.train_set)):
        s = dm.train_set[i]
        np.testing.assert_array_equal(s["label"].numpy(), mask[:, ::-1])
        np.testing.assert_allclose(s["image"][0].numpy(), ref[:, ::-1], atol=1e-6)
    dm = FolderSegDataModule(augment={"intensity": {"scale": 0.5, "shift": 1.0, "p": 1.0}}, **kw)
    dm.setup("fit")
    gains = set()
    for i in range(len(dm.train_set)):
        img = dm.train_set[i]["image"][0].numpy().ravel()
        a, b = np.polyfit(ref.ravel(), img, 1)
        assert 0.5 <= a <= 1.5 and -1.0 <= b <= 1.0 and (img.min() < 0 or img.max() > 1)  # not clipped to [0, 1]
        np.testing.assert_allclose(img, a * ref.ravel() + b, atol=1e-4)
        gains.add(round(float(a), 4))
    assert len(gains) > 1
    default = [type(t).__name__ for t in FolderSegDataModule(**kw).train_transform().transforms]
    assert default == ["PadIfNeeded", "RandomCrop", "HorizontalFlip", "VerticalFlip", "RandomRotate90", "ScaleShift"]
    kw["patch_size"] = (16, 12)
    default = [type(t) for t in FolderSegDataModule(**kw).train_transform().transforms]
    assert ScaleShift in default and len(default) == 5  # no quarter turns on a non-square patch
    with pytest.raises(ValueError, match=r"augment.rot90 needs equal patch sizes .* got patch_size=\[16, 12\]"):
        FolderSegDataModule(augment={"rot90": 0.5}, **kw)
    with pytest.raises(ValueError, match=r"unknown 2-D augmentation\(s\) \['twirl'\]"):
        FolderSegDataModule(augment={"twirl": 0.5}, **kw)


def _module(root: Path, **kw) -> FolderSegDataModule:
    args = dict(num_classes=3, train_images=str(root / "img"), train_masks=str(root / "msk"), patch_size=8)
    args.update(kw)
    dm = FolderSegDataModule(**args)
    dm.setup("fit")
    return dm


def test_unmatched_stems_are_named(tmp_path):
    _dataset(tmp_path, n=3)
    (tmp_path / "msk" / "case1.png").rename(tmp_path / "msk" / "other.png")
    with pytest.raises(ValueError, match=r"1 image\(s\) in '.*img' without a matching mask: 'case1.png'; "
                                         r"1 mask\(s\) in '.*msk' without a matching image: 'other.png'"):
        _module(tmp_path)


def test_mask_size_mismatch(tmp_path):
    _dataset(tmp_path, n=3)
    Image.fromarray(np.zeros((24, 21), np.uint8)).save(tmp_path / "msk" / "case2.png")
    with pytest.raises(ValueError, match=r"mask .*case2.png has size \(24, 21\).*image .*case2.png has size \(24, 20\)"):
        _module(tmp_path)


def test_label_out_of_range(tmp_path):
    _dataset(tmp_path, n=3)
    m = np.zeros((24, 20), np.uint8)
    m[3, 3] = 255
    Image.fromarray(m).save(tmp_path / "msk" / "case0.png")
    with pytest.raises(ValueError, match=r"mask .*case0.png holds label values \[255\] outside the classes 0..2 "
                                         r"\(num_classes=3\) \(a 0/255"):
        _module(tmp_path)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    (tmp_path / "img" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"images folder .*img holds no PNG/JPEG/TIFF files"):
        _module(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"images folder not found: .*nowhere"):
        _module(tmp_path, train_images=str(tmp_path / "nowhere"))


def test_corrupt_file_and_wrong_channels(tmp_path):
    _dataset(tmp_path, n=3)
    with pytest.raises(ValueError, match=r"image .*case0.png has 1 channel\(s\); expected in_channels=3"):
        _module(tmp_path, in_channels=3)
    (tmp_path / "img" / "case1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match=r"cannot read image file .*case1.png \(corrupt or not an image\)"):
        _module(tmp_path)


def test_bad_arguments(tmp_path):
    _dataset(tmp_path, n=3)
    with pytest.raises(ValueError, match="val_images and val_masks must be given together"):
        _module(tmp_path, val_images=str(tmp_path / "img"))
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\).*got 1.5"):
        _module(tmp_path, val_fraction=1.5)
    with pytest.raises(ValueError, match=r"patch_size must be .* got \(8, 8, 8\)"):
        _module(tmp_path, patch_size=(8, 8, 8))
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        _module(tmp_path, num_classes=1)


def test_read_formats(tmp_path):
    rng = np.random.default_rng(0)
    gray16 = rng.integers(0, 65535, (7, 9), dtype=np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png"), gray16[None].astype(np.float32))
    Image.fromarray(gray16).save(tmp_path / "g16.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "g16.tif"), gray16[None].astype(np.float32))
    f32 = rng.normal(size=(7, 9)).astype(np.float32)
    Image.fromarray(f32).save(tmp_path / "f.tiff")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff"), f32[None])
    rgba = rng.integers(0, 255, (7, 9, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), rgba[..., :3].transpose(2, 0, 1))
    Image.fromarray(rgba[..., :3]).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").shape == (3, 7, 9)
    # palette mask: values are the palette indices (Pascal VOC style)
    idx = rng.integers(0, 4, (7, 9), dtype=np.uint8)
    pal = Image.fromarray(idx, mode="P")
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 0, 0, 128] + [0] * 756)
    pal.save(tmp_path / "p.png")
    m = read_mask(tmp_path / "p.png")
    assert m.dtype == np.int64 and np.array_equal(m, idx)
    with pytest.raises(ValueError, match=r"mask file .*c.png is a colour \(RGBA\) image"):
        read_mask(tmp_path / "c.png")
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(ValueError, match=r"must be one of .png.*got suffix '.bmp'"):
        read_image(tmp_path / "x.bmp")


def test_read_gif_as_gray_levels(tmp_path):
    gray = np.zeros((6, 7), np.uint8)
    gray[1:4, 2:5], gray[5, 0] = 255, 128
    Image.fromarray(gray).save(tmp_path / "m.gif")  # PIL stores it as a palette GIF (indices 0, 1, 2)
    assert Image.open(tmp_path / "m.gif").mode == "P"
    np.testing.assert_array_equal(read_mask(tmp_path / "m.gif"), gray.astype(np.int64))
    image = read_image(tmp_path / "m.gif")
    assert image.shape == (3, 6, 7) and np.array_equal(image[1], gray.astype(np.float32))
    colour = Image.fromarray(np.zeros((6, 7), np.uint8), mode="P")
    colour.putpalette([200, 0, 0] + [0] * 765)
    colour.save(tmp_path / "c.gif")
    with pytest.raises(ValueError, match=r"mask file .*c.gif is a colour \(RGB\) image"):
        read_mask(tmp_path / "c.gif")


def test_built_from_yaml_config(tmp_path):
    from jsonargparse import ArgumentParser

    _dataset(tmp_path, n=3)
    parser = ArgumentParser()
    parser.add_subclass_arguments(SegDataModule, "data")
    cfg = parser.parse_string(f"data:\n  class_path: zoo.data.FolderSegDataModule\n  init_args:\n"
                              f"    num_classes: 3\n    train_images: {tmp_path / 'img'}\n"
                              f"    train_masks: {tmp_path / 'msk'}\n    patch_size: [16, 8]\n    augment: false\n")
    dm = parser.instantiate_classes(cfg).data
    assert isinstance(dm, FolderSegDataModule) and dm.patch_size == (16, 8) and not dm.augment
    spec = cfg.as_dict()
    spec["data"]["init_args"]["augment"] = {"vflip": 0.5, "intensity": {"scale": 0.2}}
    dm = parser.instantiate_classes(parser.parse_object(spec)).data
    assert dm.augment_spec == {"vflip": 0.5, "intensity": {"scale": 0.2}}
