"""ClassificationModule through `zoo fit` on a tiny generated ImageFolder, its encoder loaded into the segmenter
(`SegmentationModule(encoder_weights=...)`), and the Imagenette/DRIVE-pretrained recipes on the shared data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from zoo.cli import main
from zoo.encoders import load_encoder_file
from zoo.lightning import ClassificationModule, SegmentationModule
from zoo.lightning.cli import write_fit_metrics
from zoo.registry import create_model

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("disk", "ring", "stripes")


def _image(kind: str, rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """A noisy RGB picture of a class: a filled disk, a ring or horizontal stripes (learnable in a few steps)."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    r = np.hypot(yy - cy, xx - cx)
    mask = {"disk": r < size / 4, "ring": np.abs(r - size / 3) < 2.5, "stripes": (yy // 4) % 2 == 0}[kind]
    colour = rng.integers(150, 256, 3)
    img = rng.normal(60, 20, (size, size, 3)) + mask[..., None] * colour
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("val", 6)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_image(c, rng)).save(root / split / c / f"{i}.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def classifier_run(imagefolder, tmp_path_factory) -> Path:
    """`zoo fit` of a van_tiny classifier (the encoder of lka_unet_tiny), 3 epochs at 32 px, best by val/top1."""
    runs = tmp_path_factory.mktemp("runs")
    main(["fit", "--seed_everything", "0",
          "--model", "zoo.lightning.ClassificationModule", "--model.init_args.model_name", "lka_unet_tiny",
          "--model.init_args.lr", "0.003", "--model.init_args.warmup_epochs", "0.5",
          "--model.init_args.mixup_alpha", "0.2", "--model.init_args.cutmix_alpha", "1.0",
          "--data", "zoo.data.imagefolder.ImageFolderDataModule", "--data.init_args.root", str(imagefolder),
          "--data.init_args.image_size", "32", "--data.init_args.batch_size", "8",
          "--data.init_args.auto_augment", "null", "--data.init_args.random_erasing", "0",
          "--data.init_args.crop_scale", "[0.8, 1.0]", "--data.init_args.num_workers", "0",
          "--checkpoint.monitor", "val/top1",
          "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.init_args.save_dir",
          str(runs), "--trainer.logger.init_args.name", "cls", "--trainer.logger.init_args.version", "",
          "--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "2"])
    return runs / "cls"


def test_fit_writes_top1_top5_and_best_checkpoint(classifier_run):
    metrics = json.loads((classifier_run / "metrics.json").read_text())
    assert set(metrics) >= {"top1", "top5", "val_loss", "checkpoint", "epoch", "model"}
    assert "dice" not in metrics and metrics["model"] == "lka_unet_tiny"
    assert 0.0 <= metrics["top1"] <= metrics["top5"] == 1.0  # 3 classes: the true class is always in the top 5
    assert metrics["top1"] > 0.5, metrics  # chance is 1/3; three easy classes
    assert Path(metrics["checkpoint"]).name == "best.ckpt"
    ckpt = torch.load(metrics["checkpoint"], map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["data_info"]["task"] == "classification" and hp["data_info"]["class_names"] == list(CLASSES)
    assert hp["data_info"]["num_classes"] == 3 and hp["model_kwargs"]["in_channels"] == 3
    monitors = [v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert monitors and abs(float(monitors[0]["best_model_score"]) - metrics["top1"]) < 1e-6


def test_validate_from_saved_config_and_checkpoint(classifier_run, tmp_path, capsys):
    """`zoo validate --config <run>/config.yaml --ckpt_path best.ckpt` reproduces the recorded top-1."""
    metrics = json.loads((classifier_run / "metrics.json").read_text())
    main(["validate", "--config", str(classifier_run / "config.yaml"), "--ckpt_path", metrics["checkpoint"],
          "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"])
    out = capsys.readouterr().out
    top1 = [line for line in out.splitlines() if "val/top1" in line]
    assert top1 and abs(float(top1[0].split()[-2]) - metrics["top1"]) < 1e-4, out[-2000:]


def test_encoder_weights_from_the_classifier_checkpoint(classifier_run, tmp_path):
    ckpt = classifier_run / "checkpoints" / "best.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    seg = SegmentationModule("lka_unet_tiny", {"in_channels": 3}, {"num_classes": 2, "spatial_dims": 2},
                             encoder_weights=str(ckpt))
    enc = seg.model.encoder.state_dict()
    assert len(enc) > 10
    for k, v in enc.items():
        assert torch.equal(v, state[f"model.encoder.{k}"]), k
    fresh = create_model("lka_unet_tiny", in_channels=3)
    assert not torch.equal(fresh.encoder.state_dict()["stages.0.embed.0.weight"], enc["stages.0.embed.0.weight"])
    assert seg.hparams["encoder_weights"] == str(ckpt)
    # the same weights as a safetensors classifier state dict
    st = tmp_path / "cls.safetensors"
    save_file({k[len("model."):]: v.contiguous() for k, v in state.items()}, str(st))
    model = create_model("lka_unet_tiny", in_channels=3)
    keys = load_encoder_file(model, st)
    assert keys == sorted(enc) and all(torch.equal(model.encoder.state_dict()[k], enc[k]) for k in keys)


def test_encoder_weights_errors(classifier_run, tmp_path):
    ckpt = str(classifier_run / "checkpoints" / "best.ckpt")
    with pytest.raises(FileNotFoundError, match="encoder_weights: file .*nope.ckpt"):
        SegmentationModule("lka_unet_tiny", {"in_channels": 3}, encoder_weights=str(tmp_path / "nope.ckpt"))
    with pytest.raises(ValueError, match="encoder_weights=.*shape mismatches .*stages.0.embed.0.weight"):
        SegmentationModule("lka_unet_tiny", {"in_channels": 1}, encoder_weights=ckpt)  # 1-channel vs RGB
    with pytest.raises(ValueError, match="encoder_weights=.*missing"):
        SegmentationModule("lka_unet_small", {"in_channels": 3}, encoder_weights=ckpt)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="could not read weights"):
        SegmentationModule("lka_unet_tiny", {"in_channels": 3}, encoder_weights=str(bad))


def test_module_checks_and_metrics_writer(tmp_path):
    info = {"num_classes": 4, "in_channels": 3}
    with pytest.raises(ValueError, match="model_kwargs.in_channels=1 contradicts the data module's in_channels=3"):
        ClassificationModule("lka_unet_tiny", {"in_channels": 1}, info)
    with pytest.raises(ValueError, match="model_kwargs.num_classes"):
        ClassificationModule("lka_unet_tiny", {"num_classes": 4}, info)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        ClassificationModule("lka_unet_tiny", None, info, label_smoothing=1.0)
    module = ClassificationModule("lka_unet_tiny", None, info, channels_last=True)
    assert module(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    out = write_fit_metrics(tmp_path, {"val/top1": 0.75, "val/top5": 1.0, "val/loss": 0.5}, module, None)
    assert json.loads((tmp_path / "metrics.json").read_text()) == out
    assert (out["top1"], out["top5"], out["val_loss"], out["model"]) == (0.75, 1.0, 0.5, "lka_unet_tiny")


@pytest.mark.parametrize("config", ["van_small.yaml", "nat_small.yaml"])
def test_imagenette_configs_run_on_the_real_data(config, shared_datasets, tmp_path, monkeypatch):
    """The Imagenette recipes build and run one training and one validation batch on the shared data."""
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(ROOT / "configs" / "imagenette" / config), "--trainer.fast_dev_run", "true",
          "--data.init_args.root", str(shared_datasets / "imagenette2-160"), "--data.init_args.num_workers", "0",
          "--data.init_args.batch_size", "4", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0


def test_drive_lka_unet_config_loads_classifier_weights(shared_datasets, tmp_path, monkeypatch):
    """configs/drive/lka_unet_imagenette.yaml initialises its encoder from a van_small classifier checkpoint and
    trains a step."""
    monkeypatch.chdir(tmp_path)
    classifier = ClassificationModule("lka_unet_small", None, {"num_classes": 10, "in_channels": 3})
    torch.save({"state_dict": classifier.state_dict()}, tmp_path / "van_small.ckpt")
    main(["fit", "--config", str(ROOT / "configs" / "drive" / "lka_unet_imagenette.yaml"),
          "--trainer.fast_dev_run", "true", "--model.init_args.encoder_weights", str(tmp_path / "van_small.ckpt"),
          "--data.init_args.root", str(shared_datasets / "DRIVE"), "--data.init_args.num_workers", "0",
          "--data.init_args.batch_size", "2", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["dice"] <= 1.0 and metrics["model"] == "lka_unet_small"


def test_eval_classifier_tool_reproduces_fit_top1(classifier_run, imagefolder, tmp_path, load_tool):
    """tools/eval_classifier.py re-measures the best checkpoint's val top-1 outside Lightning, from the checkpoint
    and from an fp16 safetensors export of it."""
    metrics = json.loads((classifier_run / "metrics.json").read_text())
    tool = load_tool("eval_classifier")
    args = ["--model", "lka_unet_tiny", "--root", str(imagefolder), "--image-size", "32", "--num-workers", "0"]
    tool.main([metrics["checkpoint"], *args, "--out", str(tmp_path / "ckpt.json")])
    got = json.loads((tmp_path / "ckpt.json").read_text())
    assert got["images"] == 6 * len(CLASSES)
    assert got["top1"] == pytest.approx(metrics["top1"], abs=1e-6) and got["top5"] == 1.0
    state = ClassificationModule.load_from_checkpoint(metrics["checkpoint"], map_location="cpu").model.state_dict()
    save_file({k: v.half() for k, v in state.items()}, tmp_path / "w.safetensors")
    tool.main([str(tmp_path / "w.safetensors"), *args, "--out", str(tmp_path / "fp16.json")])
    assert json.loads((tmp_path / "fp16.json").read_text())["top1"] == pytest.approx(metrics["top1"], abs=0.07)
