"""Built-in procedural data: determinism, batch contract, difficulty (thin, not thresholdable), export round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from zoo.data import SegDataModule, SyntheticSegDataModule
from zoo.data.io import read_image, read_mask
from zoo.data.synthetic import generate_case
from zoo.data.normalize import normalize


def test_cases_are_reproducible_per_index():
    a_img, a_lab = generate_case(3, "train", 7, 2, (40, 48), 1)
    b_img, b_lab = generate_case(3, "train", 7, 2, (40, 48), 1)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert a_img.shape == (1, 40, 48) and a_img.dtype == np.uint16 and a_lab.dtype == np.int64
    for other in [(3, "train", 8), (4, "train", 7), (3, "val", 7)]:
        assert not np.array_equal(generate_case(*other, 2, (40, 48), 1)[0], a_img)
    # case i does not depend on how many cases the split holds
    small = SyntheticSegDataModule(image_size=32, num_train=2, num_val=3, seed=5).dataset("val")
    large = SyntheticSegDataModule(image_size=32, num_train=2, num_val=6, seed=5).dataset("val")
    torch.testing.assert_close(small.images, large.images[:3], rtol=0, atol=0)
    assert small.names == large.names[:3]


@pytest.mark.parametrize("dims,size,channels", [(2, 64, 1), (2, (48, 64), 3), (3, 24, 1)])
def test_batch_contract(dims, size, channels):
    dm = SyntheticSegDataModule(spatial_dims=dims, image_size=size, num_train=6, num_val=2, batch_size=4,
                                in_channels=channels)
    assert isinstance(dm, SegDataModule)
    dm.setup("fit")
    spatial = (size,) * dims if isinstance(size, int) else size
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, channels, *spatial) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (4, *spatial) and batch["label"].dtype == torch.int64
    assert len(batch["name"]) == 4 and all(isinstance(n, str) for n in batch["name"])
    assert int(batch["label"].max()) < dm.num_classes and int(batch["label"].min()) >= 0
    img = batch["image"].flatten(2)  # per-image, per-channel z-score
    torch.testing.assert_close(img.mean(-1), torch.zeros(4, channels), atol=1e-4, rtol=0)
    torch.testing.assert_close(img.std(-1, unbiased=False), torch.ones(4, channels), atol=1e-3, rtol=0)
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (1, channels, *spatial)
    d = dm.describe()
    assert d["num_classes"] == 4 and d["class_names"] == ["background", "blob", "box", "tube"]
    assert d["patch_size"] == list(spatial) and d["normalization"] == {"kind": "zscore"}


def test_every_class_present_and_tubes_are_thin():
    dm = SyntheticSegDataModule(image_size=64, num_train=1, num_val=24)
    labels = dm.dataset("val").labels.numpy()
    present = np.stack([[np.any(lab == c) for c in range(4)] for lab in labels])
    assert present.mean(0)[1:].min() >= 0.9, present.mean(0)
    # tube half-width: the largest distance to the outside, per case; radius 1.5-2.5 px => 3-5 px wide
    half = np.array([distance_transform_edt(lab == 3).max() for lab in labels if np.any(lab == 3)])
    assert np.median(half) <= 3.2 and half.min() >= 1.5, half


def _best_window_dice(x: np.ndarray, y: np.ndarray, bins: int = 32) -> float:
    """Best Dice of any intensity window ``lo <= x < hi`` (quantile grid) for the binary target ``y``."""
    edges = np.quantile(x, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    pos = np.concatenate([[0], np.cumsum(np.bincount(idx, weights=y, minlength=bins))])
    cnt = np.concatenate([[0], np.cumsum(np.bincount(idx, minlength=bins))])
    return max(float((2 * (pos[lo + 1:] - pos[lo]) / (cnt[lo + 1:] - cnt[lo] + y.sum())).max()) for lo in range(bins))


def test_not_thresholdable():
    ds = SyntheticSegDataModule(image_size=64, num_train=1, num_val=16, seed=1).dataset("val")
    x, lab = ds.images[:, 0].reshape(-1).numpy(), ds.labels.reshape(-1).numpy()
    scores = [_best_window_dice(x, (lab == c).astype(float)) for c in (1, 2, 3)]
    assert max(scores) < 0.6, scores  # a U-Net reaches > 0.9 (tools/check_synthetic.py)


def test_export_2d_round_trip(tmp_path):
    dm = SyntheticSegDataModule(image_size=(32, 40), num_train=1, num_val=3, seed=2)
    dm.export(tmp_path)
    ds = dm.dataset("val")
    for i, name in enumerate(ds.names):
        image = read_image(tmp_path / "images" / f"{name}.png")
        np.testing.assert_allclose(normalize(image, dm.normalization), ds.images[i].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_array_equal(read_mask(tmp_path / "masks" / f"{name}.png"), ds.labels[i].numpy())
    assert (tmp_path / "dataset.json").is_file()


def test_export_3d_round_trip(tmp_path):
    nib = pytest.importorskip("nibabel")
    dm = SyntheticSegDataModule(spatial_dims=3, image_size=20, num_train=1, num_val=2, seed=2)
    dm.export(tmp_path)
    ds = dm.dataset("val")
    for i, name in enumerate(ds.names):
        vol = np.asarray(nib.load(tmp_path / "images" / f"{name}.nii.gz").dataobj)[None]
        np.testing.assert_allclose(normalize(vol, dm.normalization), ds.images[i].numpy(), atol=1e-5, rtol=0)
        lab = np.asarray(nib.load(tmp_path / "masks" / f"{name}.nii.gz").dataobj)
        np.testing.assert_array_equal(lab, ds.labels[i].numpy())


@pytest.mark.parametrize("kwargs,match", [
    (dict(spatial_dims=4), "spatial_dims must be 2 or 3, got 4"),
    (dict(image_size=(64,)), r"image_size must be .* got \(64,\)"),
    (dict(image_size=8), "image_size must be an int >= 16"),
    (dict(in_channels=2), "in_channels must be 1 or 3 .* got 2"),
    (dict(num_train=0), "num_train must be an integer >= 1, got 0"),
    (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticSegDataModule(**kwargs)


def test_built_from_yaml_config():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_subclass_arguments(SegDataModule, "data")
    cfg = parser.parse_string("data:\n  class_path: zoo.data.SyntheticSegDataModule\n"
                              "  init_args: {image_size: 32, num_train: 4, num_val: 2, seed: 3}\n")
    dm = parser.instantiate_classes(cfg).data
    assert isinstance(dm, SyntheticSegDataModule) and dm.image_size == (32, 32) and dm.seed == 3
