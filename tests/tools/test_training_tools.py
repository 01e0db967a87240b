"""The tools around training runs: curves PNG, manifest metrics from `zoo eval`, case lists and overlays."""
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _csv(path: Path, losses: list[float], dices: dict[int, float]) -> Path:
    rows = ["epoch,step,train/loss_epoch,val/dice"]
    for e, loss in enumerate(losses):
        rows.append(f"{e},{e * 10},{loss},")
        if e in dices:
            rows.append(f"{e},{e * 10},,{dices[e]}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_plot_curves_reads_lightning_csv_and_draws_each_run(tmp_path, load_tool):
    plot = load_tool("plot_curves")
    a = _csv(tmp_path / "a.csv", [1.0, 0.6, 0.4, 0.3], {1: 0.5, 3: 0.7})
    b = _csv(tmp_path / "b.csv", [1.2, 0.9], {1: 0.4})
    curves = plot.read_curves(a)
    assert curves["train/loss_epoch"] == [(1, 1.0), (2, 0.6), (3, 0.4), (4, 0.3)]
    assert curves["val/dice"] == [(2, 0.5), (4, 0.7)]
    out = plot.plot([str(a), str(b)], ["a", "b"], "toy", tmp_path / "c.png")
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (plot.H, 2 * plot.W, 3)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    from zoo.overlay import class_colors

    assert {tuple(int(v) for v in c) for c in class_colors(3)[1:]} <= colours  # both runs drawn
    (tmp_path / "bad.csv").write_text("epoch,step,other\n0,1,2\n")
    with pytest.raises(ValueError, match="bad.csv: no train/loss_epoch or val/dice"):
        plot.read_curves(tmp_path / "bad.csv")
    with pytest.raises(SystemExit):
        plot.main([str(a), "--labels", "x", "y", "--output", str(tmp_path / "d.png")])
    top1 = tmp_path / "top1.csv"
    top1.write_text("epoch,step,train/loss_epoch,val/top1\n0,5,2.0,\n1,10,1.5,\n1,10,,0.6\n")
    assert plot.read_curves(top1, "val/top1") == {"train/loss_epoch": [(1, 2.0), (2, 1.5)], "val/top1": [(2, 0.6)]}
    assert plot.main([str(top1), "--metric", "val/top1", "--output", str(tmp_path / "e.png")]) == 0


def test_manifest_metrics_take_the_eval_numbers_and_command(load_tool):
    ship = load_tool("ship_run")
    eval_json = {"dice": 0.81234567, "miou": 0.7, "auc": 0.98, "dice_pooled": 0.82, "accuracy": 0.95,
                 "metrics": {"sensitivity": {"mean": 0.8}, "precision": {"mean": 0.9}, "hd95": {"mean": 7.5}}}
    m = ship.manifest_metrics(eval_json, "zoo predict ... && zoo eval ...")
    assert {k: v["value"] for k, v in m.items()} == {"dice": 0.812346, "dice_pooled": 0.82, "miou": 0.7,
                                                     "auc": 0.98, "accuracy": 0.95, "sensitivity": 0.8,
                                                     "precision": 0.9, "hd95": 7.5}
    assert {v["command"] for v in m.values()} == {"zoo predict ... && zoo eval ..."}
    # a 3-D eval without probabilities: no auc; undefined (null) metrics are left out
    bare = ship.manifest_metrics({"dice": 0.5, "miou": 0.4, "metrics": {"hd95": {"mean": None}}}, "c")
    assert sorted(bare) == ["dice", "miou"]


def test_listed_cases_and_3d_overlay(tmp_path, load_tool):
    measure = load_tool("measure_pretrained")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz"):
        (src / name).write_bytes(b"x")
    listing = tmp_path / "split.txt"
    listing.write_text("a.nii.gz\nc.nii.gz\n")
    linked = measure.listed_cases(src, listing, tmp_path / "subset")
    assert sorted(p.name for p in linked.iterdir()) == ["a.nii.gz", "c.nii.gz"]
    listing.write_text("zz.nii.gz\n")
    with pytest.raises(FileNotFoundError, match="'zz.nii.gz' is not a file of"):
        measure.listed_cases(src, listing, tmp_path / "subset2")

    rng = np.random.default_rng(0)
    image = rng.normal(size=(20, 30, 8)).astype(np.float32)
    labels = np.zeros((20, 30, 8), np.uint8)
    labels[5:10, 5:15, 4] = 2
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "lab.nii.gz")
    measure.write_overlay(tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz", 3, tmp_path / "o.png")
    png = np.asarray(Image.open(tmp_path / "o.png"))
    scale = 256 // 20
    assert png.shape == (20 * scale, 30 * scale, 3)  # the middle slice (z = 4), enlarged to >= 256 px
    painted = (png != png[..., :1]).any(-1)  # coloured pixels (the image itself is gray)
    assert painted[5 * scale:10 * scale, 5 * scale:15 * scale].all() and painted.sum() == 5 * 10 * scale ** 2


def test_predict_and_eval_runs_the_cli_and_returns_its_numbers(tmp_path, load_tool):
    ship = load_tool("ship_run")
    rng = np.random.default_rng(0)
    images, gt = tmp_path / "images", tmp_path / "gt"
    images.mkdir()
    gt.mkdir()
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(images / f"{name}.png")
        Image.fromarray((rng.random((32, 32)) > 0.5).astype(np.uint8)).save(gt / f"{name}.png")
    pred, out = tmp_path / "pred", tmp_path / "eval"
    result, command = ship.predict_and_eval(["--model", "unet_tiny", "--num-classes", "2"], images, gt, 2, pred, out,
                                            probs=True, class_names=["bg", "fg"], hd95=False,
                                            predict_options=("--tta",))
    assert sorted(p.name for p in pred.glob("*.png")) == ["a.png", "b.png"]
    assert result == json.loads((out / "metrics.json").read_text()) and result["num_cases"] == 2
    assert "fg" in result["per_class"] and result["auc"] is not None and "hd95" not in result["metrics"]
    predict_cmd, eval_cmd = command.split(" && ")
    assert predict_cmd.startswith("zoo predict --model unet_tiny") and "--save-probs" in predict_cmd
    assert "--tta" in predict_cmd.split()
    assert eval_cmd.startswith("zoo eval --pred") and "--no-hd95" in eval_cmd and "--class-names bg,fg" in eval_cmd


def test_measure_pretrained_writes_metrics_or_metrics_tta(tmp_path, load_tool, monkeypatch):
    """Plain runs replace `metrics` (+ overlay); --tta fills `metrics_tta` and *_tta docs and leaves `metrics`."""
    measure = load_tool("measure_pretrained")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "unet_drive.safetensors").symlink_to(ROOT / "zoo" / "weights" / "unet_drive.safetensors")
    shipped = json.loads((ROOT / "zoo" / "weights" / "unet_drive.json").read_text())
    shipped.pop("metrics_tta", None)
    (weights / "unet_drive.json").write_text(json.dumps(shipped))
    monkeypatch.setattr(measure, "WEIGHTS_DIR", weights)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(images / "01_test.png")

    def fake_predict_and_eval(model, images, gt, num_classes, pred, out, *args, predict_options=(), **kwargs):
        pred.mkdir(parents=True)
        out.mkdir(parents=True)
        Image.fromarray(np.eye(16, dtype=np.uint8)).save(pred / "01_test.png")
        value = 0.5 if "--tta" in predict_options else 0.25
        result = {"dice": value, "miou": value / 2, "metrics": {}}
        for name in ("metrics.md", "metrics_per_case.csv"):
            (out / name).write_text(f"{value}\n")
        (out / "metrics.json").write_text(json.dumps(result))
        return result, f"zoo predict {' '.join(predict_options)} && zoo eval"

    monkeypatch.setattr(measure, "predict_and_eval", fake_predict_and_eval)
    argv = ["unet_drive", "--images", str(images), "--gt", str(images), "--docs-dir", str(tmp_path / "docs")]
    docs = tmp_path / "docs" / "unet_drive"
    assert measure.main(argv) == 0
    manifest = json.loads((weights / "unet_drive.json").read_text())
    assert manifest["metrics"]["dice"]["value"] == 0.25 and "metrics_tta" not in manifest
    assert "--tta" not in manifest["metrics"]["dice"]["command"]
    assert sorted(p.name for p in docs.iterdir()) == ["metrics.json", "metrics.md", "metrics_per_case.csv",
                                                     "overlay.png"]
    assert measure.main(argv + ["--tta"]) == 0
    manifest = json.loads((weights / "unet_drive.json").read_text())
    assert manifest["metrics"]["dice"]["value"] == 0.25 and manifest["metrics_tta"]["dice"]["value"] == 0.5
    assert manifest["metrics_tta"]["dice"]["command"] == "zoo predict --tta && zoo eval"
    assert (docs / "metrics_tta.md").read_text() == "0.5\n" and (docs / "metrics.md").read_text() == "0.25\n"
    assert sorted(p.name for p in docs.iterdir()) == ["metrics.json", "metrics.md", "metrics_per_case.csv",
                                                     "metrics_per_case_tta.csv", "metrics_tta.json",
                                                     "metrics_tta.md", "overlay.png"]
