"""End to end through the `zoo` command: quickstart (shortened), predict -> eval round trip, kill + resume, help."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def _fit_args(run_dir: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(QUICKSTART), "--trainer.logger.init_args.save_dir", str(run_dir),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory) -> Path:
    """The quickstart config, shortened for CI: 3 of its 12 epochs."""
    runs = tmp_path_factory.mktemp("runs")
    main(_fit_args(runs, "--trainer.max_epochs", "3"))
    return runs / "quickstart"


def test_quickstart_short_reaches_dice(quickstart_run):
    metrics = json.loads((quickstart_run / "metrics.json").read_text())
    assert set(metrics) >= {"dice", "miou", "per_class"}
    assert set(metrics["per_class"]) == {"background", "blob", "box", "tube"}
    assert metrics["dice"] >= 0.80, metrics
    assert 0 < metrics["miou"] < metrics["dice"]
    best = torch.load(quickstart_run / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    assert best["epoch"] == metrics["epoch"]  # the recorded metrics are those of best.ckpt's epoch
    assert (quickstart_run / "checkpoints" / "best.ckpt").is_file()
    assert (quickstart_run / "checkpoints" / "last.ckpt").is_file()
    assert not list(quickstart_run.rglob("*.tmp*")), "a temporary checkpoint file was left behind"


def test_predict_then_eval_reproduces_validation_dice(quickstart_run, tmp_path, load_tool):
    val = load_tool("export_synthetic").main(["--config", str(QUICKSTART), "--split", "val", "--output", str(tmp_path / "val")])
    preds = tmp_path / "preds"
    with pytest.raises(SystemExit) as e:
        main(["predict", "--ckpt", str(quickstart_run / "checkpoints" / "best.ckpt"), "--input",
              str(val / "images"), "--output", str(preds), "--overlay", "--quiet"])
    assert e.value.code == 0
    assert len(list(preds.glob("*.png"))) == 64 and len(list((preds / "overlays").glob("*.png"))) == 64
    with pytest.raises(SystemExit) as e:
        main(["eval", "--pred", str(preds), "--gt", str(val / "masks"), "--num-classes", "4",
              "--output", str(tmp_path / "eval")])
    assert e.value.code == 0
    # the LightningCLI route (`zoo predict --config`) writes the same label maps
    main(["predict", "--config", str(QUICKSTART), "--ckpt_path", str(quickstart_run / "checkpoints" / "best.ckpt"),
          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false",
          "--prediction_writer.output_dir", str(tmp_path / "cli_preds")])
    for png in sorted(preds.glob("*.png")):
        assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(tmp_path / "cli_preds" / png.name)))
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    logged = json.loads((quickstart_run / "metrics.json").read_text())
    assert abs(evaluated["dice"] - logged["dice"]) <= 0.01, (evaluated["dice"], logged["dice"])
    assert abs(evaluated["miou"] - logged["miou"]) <= 0.01


def test_killed_run_resumes_from_last_checkpoint(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = _fit_args(tmp_path, "--data.init_args.num_train", "64", "--data.init_args.num_val", "4",
                     "--data.init_args.image_size", "32")
    last = tmp_path / "quickstart" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", *args, "--trainer.max_epochs", "1000"], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if last.is_file() and torch.load(last, weights_only=True, map_location="cpu")["epoch"] >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed = torch.load(last, weights_only=True, map_location="cpu")  # loads: the write was atomic
    assert killed["epoch"] >= 1
    epochs = killed["epoch"] + 3
    done = subprocess.run([sys.executable, "-m", "zoo.cli", *args, "--trainer.max_epochs", str(epochs),
                           "--ckpt_path", str(last)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Restored all states from the checkpoint" in done.stdout + done.stderr
    final = torch.load(last, weights_only=True, map_location="cpu")
    assert final["epoch"] == epochs - 1 and final["global_step"] == epochs * 4  # 64 images / batch 16
    assert (tmp_path / "quickstart" / "metrics.json").is_file()
    assert not list(tmp_path.rglob("*.tmp*")), "a temporary checkpoint file was left behind"


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict", "eval", "models"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: zoo" in out and ("--config" in out if command in ("fit", "validate", "test") else True)


def test_top_level_usage_and_unknown_command(capsys):
    main([])
    assert "fit | validate | test" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown command 'trian'"):
        main(["trian"])


@pytest.mark.parametrize("config,dataset", [("drive/unet.yaml", "DRIVE"),
                                            ("hippocampus/unet.yaml", "Task04_Hippocampus")])
def test_dataset_configs_train_one_step(config, dataset, shared_datasets, tmp_path, monkeypatch):
    """The real-data recipes run end to end (one training and one validation batch) on the shared data."""
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(ROOT / "configs" / config), "--trainer.fast_dev_run", "true",
          "--data.init_args.root", str(shared_datasets / dataset), "--data.init_args.num_workers", "0",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["dice"] <= 1.0


def test_ddp_on_two_cpu_processes_trains_and_writes_metrics(tmp_path):
    """`trainer.strategy=ddp` from the same config: validation sums are reduced over ranks, rank 0 writes."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = _fit_args(tmp_path, "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2",
                     "--trainer.max_epochs", "2", "--data.init_args.num_train", "64", "--data.init_args.num_val", "8",
                     "--data.init_args.image_size", "32")
    done = subprocess.run([sys.executable, "-m", "zoo.cli", *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "quickstart" / "metrics.json").read_text())
    assert 0.0 <= metrics["dice"] <= 1.0 and metrics["epoch"] in (0, 1)
    final = torch.load(tmp_path / "quickstart" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert final["global_step"] == 2 * 2  # 64 images over 2 ranks, batch 16: 2 steps an epoch
