"""zoo.postprocess.keep_largest_component against hand-built label maps."""
from __future__ import annotations

import numpy as np
import pytest

from zoo.postprocess import keep_largest_component


def test_keeps_the_largest_component_of_each_class_2d():
    labels = np.zeros((12, 14), np.int64)
    labels[1:5, 1:6] = 1      # class 1, 20 px: kept
    labels[8:10, 9:11] = 1    # class 1, 4 px: removed
    labels[6, 2] = 2          # class 2, its only component: kept
    labels[10:12, 0:3] = 2    # class 2, 6 px: kept (largest), so the single pixel goes
    out = keep_largest_component(labels, 3)
    expected = labels.copy()
    expected[8:10, 9:11] = 0
    expected[6, 2] = 0
    np.testing.assert_array_equal(out, expected)
    assert labels[8, 9] == 1, "the input is not modified"
    # only class 2 post-processed
    only2 = keep_largest_component(labels, 3, classes=[2])
    np.testing.assert_array_equal(only2[8:10, 9:11], 1)
    assert only2[6, 2] == 0


def test_connectivity_decides_whether_diagonal_voxels_join_3d():
    labels = np.zeros((5, 5, 5), np.uint8)
    labels[0:2, 0:2, 0:2] = 1   # 8 voxels
    labels[2, 2, 2] = 1         # touches the cube at a corner only
    labels[4, 4, 0:3] = 1       # 3 voxels, apart
    face = keep_largest_component(labels, 2)
    assert face.sum() == 8 and face[2, 2, 2] == 0 and face[4, 4].sum() == 0
    corner = keep_largest_component(labels, 2, connectivity=3)
    assert corner.sum() == 9 and corner[2, 2, 2] == 1 and corner[4, 4].sum() == 0
    assert face.dtype == labels.dtype


def test_classes_absent_or_single_piece_are_untouched():
    labels = np.zeros((6, 6), np.int64)
    labels[2:4, 2:4] = 1
    np.testing.assert_array_equal(keep_largest_component(labels, 4), labels)
    np.testing.assert_array_equal(keep_largest_component(np.zeros((3, 3), np.int64), 2), 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(labels=np.zeros((4, 4), np.float32), num_classes=2), "labels must be an integer label map, got dtype float32"),
    (dict(labels=np.zeros((4, 4), np.int64), num_classes=2, connectivity=3), r"connectivity must be in \[1, 2\]"),
    (dict(labels=np.zeros((4, 4), np.int64), num_classes=3, classes=[0, 3]),
     r"classes must be foreground classes in \[1, 3\), got \[0, 3\]"),
])
def test_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keep_largest_component(**kwargs)
