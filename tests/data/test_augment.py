"""Augmentation specs (2-D albumentations, 3-D MONAI) and the recorded normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.data.augment import AUGMENT_2D_OPS, build_augment_2d, build_augment_3d
from zoo.data.normalize import normalize


def test_every_2d_op_keeps_masks_as_labels() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (28, 28)).astype(np.uint8)
    roi = np.ones((28, 28), np.uint8)
    aug = build_augment_2d({name: 1.0 for name in AUGMENT_2D_OPS}, extra_masks=("roi",), patch_size=(28, 28))
    aug.set_random_seed(0)
    assert len(aug.transforms) == len(AUGMENT_2D_OPS)
    out = aug(image=image, mask=mask, roi=roi)
    assert out["image"].shape == image.shape and out["image"].dtype == np.uint8
    assert set(np.unique(out["mask"]).tolist()) <= {0, 1, 2}  # nearest-neighbour: no blended label values
    assert set(np.unique(out["roi"]).tolist()) <= {0, 1}


def test_2d_geometry_is_shared_by_image_and_masks() -> None:
    image = np.zeros((20, 20, 1), np.uint8)
    image[2:6, 3:9] = 200
    mask = (image[..., 0] > 0).astype(np.uint8)
    aug = build_augment_2d({"vflip": 1.0, "rotate": {"limit": 45, "p": 1.0}}, extra_masks=("roi",))
    aug.set_random_seed(0)
    out = aug(image=image, mask=mask, roi=mask.copy())
    assert np.array_equal(out["mask"], out["roi"])
    moved = out["image"][..., 0] > 100
    assert (moved & (out["mask"] > 0)).sum() >= 0.8 * max(moved.sum(), out["mask"].sum())


def test_spec_errors_and_off_switches() -> None:
    assert build_augment_2d(None) is None and build_augment_2d({"hflip": None, "vflip": False}) is None
    assert len(build_augment_2d({"hflip": True, "scale": {"range": [0.9, 1.1]}}).transforms) == 2
    with pytest.raises(ValueError, match=r"augment.hflip: a number is a probability in \[0, 1\], got 2"):
        build_augment_2d({"hflip": 2})
    with pytest.raises(ValueError, match=r"augment.elastic accepts parameters \['alpha', 'sigma', 'p'\], "
                                         r"got unknown \['beta'\]"):
        build_augment_2d({"elastic": {"beta": 1}})
    with pytest.raises(ValueError, match="augment.noise.p must be a probability"):
        build_augment_2d({"noise": {"p": -0.1}})
    with pytest.raises(ValueError, match="augment must be a dict"):
        build_augment_2d(["hflip"])  # type: ignore[arg-type]
    assert build_augment_3d(None) == [] and len(build_augment_3d({"flip": 0.5})) == 3  # one flip per axis
    with pytest.raises(ValueError, match=r"augment.rot90 needs equal patch sizes .* got patch_size=\[16, 12\]"):
        build_augment_2d({"rot90": 0.5}, patch_size=(16, 12))
    assert build_augment_2d({"rot90": 0.5}, patch_size=(16, 16)) is not None
    with pytest.raises(ValueError, match=r"rotated axes \[1, 2\], got patch_size=\[8, 8, 4\]"):
        build_augment_3d({"rot90": {"axes": [1, 2]}}, patch_size=(8, 8, 4))
    assert len(build_augment_3d({"rot90": 0.5}, patch_size=(8, 8, 4))) == 1


def test_3d_flip_applies_to_image_and_label() -> None:
    from monai.transforms import Compose
    t = Compose(build_augment_3d({"flip": {"p": 1.0, "axes": [1]}}))
    image, label = torch.arange(24.0).reshape(1, 2, 3, 4), torch.arange(24).reshape(1, 2, 3, 4)
    out = t({"image": image, "label": label})
    assert torch.equal(torch.as_tensor(out["image"]), image.flip(2))
    assert torch.equal(torch.as_tensor(out["label"]), label.flip(2))


def test_normalize_kinds_match_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(50, 10, (3, 7, 5)).astype(np.float32)
    z = normalize(x, {"kind": "zscore"})
    ref = (x - x.mean((1, 2), keepdims=True)) / x.std((1, 2), keepdims=True)
    assert isinstance(z, np.ndarray) and z.dtype == np.float32 and np.allclose(z, ref, atol=1e-5)
    sel = normalize(x, {"kind": "mean_std", "mean": [1, 3], "std": [2, 8], "channels": [0, 2]})
    assert np.allclose(sel, (x[[0, 2]] - np.array([1, 3])[:, None, None]) / np.array([2, 8])[:, None, None])
    t = normalize(torch.from_numpy(x), {"kind": "mean_std", "mean": [1, 3], "std": [2, 8], "channels": [0, 2]})
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.from_numpy(sel))
    w = normalize(x, {"kind": "window", "min": 40, "max": 60})
    assert np.allclose(w, (np.clip(x, 40, 60) - 40) / 20)
    assert np.array_equal(normalize(x, {"kind": "none", "channels": [1]}), x[[1]])
    flat = normalize(np.full((1, 4, 4), 3.0), {"kind": "zscore"})
    assert np.isfinite(flat).all() and np.allclose(flat, 0)


def test_normalize_errors() -> None:
    x = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="normalization kind must be one of"):
        normalize(x, {"kind": "minmax"})
    with pytest.raises(ValueError, match=r"selects channels \[1\] but the image has 1 channel"):
        normalize(x, {"kind": "zscore", "channels": [1]})
    with pytest.raises(ValueError, match="has 2 mean/std values but the image has 1 channels"):
        normalize(x, {"kind": "mean_std", "mean": [0, 0], "std": [1, 1]})
    with pytest.raises(ValueError, match="accepts keys .* got extra \\['mean'\\]"):
        normalize(x, {"kind": "zscore", "mean": [0]})
    with pytest.raises(ValueError, match="needs min < max"):
        normalize(x, {"kind": "window", "min": 1, "max": 1})
