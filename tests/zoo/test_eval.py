"""`zoo eval` and the metrics behind it: hand-computed cases, MONAI's HD95 as reference, files and errors."""
from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from zoo.evaluate import eval_main, evaluate_folders, fmt, markdown_table
from zoo.metrics import aggregate_cases, case_metrics, confusion_per_class, dice_iou, hd95_per_class


def _png(path, arr):
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)


def _blob(shape, center, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius ** 2


# ---------------------------------------------------------------- metrics on hand-made cases
def test_perfect_disjoint_and_empty_classes():
    gt = np.zeros((6, 6), np.int64)
    gt[:3, :3] = 1
    gt[4:, 4:] = 2
    perfect = case_metrics(gt, gt, 4)
    assert perfect["dice"][1] == 1 and perfect["dice"][2] == 1 and perfect["iou"][1] == 1
    assert perfect["hd95"][1] == 0 and perfect["sensitivity"][2] == 1 and perfect["precision"][2] == 1
    assert math.isnan(perfect["dice"][3]) and math.isnan(perfect["hd95"][3])  # class 3 empty in both: skipped

    pred = np.zeros_like(gt)
    pred[4:, :2] = 2  # class 1 missing from pred; class 2 predicted where gt has background only
    m = case_metrics(pred, gt, 4)
    assert m["dice"][1] == 0 and m["iou"][1] == 0 and m["dice"][2] == 0
    assert math.isnan(m["hd95"][1])  # present in only one: HD95 undefined
    assert m["sensitivity"][1] == 0 and math.isnan(m["precision"][1])  # nothing predicted: precision undefined
    assert math.isnan(m["dice"][3])


def test_counts_sensitivity_precision_by_hand():
    gt = torch.tensor([1, 1, 1, 1, 0, 0, 0, 2])
    pred = torch.tensor([1, 1, 1, 0, 1, 1, 0, 0])
    m = case_metrics(pred, gt, 3, hd95=False)
    # class 1: tp 3, fp 2, fn 1
    assert m["dice"][1] == pytest.approx(6 / 9) and m["iou"][1] == pytest.approx(3 / 6)
    assert m["sensitivity"][1] == pytest.approx(3 / 4) and m["precision"][1] == pytest.approx(3 / 5)
    # existing functions keep their behaviour (validation uses them)
    dice, iou = dice_iou(confusion_per_class(pred, gt, 3))
    assert dice[1].item() == pytest.approx(6 / 9) and dice[2].item() == 0 and iou[0].item() == pytest.approx(1 / 5)


def test_hd95_known_distances_and_spacing():
    gt, pred = np.zeros((12, 12), np.int64), np.zeros((12, 12), np.int64)
    gt[2, 2], pred[5, 6] = 1, 1  # single pixels 3 rows and 4 columns apart
    assert hd95_per_class(pred, gt, 2)[1] == pytest.approx(5.0)
    assert hd95_per_class(pred, gt, 2, spacing=(2.0, 1.0))[1] == pytest.approx(math.sqrt(6 ** 2 + 4 ** 2))
    # a 3-D square shifted by 2 voxels along one axis: the farthest surface points are 2 apart
    g3, p3 = np.zeros((10, 10, 10), np.int64), np.zeros((10, 10, 10), np.int64)
    g3[2:6, 2:6, 2:6], p3[2:6, 2:6, 4:8] = 1, 1
    assert hd95_per_class(p3, g3, 2)[1] == pytest.approx(2.0)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hd95_matches_monai_on_random_blobs():
    from monai.metrics import compute_hausdorff_distance

    rng = np.random.default_rng(0)
    for shape, spacing in (((40, 33), (1.0, 1.0)), ((17, 20, 23), (1.5, 0.7, 2.0))):
        gt = np.zeros(shape, np.int64)
        pred = np.zeros(shape, np.int64)
        for c in (1, 2):
            ctr = [rng.integers(6, s - 6) for s in shape]
            gt[_blob(shape, ctr, 4 + c)] = c
            pred[_blob(shape, [x + rng.integers(-2, 3) for x in ctr], 3 + c) & (rng.random(shape) > 0.1)] = c
        ours = hd95_per_class(pred, gt, 3, spacing)
        onehot = lambda a: torch.nn.functional.one_hot(torch.as_tensor(a), 3).movedim(-1, 0)[None]  # noqa: E731
        ref = compute_hausdorff_distance(onehot(pred), onehot(gt), include_background=False, percentile=95,
                                         spacing=list(spacing))[0].numpy()
        assert np.all(ours[1:] > 0)
        np.testing.assert_allclose(ours[1:], ref, rtol=1e-5)


def test_aggregate_skips_nan_and_reports_counts():
    dice = np.array([[0.9, 1.0, math.nan], [0.7, 0.0, math.nan], [0.8, math.nan, math.nan]])
    s = aggregate_cases({"dice": dice}, include_background=False)
    pc = s["per_class"]["dice"]
    assert pc["mean"][1] == pytest.approx(0.5) and pc["n"].tolist() == [3, 2, 0]
    assert pc["std"][1] == pytest.approx(0.5) and math.isnan(pc["mean"][2])
    assert s["mean"]["dice"] == pytest.approx(0.5)  # class 2 never defined: left out of the mean
    assert s["std"]["dice"] == pytest.approx(0.5)  # cases' foreground means 1.0 and 0.0 (third case: none)
    with_bg = aggregate_cases({"dice": dice}, include_background=True)
    assert with_bg["mean"]["dice"] == pytest.approx((0.8 + 0.5) / 2)
    assert fmt(math.nan) == "n/a" and "nan" not in markdown_table(s, ["bg", "a", "b"]).lower()


# ---------------------------------------------------------------- folders, files and the CLI
@pytest.fixture
def folders(tmp_path):
    """Three 2-D cases: perfect; class 2 disjoint; class 2 empty in both."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    a = np.zeros((8, 10), np.uint8)
    a[1:4, 1:4], a[5:7, 6:9] = 1, 2
    _png(gt / "a.png", a), _png(pred / "a.png", a)
    b_gt, b_pred = a.copy(), a.copy()
    b_pred[5:7, 6:9], b_pred[0, 9] = 0, 2  # class 2 predicted elsewhere only
    _png(gt / "b.png", b_gt), _png(pred / "b.png", b_pred)
    c = np.zeros((8, 10), np.uint8)
    c[2:5, 2:5] = 1
    c_pred = c.copy()
    c_pred[2, 2:5] = 0  # class 1: tp 6, fn 3
    _png(gt / "c.png", c), _png(pred / "c.png", c_pred)
    return pred, gt


def test_evaluate_folders_numbers(folders):
    pred, gt = folders
    r = evaluate_folders(pred, gt, 3, class_names=["bg", "disc", "bar"])
    assert r.cases == ["a", "b", "c"]
    c1 = [1.0, 1.0, 12 / 15]
    assert r.per_case["dice"][:, 1] == pytest.approx(c1)
    assert r.per_case["dice"][:2, 2].tolist() == [1.0, 0.0] and math.isnan(r.per_case["dice"][2, 2])
    j = r.to_json()
    # pooled over a and b: tp 6 (a), fp 1 and fn 6 (b) -> 12 / 19; the mean over cases is 0.5
    assert j["per_class"]["bar"]["dice"] == {"mean": 0.5, "std": 0.5, "n": 2, "pooled": pytest.approx(12 / 19)}
    assert j["dice"] == pytest.approx((np.mean(c1) + 0.5) / 2)
    assert j["miou"] == pytest.approx((np.mean([1, 1, 6 / 9]) + 0.5) / 2)
    assert j["per_class"]["disc"]["sensitivity"]["mean"] == pytest.approx(np.mean([1, 1, 6 / 9]))
    assert j["per_class"]["bar"]["hd95"]["n"] == 2  # a and b have class 2 on both sides (b: disjoint)


def test_eval_main_writes_csv_json_markdown(folders, tmp_path, capsys):
    pred, gt = folders
    out = tmp_path / "report"
    assert eval_main(["--pred", str(pred), "--gt", str(gt), "--num-classes", "3", "--output", str(out),
                      "--class-names", "bg,disc,bar"]) == 0
    printed = capsys.readouterr().out
    assert "disc" in printed and "nan" not in printed.lower()
    rows = list(csv.DictReader((out / "metrics_per_case.csv").open()))
    assert len(rows) == 6 and {r["class_name"] for r in rows} == {"disc", "bar"}  # background excluded
    row_c2 = next(r for r in rows if r["case"] == "c" and r["class"] == "2")
    assert row_c2["dice"] == "n/a" and row_c2["hd95"] == "n/a"
    j = json.loads((out / "metrics.json").read_text())
    assert set(j) >= {"dice", "miou", "per_class", "metrics"} and j["hd95_unit"] == "pixels"
    md = (out / "metrics.md").read_text()
    assert "| disc |" in md and "nan" not in md.lower()
    assert eval_main(["--pred", str(pred), "--gt", str(gt), "--num-classes", "3", "--include-background",
                      "--quiet", "--output", str(out)]) == 0
    assert "0" in json.loads((out / "metrics.json").read_text())["per_class"]


def test_eval_roi_dir_restricts_scoring(folders, tmp_path):
    pred, gt = folders
    roi = tmp_path / "roi"
    roi.mkdir()
    for stem in ("a", "b", "c"):
        m = np.ones((8, 10), np.uint8)
        m[:, 5:] = 0  # right half ignored: drops class 2 everywhere and b's stray prediction
        _png(roi / f"{stem}.png", m)
    r = evaluate_folders(pred, gt, 3, roi_dir=roi)
    assert r.per_case["dice"][:, 1] == pytest.approx([1.0, 1.0, 12 / 15])
    assert np.isnan(r.per_case["dice"][:, 2]).all() and np.isnan(r.per_case["hd95"][:, 2]).all()
    (roi / "c.png").unlink()
    with pytest.raises(ValueError, match="--roi-dir: 1 case.*'c'"):
        evaluate_folders(pred, gt, 3, roi_dir=roi)


def test_eval_nifti_hd95_in_mm(tmp_path):
    pred, gt = tmp_path / "p", tmp_path / "g"
    pred.mkdir(), gt.mkdir()
    g, p = np.zeros((8, 8, 8), np.uint8), np.zeros((8, 8, 8), np.uint8)
    g[2, 2, 2], p[2, 2, 5] = 1, 1
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    nib.save(nib.Nifti1Image(g, affine), str(gt / "case.nii.gz"))
    nib.save(nib.Nifti1Image(p, affine), str(pred / "case.nii"))  # .nii matches .nii.gz by stem
    assert evaluate_folders(pred, gt, 2).per_case["hd95"][0, 1] == pytest.approx(7.5)
    r = evaluate_folders(pred, gt, 2, hd95_voxels=True)
    assert r.per_case["hd95"][0, 1] == pytest.approx(3.0) and r.hd95_unit == "voxels"


def _err(argv, capsys) -> str:
    assert eval_main(argv) == 1
    return capsys.readouterr().err


def test_eval_errors(folders, tmp_path, capsys):
    pred, gt = folders
    base = ["--num-classes", "3", "--quiet"]
    assert "does not exist" in _err(["--pred", str(tmp_path / "nope"), "--gt", str(gt), *base], capsys)
    _png(pred / "extra.png", np.zeros((8, 10)))
    (gt / "b.png").rename(gt / "zz.png")
    msg = _err(["--pred", str(pred), "--gt", str(gt), *base], capsys)
    assert "2 prediction(s)" in msg and "'b.png', 'extra.png'" in msg and "1 ground-truth(s)" in msg and "'zz.png'" in msg
    (pred / "extra.png").unlink(), (gt / "zz.png").rename(gt / "b.png")
    _png(gt / "a.png", np.zeros((9, 10)))
    msg = _err(["--pred", str(pred), "--gt", str(gt), *base], capsys)
    assert "(8, 10)" in msg and "(9, 10)" in msg and "a.png" in msg
    _png(gt / "a.png", np.full((8, 10), 3))
    msg = _err(["--pred", str(pred), "--gt", str(gt), *base], capsys)
    assert "a.png' holds label values [3] outside the classes 0..2 (--num-classes=3)" in msg
    (gt / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    msg = _err(["--pred", str(pred), "--gt", str(gt), *base], capsys)
    assert "a.png" in msg and "cannot read" in msg
    with pytest.raises(ValueError, match="class_names must have num_classes=3"):
        evaluate_folders(pred, gt, 3, class_names=["x"])


def test_eval_help_states_conventions(capsys):
    with pytest.raises(SystemExit) as e:
        eval_main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("excluded", "--include-background", "empty in both", "n/a", "never printed as a number",
                   "'dice' and 'miou'", "stem", "HD95"):
        assert phrase in text, phrase
