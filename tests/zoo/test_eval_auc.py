"""ROC AUC and accuracy in `zoo eval`: exact against a pairwise count, ROI, undefined cases, probability files,
and `zoo predict --save-probs` -> `zoo eval --probs` reproducing the in-memory softmax's AUC."""
from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.evaluate import eval_main, evaluate_folders
from zoo.metrics import accuracy_counts, auc_per_class, case_metrics, dice_iou, merge_roc_counts, roc_auc, roc_counts
from zoo.predict import Predictor, predict_main
from zoo.volume_io import read_prob_map, write_prob_map


def _pairwise_auc(scores, positive) -> float:
    """Brute force: over every (positive, negative) pair, 1 if the positive scores higher, 1/2 on a tie."""
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(positive, bool).ravel()
    pos, neg = s[y][:, None], s[~y][None, :]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def _png(path, arr):
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)


# ---------------------------------------------------------------- the AUC itself
@pytest.mark.parametrize("seed", range(6))
def test_auc_matches_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    levels = int(rng.integers(1, 12))  # few distinct scores: many ties, within and across the two groups
    scores = (rng.integers(0, levels, n) / max(levels - 1, 1)).astype(np.float32)
    positive = rng.random(n) < rng.uniform(0.05, 0.95)
    positive[0], positive[-1] = True, False  # both groups present
    assert roc_auc(roc_counts(scores, positive)) == pytest.approx(_pairwise_auc(scores, positive), abs=1e-12)
    cont = rng.normal(size=n) + positive  # continuous scores, no ties
    assert roc_auc(roc_counts(cont, positive)) == pytest.approx(_pairwise_auc(cont, positive), abs=1e-12)


def test_merged_counts_equal_the_pooled_pixels():
    rng = np.random.default_rng(7)
    cases = [(np.round(rng.random(n), 1), rng.random(n) < 0.3) for n in (5, 40, 17)]
    merged = merge_roc_counts([roc_counts(s, y) for s, y in cases])
    all_s, all_y = np.concatenate([c[0] for c in cases]), np.concatenate([c[1] for c in cases])
    assert roc_auc(merged) == pytest.approx(_pairwise_auc(all_s, all_y), abs=1e-12)
    assert np.all(np.diff(merged[0]) > 0) and merged[1].sum() == all_y.sum() and merged[2].sum() == (~all_y).sum()
    assert math.isnan(roc_auc(merge_roc_counts([])))


def test_perfect_inverted_constant_and_undefined():
    y = np.array([0, 1, 1, 0, 1, 0, 0], bool)
    p = np.where(y, 0.9, 0.2) + np.arange(7) * 1e-3
    assert roc_auc(roc_counts(p, y)) == 1.0
    assert roc_auc(roc_counts(1 - p, y)) == 0.0
    assert roc_auc(roc_counts(np.full(7, 0.3), y)) == 0.5  # all tied
    assert math.isnan(roc_auc(roc_counts(p, np.zeros(7, bool))))  # no positives
    assert math.isnan(roc_auc(roc_counts(p, np.ones(7, bool))))  # no negatives
    with pytest.raises(ValueError, match="must match in size"):
        roc_counts(p, y[:3])


def test_auc_per_class_roi_background_and_shape():
    gt = np.zeros((4, 6), np.int64)
    gt[1:3, 1:3] = 1
    fg = np.where(gt == 1, 0.8, 0.1)
    fg[:, 5] = 0.95  # outside the ROI: background scored above every vessel pixel
    probs = np.stack([1 - fg, fg, np.zeros_like(fg)])
    roi = np.ones_like(gt, bool)
    roi[:, 5] = False
    inside, counts = auc_per_class(probs, gt, 3, roi, include_background=False)
    assert inside[1] == 1.0 and math.isnan(inside[0]) and counts[0] is None
    assert math.isnan(inside[2])  # class 2 has no pixel: undefined, not 0 or 1
    whole, _ = auc_per_class(probs, gt, 3, include_background=True)
    assert whole[1] == pytest.approx(_pairwise_auc(fg, gt == 1)) and whole[1] < 1
    assert whole[0] == pytest.approx(whole[1])  # binary probabilities: background AUC mirrors foreground
    with pytest.raises(ValueError, match=r"probs must be \[num_classes=3"):
        auc_per_class(probs[:2], gt, 3)


def test_accuracy_counts_inside_roi():
    gt = np.array([[0, 1, 1], [0, 0, 2]])
    pred = np.array([[0, 1, 0], [1, 0, 2]])
    assert accuracy_counts(pred, gt) == (4, 6)
    assert accuracy_counts(pred, gt, roi=np.array([[1, 1, 0], [0, 1, 1]])) == (4, 4)


