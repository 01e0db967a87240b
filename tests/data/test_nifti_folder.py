"""NiftiFolderDataModule: image and label folders matched by stem, own validation folders or a seeded split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nifti_fixtures import SHAPE, make_case, write_nifti
from zoo.data.nifti_folder import NiftiFolderDataModule


def make_folders(root: Path, names: list[str], image_suffix: str = "", seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    for name in names:
        image, label = make_case(rng)
        write_nifti(root / "images" / f"{name}{image_suffix}.nii.gz", image)
        write_nifti(root / "labels" / f"{name}.nii.gz", label)
    return root / "images", root / "labels"


def _dm(images: Path, labels: Path, **kw) -> NiftiFolderDataModule:
    args = dict(num_classes=3, patch_size=(8, 8, 8), batch_size=2, samples_per_volume=2, num_workers=0)
    args.update(kw)
    return NiftiFolderDataModule(str(images), str(labels), **args)


def test_pairs_by_stem_with_validation_folders(tmp_path: Path) -> None:
    images, labels = make_folders(tmp_path / "train", ["b", "a", "c"], image_suffix="_0000")
    val_images, val_labels = make_folders(tmp_path / "val", ["z"], image_suffix="_0000", seed=1)
    dm = _dm(images, labels, image_suffix="_0000", val_image_dir=str(val_images), val_label_dir=str(val_labels),
             class_names=["bg", "one", "two"])
    assert [r["name"] for r in dm.records] == ["a", "b", "c"]
    assert dm.records[0]["image"].endswith("a_0000.nii.gz") and dm.records[0]["label"].endswith("labels/a.nii.gz")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 8, 8, 8) and batch["label"].shape == (4, 8, 8, 8)
    assert batch["label"].dtype == torch.int64 and set(batch["name"]) <= {"a", "b", "c"}
    val = next(iter(dm.val_dataloader()))
    assert val["name"] == ["z"] and val["image"].shape == (1, 1) + SHAPE
    assert dm.describe()["class_names"] == ["bg", "one", "two"]


def test_seeded_fraction_split(tmp_path: Path) -> None:
    images, labels = make_folders(tmp_path, [f"c{i}" for i in range(5)])
    train, val = _dm(images, labels, val_fraction=0.4, seed=3)._split()
    train2, val2 = _dm(images, labels, val_fraction=0.4, seed=3)._split()
    assert len(val) == 2 and len(train) == 3 and val == val2 and train == train2
    assert {r["name"] for r in train} | {r["name"] for r in val} == {f"c{i}" for i in range(5)}


def test_val_from_train_tests_on_the_validation_folders(tmp_path: Path) -> None:
    images, labels = make_folders(tmp_path / "train", ["a", "b", "c", "d"])
    val_images, val_labels = make_folders(tmp_path / "val", ["y", "z"], seed=1)
    dm = _dm(images, labels, val_image_dir=str(val_images), val_label_dir=str(val_labels), val_from_train=0.25)
    assert [n for b in dm.test_dataloader() for n in b["name"]] == ["y", "z"]
    assert len(dm.case_split["val"]) == 1 and sorted(dm.case_split["train"] + dm.case_split["val"]) == list("abcd")
    clash_images, clash_labels = make_folders(tmp_path / "clash", ["b"], seed=2)
    with pytest.raises(ValueError, match=r"1 case\(s\) are in both the train and test sets, e.g. \['b'\]"):
        _dm(images, labels, val_image_dir=str(clash_images), val_label_dir=str(clash_labels), val_from_train=0.25,
            seed=1).setup("test")


def test_window_normalization_is_recorded_and_applied(tmp_path: Path) -> None:
    images, labels = make_folders(tmp_path, ["a", "b"])
    dm = _dm(images, labels, normalization="window", intensity_window=(50, 150), val_fraction=0.5)
    assert dm.normalization == {"kind": "window", "min": 50.0, "max": 150.0}
    dm.setup("validate")
    img = next(iter(dm.val_dataloader()))["image"]
    assert img.min() >= 0 and img.max() <= 1 and (img == 0).any() and (img == 1).any()
    with pytest.raises(ValueError, match="needs intensity_window"):
        _dm(images, labels, normalization="window")


def test_clear_errors(tmp_path: Path) -> None:
    images, labels = make_folders(tmp_path / "m", ["a", "b", "c"])
    (labels / "b.nii.gz").unlink()
    write_nifti(labels / "x.nii.gz", np.zeros(SHAPE, np.uint8))
    with pytest.raises(ValueError, match=r"image and label files must match by file stem; 1 image\(s\) in .* without "
                                         r"a matching label: 'b.nii.gz'; 1 label\(s\) in .* without a matching "
                                         r"image: 'x.nii.gz'"):
        _dm(images, labels)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="image folder .*empty holds no .nii/.nii.gz files"):
        _dm(empty, labels)
    with pytest.raises(FileNotFoundError, match="label folder not found"):
        _dm(images, tmp_path / "nope")

    images, labels = make_folders(tmp_path / "r", ["a", "b"])
    with pytest.raises(ValueError, match=r"label values \[2\] outside the classes 0..1 \(num_classes=2\)"):
        _dm(images, labels, num_classes=2, val_fraction=0.5).setup("fit")
    with pytest.raises(ValueError, match=r"image has 1 channel\(s\), expected in_channels=3"):
        _dm(images, labels, in_channels=3, val_fraction=0.5).setup("fit")
    with pytest.raises(ValueError, match="give both val_image_dir and val_label_dir"):
        _dm(images, labels, val_image_dir=str(images))
    with pytest.raises(ValueError, match=r"patch_size must be three positive ints, got \[8, 8\]"):
        _dm(images, labels, patch_size=(8, 8))


def test_case_names_follow_the_predict_and_eval_rule_for_upper_case_suffixes(tmp_path: Path) -> None:
    from zoo.data.msd import read_decathlon
    from zoo.volume_io import split_name

    images, labels = make_folders(tmp_path, ["a", "b"])
    (images / "a.nii.gz").rename(images / "a.NII.GZ")
    (labels / "b.nii.gz").rename(labels / "b.Nii.Gz")
    dm = _dm(images, labels, val_fraction=0.5)
    assert [r["name"] for r in dm.records] == ["a", "b"] == [split_name(images / n)[0] for n in ("a.NII.GZ", "b")]
    meta = tmp_path / "dataset.json"
    meta.write_text('{"labels": {"0": "bg", "1": "x"}, "modality": {"0": "MRI"}, '
                    '"training": [{"image": "./images/a.NII.GZ", "label": "./labels/a.nii.gz"}]}')
    assert read_decathlon(tmp_path)[1][0]["name"] == "a"
