"""DecathlonDataModule on a tiny generated MSD task (dataset.json, imagesTr/labelsTr NIfTI, split files)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nifti_fixtures import SHAPE, make_msd, write_nifti
from zoo.data.msd import DecathlonDataModule


def _dm(root: Path, **kw) -> DecathlonDataModule:
    args = dict(patch_size=(8, 8, 8), batch_size=2, samples_per_volume=3, num_workers=0, orientation=None)
    args.update(kw)
    return DecathlonDataModule(str(root), **args)


def test_split_files_contract_and_label_balanced_crops(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "Task99_Toy")
    dm = _dm(root, pos_fraction=1.0)
    assert (dm.num_classes, dm.in_channels, dm.spatial_dims) == (3, 1, 3)
    assert dm.class_names == ["background", "head", "tail"]
    dm.setup("fit")
    assert [r["name"] for r in dm.val_ds.data] == ["toy_004", "toy_005"] and len(dm.train_ds) == 4
    n = 0
    for batch in dm.train_dataloader():
        assert batch["image"].dtype == torch.float32 and batch["label"].dtype == torch.int64
        assert batch["image"].shape[1:] == (1, 8, 8, 8) and batch["label"].shape[1:] == (8, 8, 8)
        assert type(batch["image"]) is torch.Tensor  # plain tensors, not MONAI MetaTensors
        assert batch["image"].shape[0] == batch["label"].shape[0] == len(batch["name"])
        assert all((lab > 0).any() for lab in batch["label"])  # pos_fraction=1: every patch holds foreground
        n += batch["label"].shape[0]
    assert n == 4 * 3
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (1, 1) + SHAPE and val["label"].shape == (1,) + SHAPE and val["name"] == ["toy_004"]
    assert abs(val["image"].mean().item()) < 1e-4 and abs(val["image"].std(unbiased=False).item() - 1) < 1e-3
    assert dm.describe()["normalization"] == {"kind": "zscore"}
    assert (dm.describe()["orientation"], dm.describe()["spacing"]) == (None, None)
    assert _dm(root, orientation="RAS", spacing=(1, 1, 1.5)).describe()["spacing"] == [1, 1, 1.5]


def test_background_crops_miss_the_rare_foreground(tmp_path: Path) -> None:
    dm = _dm(make_msd(tmp_path / "t"), pos_fraction=0.0, patch_size=(4, 4, 4), samples_per_volume=4)
    labels = torch.cat([b["label"] for b in dm.train_dataloader()])
    assert (labels.flatten(1) > 0).any(1).float().mean() < 0.5  # negatives centred on background


def test_class_ratio_crops_centre_on_the_requested_class(tmp_path: Path) -> None:
    dm = _dm(make_msd(tmp_path / "t"), crop="classes", class_ratios=[0, 0, 1], patch_size=(3, 3, 3))
    labels = torch.cat([b["label"] for b in dm.train_dataloader()])
    assert (labels[:, 1, 1, 1] == 2).all()


def test_orientation_and_spacing_are_applied(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "t", n=3, split=False)
    rng = np.random.default_rng(3)
    label = rng.integers(0, 3, SHAPE).astype(np.uint8)
    flip_x = np.diag([-2.0, 1.0, 1.0, 1.0])  # first axis runs right-to-left at 2 mm
    for i in range(3):
        write_nifti(root / "imagesTr" / f"toy_{i:03d}.nii.gz", rng.normal(size=SHAPE).astype(np.float32), flip_x)
        write_nifti(root / "labelsTr" / f"toy_{i:03d}.nii.gz", label, flip_x)
    dm = _dm(root, orientation="RAS", val_fraction=0.34)
    dm.setup("validate")
    got = next(iter(dm.val_dataloader()))["label"][0].numpy()
    assert np.array_equal(got, label[::-1])
    dm = _dm(root, orientation="RAS", spacing=(1.0, 1.0, 1.0), val_fraction=0.34)
    dm.setup("validate")
    got = next(iter(dm.val_dataloader()))["label"][0].numpy()
    assert got.shape[0] in (2 * SHAPE[0] - 1, 2 * SHAPE[0]) and got.shape[1:] == SHAPE[1:]
    assert np.array_equal(got[::2][: SHAPE[0]], label[::-1])  # nearest keeps the labels


def test_no_split_files_uses_a_seeded_fraction(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "t", n=10, split=False)
    a, b = _dm(root, val_fraction=0.3, seed=1)._split(), _dm(root, val_fraction=0.3, seed=1)._split()
    assert [r["name"] for r in a[1]] == [r["name"] for r in b[1]] and len(a[1]) == 3 and len(a[0]) == 7
    assert not {r["name"] for r in a[0]} & {r["name"] for r in a[1]}


def _names(loader) -> list[str]:
    return [n for batch in loader for n in batch["name"]]


def test_val_from_train_validates_on_training_cases_and_tests_on_split_val(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "t", n=8)  # split_train: toy_000..toy_005, split_val: toy_006, toy_007
    split_train, split_val = [f"toy_{i:03d}" for i in range(6)], ["toy_006", "toy_007"]
    dm = _dm(root, val_from_train=0.34, seed=5)
    dm.setup("fit")
    cases = dm.case_split
    assert (len(cases["train"]), len(cases["val"]), cases["test"]) == (4, 2, split_val)
    assert sorted(cases["train"] + cases["val"]) == split_train and not set(cases["train"]) & set(cases["val"])
    assert len(dm.train_ds) == 4 and [r["name"] for r in dm.val_ds.data] == cases["val"] and dm.test_ds is None
    assert _names(dm.val_dataloader()) == cases["val"]
    assert _names(dm.test_dataloader()) == split_val == _names(dm.predict_dataloader())
    assert dm.describe() == _dm(root).describe()  # the checkpoint's data_info does not depend on the protocol

    again = _dm(root, val_from_train=0.34, seed=5)
    again.setup("test")  # builds the test set only
    assert again.case_split == cases and again.train_ds is None and again.val_ds is None
    assert _names(again.test_dataloader()) == split_val
    vals = {tuple(_dm(root, val_from_train=0.34, seed=s)._splits()[1][i]["name"] for i in range(2)) for s in range(6)}
    assert len(vals) > 1  # the seed picks the validation cases
    one = _dm(root, val_from_train=0.01)._splits()
    assert (len(one[0]), len(one[1]), len(one[2])) == (5, 1, 2)  # at least one validation case


def test_val_from_train_zero_keeps_validation_as_test(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "t", n=8)
    dm = _dm(root)
    dm.setup("test")
    assert dm.test_ds is dm.val_ds and dm.train_ds is None
    assert _names(dm.test_dataloader()) == _names(dm.val_dataloader()) == ["toy_006", "toy_007"]
    assert dm.case_split == {"train": [f"toy_{i:03d}" for i in range(6)], "val": ["toy_006", "toy_007"],
                             "test": ["toy_006", "toy_007"]}


def test_val_from_train_without_split_files_tests_on_the_seeded_hold_out(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "t", n=10, split=False)
    hold_out = [r["name"] for r in _dm(root, val_fraction=0.2, seed=1)._split()[1]]
    train, val, test = _dm(root, val_fraction=0.2, val_from_train=0.25, seed=1)._splits()
    assert [r["name"] for r in test] == hold_out and (len(train), len(val), len(test)) == (6, 2, 2)
    names = [{r["name"] for r in part} for part in (train, val, test)]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert len(set.union(*names)) == 10


def test_val_from_train_errors(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "t", n=3)  # one training case
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"val_from_train must be in \[0, 1\) .*got {bad}"):
            _dm(root, val_from_train=bad)
    with pytest.raises(ValueError, match=r"val_from_train=0.5 takes 1 of the 1 training case\(s\) for validation "
                                         r"and leaves none to train on"):
        _dm(root, val_from_train=0.5).setup("fit")
    root = make_msd(tmp_path / "no_split", n=4, split=False)
    with pytest.raises(ValueError, match=r"val_from_train=0.2 tests on the held-out split, which is empty"):
        _dm(root, val_fraction=0.0, val_from_train=0.2).setup("test")


def test_multimodal_task_and_augmentation(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "t", channels=2)
    aug = {"flip": 1.0, "rot90": 1.0, "rotate": {"degrees": 20, "p": 1.0}, "scale": 1.0, "intensity_scale": 1.0,
           "intensity_shift": 1.0, "noise": 1.0, "gamma": 1.0}
    dm = _dm(root, augment=aug)
    assert dm.in_channels == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape[1:] == (2, 8, 8, 8) and torch.isfinite(batch["image"]).all()
    assert set(batch["label"].unique().tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError, match=r"unknown 3-D augmentation\(s\) \['shear'\]"):
        _dm(root, augment={"shear": 0.5})
    with pytest.raises(ValueError, match=r"augment.rotate accepts parameters \['degrees', 'p'\], "
                                         r"got unknown \['limit'\]"):
        _dm(root, augment={"rotate": {"limit": 3}})


def test_clear_errors(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "labels")
    bad = np.zeros(SHAPE, np.uint8)
    bad[0, 0, 0] = 5
    write_nifti(root / "labelsTr/toy_004.nii.gz", bad)
    with pytest.raises(ValueError, match=r"case toy_004: label file .*labelsTr/toy_004.nii.gz holds label values "
                                         r"\[5\] outside the classes 0..2 \(num_classes=3\)"):
        _dm(root).setup("fit")

    root = make_msd(tmp_path / "size")
    write_nifti(root / "labelsTr/toy_001.nii.gz", np.zeros((5, 5, 5), np.uint8))
    with pytest.raises(ValueError, match=r"toy_001: image .* has size \(16, 14, 12\) "
                                         r"but label .* has size \(5, 5, 5\)"):
        _dm(root).setup("fit")

    root = make_msd(tmp_path / "corrupt")
    (root / "imagesTr/toy_002.nii.gz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read image file .*toy_002.nii.gz"):
        _dm(root).setup("fit")

    root = make_msd(tmp_path / "channels")
    meta = json.loads((root / "dataset.json").read_text())
    meta["modality"] = {"0": "T1", "1": "T2"}
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"image has 1 channel\(s\), expected in_channels=2"):
        _dm(root).setup("fit")

    root = make_msd(tmp_path / "split")
    (root / "split_val.txt").write_text("toy_005\nnot_a_case\n")
    with pytest.raises(ValueError, match="split_val.txt names 1 case.*not_a_case"):
        _dm(root).setup("fit")

    root = make_msd(tmp_path / "missing")
    (root / "imagesTr/toy_000.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="1 file.*listed in .*dataset.json are missing"):
        _dm(root)
    with pytest.raises(FileNotFoundError, match="must contain dataset.json"):
        _dm(tmp_path)
    with pytest.raises(ValueError, match=r"class_ratios needs 3 values"):
        _dm(make_msd(tmp_path / "ok"), crop="classes", class_ratios=[1, 1])


def test_real_hippocampus_one_batch(shared_datasets: Path) -> None:
    dm = DecathlonDataModule(str(shared_datasets / "Task04_Hippocampus"), patch_size=(40, 56, 40), batch_size=2,
                             samples_per_volume=2, cache_rate=0.02, num_workers=0, augment={"flip": 0.5})
    dm.setup("fit")
    assert len(dm.train_ds) == 208 and len(dm.val_ds) == 52 and dm.num_classes == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 40, 56, 40) and set(batch["label"].unique().tolist()) == {0, 1, 2}
    val = next(iter(dm.val_dataloader()))
    assert val["name"] == ["hippocampus_007"] and val["label"].shape[1:] == val["image"].shape[2:]
    train, val, test = DecathlonDataModule(str(shared_datasets / "Task04_Hippocampus"), val_from_train=0.2)._splits()
    assert (len(train), len(val), len(test)) == (166, 42, 52) and test == dm.val_ds.data
