"""zoo.data.cases: the one case-name, pairing and label-range rules that training, predict and eval share."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.data.cases import (NIFTI_SUFFIXES, case_files, check_label_range, files_by_stem, pair_by_stem,
                             split_name)
from zoo.data.io import IMAGE_SUFFIXES


def test_split_name_is_case_insensitive_and_keeps_nii_gz_whole():
    assert split_name("d/a.b.NII.GZ") == ("a.b", ".nii.gz")
    assert split_name("X.Nii") == ("X", ".nii")
    assert split_name("img.PNG") == ("img", ".png")


def test_pairing_lists_every_unmatched_file_per_side():
    left = files_by_stem([Path(f"i/{n}.png") for n in ("a", "b", *(f"x{i:02d}" for i in range(12)))], "images")
    right = files_by_stem([Path("m/a.png"), Path("m/zz.tif")], "masks")
    with pytest.raises(ValueError) as e:
        pair_by_stem(left, right, ("image", "mask"), ("i", "m"), " (note)")
    msg = str(e.value)
    assert msg.startswith("image and mask files must match by file stem (note); 13 image(s) in 'i' without a "
                          "matching mask: 'b.png', 'x00.png'")
    assert "'x08.png' (and 3 more); 1 mask(s) in 'm' without a matching image: 'zz.tif'" in msg
    assert pair_by_stem({"a": Path("i/a.png")}, {"a": Path("m/a.png")}, ("image", "mask"), ("i", "m")) == \
        [("a", Path("i/a.png"), Path("m/a.png"))]


def test_files_by_stem_refuses_two_files_for_one_case():
    with pytest.raises(ValueError, match=r"--pred: two files for case 'a': 'a.png' and 'a.nii.gz'; keep one"):
        files_by_stem(["p/a.png", "p/a.nii.gz"], "--pred")
    with pytest.raises(ValueError, match=r"two files for case 'a': 'a_0000.nii' and 'a.nii'"):
        files_by_stem(["a_0000.nii", "a.nii"], "images", key=lambda s: s.removesuffix("_0000"))


@pytest.mark.parametrize("labels,shown", [(np.array([[0, 1], [2, 255]]), r"\[255\] .*\(a 0/255 binary mask"),
                                          (np.array([0.0, 1.5, -1.0]), r"\[-1, 1.5\]"),
                                          (torch.tensor([0, 3, 7], dtype=torch.uint8), r"\[3, 7\]"),
                                          (np.array([0.0, np.nan]), r"\[nan\]"),
                                          (np.arange(20), r"\[3, 4, 5, 6, 7, 8, 9, 10, 11, 12\] \(and 7 more\)")])
def test_label_range_names_source_range_and_values(labels, shown):
    with pytest.raises(ValueError, match=r"^case x: label file f.nii holds label values " + shown):
        check_label_range(labels, 3, "case x: label file f.nii")
    with pytest.raises(ValueError, match=r"outside the classes 0..2 \(--num-classes=3\)"):
        check_label_range(labels, 3, "p.png", "--num-classes")


def test_label_range_accepts_valid_maps():
    for labels in (np.array([0, 1, 2]), np.array([0.0, 2.0]), torch.tensor([1, 0]), np.array([True, False]),
                   np.zeros((0, 4))):
        check_label_range(labels, 3, "ok")
    with pytest.raises(ValueError, match="ok must hold integer class indices 0..2, got dtype <U1"):
        check_label_range(np.array(["a"]), 3, "ok")


def test_case_files_lists_matching_files_and_names_the_folder(tmp_path):
    for name in ("b.png", "a.PNG", "c.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [f.name for f in case_files(tmp_path, "images", IMAGE_SUFFIXES, "PNG")] == ["a.PNG", "b.png"]
    with pytest.raises(ValueError, match=r"labels folder .* holds no \.nii/\.nii\.gz files"):
        case_files(tmp_path, "labels", NIFTI_SUFFIXES, ".nii/.nii.gz")
    with pytest.raises(FileNotFoundError, match="images folder not found: .*nowhere"):
        case_files(tmp_path / "nowhere", "images", IMAGE_SUFFIXES, "PNG")
    with pytest.raises(NotADirectoryError, match="images must be a folder, got a file: .*b.png"):
        case_files(tmp_path / "b.png", "images", IMAGE_SUFFIXES, "PNG")