# ---------------------------------------------------------------- files and `zoo eval --probs`
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # PIL's note on the deliberately broken TIFF
def test_case_confusion_counts_sum_into_pooled_dice():
    gt = np.array([[0, 1, 1], [2, 2, 0]])
    pred = np.array([[0, 1, 2], [2, 0, 0]])
    m = case_metrics(pred, gt, 3, hd95=False)
    np.testing.assert_array_equal(m["confusion"], [[2, 1, 0], [1, 0, 1], [1, 1, 1]])  # per class [tp, fp, fn]
    roi = np.array([[1, 1, 0], [1, 1, 1]], bool)
    inside = case_metrics(pred, gt, 3, hd95=False, roi=roi)["confusion"]
    np.testing.assert_array_equal(inside, [[2, 1, 0], [1, 0, 0], [1, 0, 1]])
    pooled = dice_iou(torch.from_numpy(m["confusion"] + inside))[0].numpy()
    np.testing.assert_allclose(pooled, [8 / 10, 4 / 5, 4 / 7])  # 2tp / (2tp + fp + fn) of the summed counts


def test_prob_map_files_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    probs2d = rng.dirichlet(np.ones(3), size=(9, 13)).transpose(2, 0, 1).astype(np.float32)
    probs2d[1, 0, 0] = 1e-30  # tiny values survive (a 16-bit PNG would round them to 0 and create ties)
    np.testing.assert_array_equal(read_prob_map(write_prob_map(tmp_path / "a_prob.tif", probs2d)), probs2d)
    affine = np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 5], [0, 0, 2.0, 3], [0, 0, 0, 1]])
    ref = nib.Nifti1Image(np.zeros((5, 4, 3), np.int16), affine)
    probs3d = rng.random((2, 5, 4, 3)).astype(np.float32)
    path = write_prob_map(tmp_path / "v_prob.nii.gz", probs3d, ref)
    img = nib.load(str(path))
    assert img.shape == (5, 4, 3, 2) and img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, affine)
    np.testing.assert_array_equal(read_prob_map(path), probs3d)
    with pytest.raises(ValueError, match="must be \\[K, \\*\\[5, 4, 3\\]\\]"):
        write_prob_map(tmp_path / "w_prob.nii.gz", probs3d[:, :4], ref)
    (tmp_path / "bad_prob.tif").write_bytes(b"II*\0garbage")
    with pytest.raises(ValueError, match="bad_prob.tif"):
        read_prob_map(tmp_path / "bad_prob.tif")
    bad = probs2d.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        read_prob_map(write_prob_map(tmp_path / "nan_prob.tif", bad))


@pytest.fixture
def drive_like(tmp_path):
    """Three binary 2-D cases with a circular ROI, tied probabilities, and a case whose ROI holds no vessel."""
    rng = np.random.default_rng(3)
    dirs = {k: tmp_path / k for k in ("pred", "gt", "roi", "probs")}
    for d in dirs.values():
        d.mkdir()
    yy, xx = np.mgrid[:15, :17]
    roi = ((yy - 7) ** 2 + (xx - 8) ** 2 <= 49).astype(np.uint8)
    cases = {}
    for stem in ("a", "b", "empty"):
        gt = (rng.random((15, 17)) < 0.3).astype(np.uint8)
        if stem == "empty":
            gt[roi > 0] = 0  # vessels only outside the FOV: AUC undefined inside it
        fg = np.clip(np.round(0.5 * gt + 0.6 * rng.random(gt.shape), 1), 0, 1).astype(np.float32)
        probs = np.stack([1 - fg, fg])
        pred = (fg > 0.5).astype(np.uint8)
        _png(dirs["gt"] / f"{stem}.png", gt), _png(dirs["pred"] / f"{stem}.png", pred)
        _png(dirs["roi"] / f"{stem}.png", roi)
        write_prob_map(dirs["probs"] / f"{stem}_prob.tif", probs)
        cases[stem] = (gt, pred, fg)
    return dirs, roi > 0, cases


def test_eval_probs_per_case_pooled_roi_and_na(drive_like, tmp_path, capsys):
    dirs, roi, cases = drive_like
    r = evaluate_folders(dirs["pred"], dirs["gt"], 2, hd95=False, roi_dir=dirs["roi"], probs_dir=dirs["probs"])
    assert r.cases == ["a", "b", "empty"]
    expect = [_pairwise_auc(cases[s][2][roi], cases[s][0][roi] == 1) for s in r.cases]
    assert math.isnan(expect[2])
    np.testing.assert_allclose(r.per_case["auc"][:, 1], expect, atol=1e-12)
    assert np.isnan(r.per_case["auc"][:, 0]).all()  # background not scored by default
    pooled = _pairwise_auc(np.concatenate([cases[s][2][roi] for s in r.cases]),
                           np.concatenate([cases[s][0][roi] == 1 for s in r.cases]))
    assert r.auc == pytest.approx(pooled, abs=1e-12) and r.auc_pooled[1] == pytest.approx(pooled, abs=1e-12)
    acc = [(cases[s][1][roi] == cases[s][0][roi]).mean() for s in r.cases]
    np.testing.assert_allclose(r.accuracy, acc)
    assert r.accuracy_pooled == pytest.approx(np.mean(acc))  # same ROI size in every case
    gt_all = np.concatenate([cases[s][0][roi] == 1 for s in r.cases])
    pred_all = np.concatenate([cases[s][1][roi] == 1 for s in r.cases])
    pooled_dice_1 = 2 * (gt_all & pred_all).sum() / (gt_all.sum() + pred_all.sum())
    assert r.dice_pooled[1] == pytest.approx(pooled_dice_1) and r.dice_pooled_mean == pytest.approx(pooled_dice_1)
    assert r.dice_pooled_mean != pytest.approx(r.summary["mean"]["dice"])  # pooled is not the mean over cases
    # without the ROI every pixel counts, and the "empty" case has vessels again
    whole = evaluate_folders(dirs["pred"], dirs["gt"], 2, hd95=False, probs_dir=dirs["probs"])
    assert whole.per_case["auc"][2, 1] == pytest.approx(_pairwise_auc(cases["empty"][2], cases["empty"][0] == 1))

    out = tmp_path / "report"
    assert eval_main(["--pred", str(dirs["pred"]), "--gt", str(dirs["gt"]), "--num-classes", "2", "--no-hd95",
                      "--roi-dir", str(dirs["roi"]), "--probs", str(dirs["probs"]), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"auc {pooled:.4f} (pooled)" in printed and "nan" not in printed.lower()
    j = json.loads((out / "metrics.json").read_text())
    assert j["auc"] == pytest.approx(pooled, abs=1e-12)
    assert j["dice_pooled"] == pytest.approx(pooled_dice_1)
    assert j["per_class"]["1"]["dice"]["pooled"] == j["dice_pooled"]
    assert f"(pooled {pooled_dice_1:.4f})" in printed
    assert j["auc_per_case_mean"] == pytest.approx(np.mean(expect[:2]))
    assert j["auc_per_case_std"] == pytest.approx(np.std(expect[:2]))
    assert j["per_class"]["1"]["auc"]["n"] == 2 and j["per_class"]["1"]["auc"]["pooled"] == j["auc"]
    assert j["accuracy"] == pytest.approx(np.mean(acc)) and j["accuracy_per_case"] == pytest.approx(acc)
    assert j["accuracy_per_case_std"] == pytest.approx(np.std(acc))
    rows = list(csv.DictReader((out / "metrics_per_case.csv").open()))
    assert [r["auc"] for r in rows][2] == "n/a" and float(rows[0]["auc"]) == pytest.approx(expect[0], abs=1e-6)
    assert float(rows[1]["accuracy"]) == pytest.approx(acc[1], abs=1e-6)
    md = (out / "metrics.md").read_text()
    assert "| AUC | AUC pooled |" in md and "Accuracy (all classes): pooled" in md and "nan" not in md.lower()


def test_eval_without_probs_still_reports_accuracy_only(drive_like, tmp_path):
    dirs, _, _ = drive_like
    assert eval_main(["--pred", str(dirs["pred"]), "--gt", str(dirs["gt"]), "--num-classes", "2", "--no-hd95",
                      "--quiet", "--output", str(tmp_path / "o")]) == 0
    j = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert "auc" not in j and "auc" not in j["per_class"]["1"] and 0 < j["accuracy"] < 1


def test_eval_probs_errors(drive_like, capsys):
    dirs, _, _ = drive_like
    base = ["--pred", str(dirs["pred"]), "--gt", str(dirs["gt"]), "--num-classes", "2", "--quiet", "--no-hd95"]
    (dirs["probs"] / "b_prob.tif").unlink()
    assert eval_main([*base, "--probs", str(dirs["probs"])]) == 1
    msg = capsys.readouterr().err
    assert "--probs: 1 case(s)" in msg and "'b'" in msg
    assert eval_main([*base, "--probs", str(dirs["probs"] / "nowhere")]) == 1
    assert "does not exist" in capsys.readouterr().err
    write_prob_map(dirs["probs"] / "b_prob.tif", np.full((3, 15, 17), 0.3, np.float32))  # 3 pages, 2 classes
    assert eval_main([*base, "--probs", str(dirs["probs"])]) == 1
    msg = capsys.readouterr().err
    assert "b_prob.tif" in msg and "[3, 15, 17]" in msg and "[2, 15, 17]" in msg


def test_eval_help_names_the_auc_keys(capsys):
    with pytest.raises(SystemExit):
        eval_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--probs", "'auc' = pooled AUC", "'auc_per_case_mean'", "ties count one half", "'accuracy'"):
        assert phrase in text, phrase


# ---------------------------------------------------------------- `zoo predict --save-probs` -> `zoo eval --probs`
def _save_ckpt(path, spatial_dims, patch):
    torch.manual_seed(0)
    kwargs = dict(num_classes=2, in_channels=1, spatial_dims=spatial_dims)
    model = zoo.create_model("unet_tiny", **kwargs)
    info = dict(kwargs, patch_size=list(patch), class_names=["bg", "vessel"], normalization={"kind": "zscore"})
    torch.save({"state_dict": {"model." + k: v for k, v in model.state_dict().items()},
                "hyper_parameters": dict(model_name="unet_tiny", model_kwargs=kwargs, data_info=info)}, path)


def test_predict_save_probs_then_eval_matches_in_memory_softmax(tmp_path, capsys):
    ckpt = tmp_path / "m.ckpt"
    _save_ckpt(ckpt, 2, (32, 32))
    rng = np.random.default_rng(5)
    dirs = {k: tmp_path / k for k in ("images", "gt", "roi")}
    for d in dirs.values():
        d.mkdir()
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    scores, truths, per_case = [], [], []
    for stem, shape in (("fits", (32, 32)), ("tiled", (41, 50))):  # whole image / sliding window
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        gt = (rng.random(shape) < 0.25).astype(np.uint8)
        roi = np.zeros(shape, np.uint8)
        roi[2:-3, 4:-1] = 1
        Image.fromarray(image).save(dirs["images"] / f"{stem}.png")
        _png(dirs["gt"] / f"{stem}.png", gt), _png(dirs["roi"] / f"{stem}.png", roi)
        with torch.no_grad():
            prob = torch.softmax(predictor.predict_logits_array(image[None].astype(np.float32)), 0)[1].numpy()
        keep = roi > 0
        scores.append(prob[keep]), truths.append(gt[keep] == 1)
        per_case.append(_pairwise_auc(prob[keep], gt[keep] == 1))
    out = tmp_path / "out"
    assert predict_main(["--ckpt", str(ckpt), str(dirs["images"]), "--output", str(out), "--save-probs",
                         "--quiet"]) == 0
    assert sorted(p.name for p in (out / "probs").iterdir()) == ["fits_prob.tif", "tiled_prob.tif"]
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["fits.png", "tiled.png"]
    plain = tmp_path / "plain"
    assert predict_main(["--ckpt", str(ckpt), str(dirs["images"]), "--output", str(plain), "--quiet"]) == 0
    for stem in ("fits", "tiled"):  # one inference path: the same labels with or without --save-probs
        labels = np.asarray(Image.open(out / f"{stem}.png"))
        np.testing.assert_array_equal(labels, np.asarray(Image.open(plain / f"{stem}.png")))
        probs = read_prob_map(out / "probs" / f"{stem}_prob.tif")
        np.testing.assert_allclose(probs.sum(0), 1, atol=1e-6)
        np.testing.assert_array_equal(probs.argmax(0), labels)
    capsys.readouterr()
    assert eval_main(["--pred", str(out), "--gt", str(dirs["gt"]), "--num-classes", "2", "--roi-dir",
                      str(dirs["roi"]), "--probs", str(out / "probs"), "--no-hd95", "--quiet"]) == 0
    j = json.loads((out / "metrics.json").read_text())
    pooled = _pairwise_auc(np.concatenate(scores), np.concatenate(truths))
    assert 0.3 < pooled < 0.7  # an untrained model on random labels: near chance, but a real number
    assert j["auc"] == pytest.approx(pooled, abs=1e-9)  # float32 on disk: exact, not merely within 1e-4
    assert j["auc_per_case_mean"] == pytest.approx(np.mean(per_case), abs=1e-9)


def test_predict_save_probs_3d_keeps_affine(tmp_path):
    ckpt = tmp_path / "m3.ckpt"
    _save_ckpt(ckpt, 3, (16, 16, 16))
    affine = np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 5], [0, 0, 2.0, 3], [0, 0, 0, 1]])
    vol = np.random.default_rng(0).normal(size=(12, 16, 9)).astype(np.float32)
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(vol, affine), str(tmp_path / "in" / "case.nii.gz"))
    assert predict_main(["--ckpt", str(ckpt), str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                         "--save-probs", "--quiet"]) == 0
    img = nib.load(str(tmp_path / "out" / "probs" / "case_prob.nii.gz"))
    assert img.shape == (12, 16, 9, 2) and img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, affine)
    probs = read_prob_map(tmp_path / "out" / "probs" / "case_prob.nii.gz")
    labels = np.asarray(nib.load(str(tmp_path / "out" / "case.nii.gz")).dataobj)
    np.testing.assert_array_equal(probs.argmax(0), labels)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-6)
