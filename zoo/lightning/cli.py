"""`zoo fit|validate|test|predict --config FILE`: LightningCLI with segzoo's defaults.

Adds: the data module's facts linked into the model (`data_info`), best/last checkpoints by val Dice, atomic
checkpoint writes, bf16 mixed precision by default on a GPU, and after `fit` the validation metrics of the best
checkpoint's epoch printed as a table and written to `<run dir>/metrics.json`.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from zoo.data.base import SegDataModule
from zoo.lightning.best_metrics import BestValidationMetrics
from zoo.lightning.checkpoint_io import AtomicCheckpointIO
from zoo.lightning.prediction_writer import LabelMapWriter
from zoo.lightning.segmentation import SegmentationModule

__all__ = ["ZooCLI", "run_lightning_cli", "write_fit_metrics"]


class ZooCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.filename": "best", "checkpoint.monitor": "val/dice", "checkpoint.mode": "max",
            "checkpoint.save_last": True, "checkpoint.enable_version_counter": False,
        })
        parser.add_lightning_class_args(LabelMapWriter, "prediction_writer")
        parser.add_lightning_class_args(BestValidationMetrics, "best_metrics")
        parser.link_arguments("data", "model.init_args.data_info", compute_fn=lambda dm: dm.describe(),
                              apply_on="instantiate")

    def after_fit(self) -> None:
        recorder = next((c for c in self.trainer.callbacks if isinstance(c, BestValidationMetrics)), None)
        run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # a collective call under DDP
        if not self.trainer.is_global_zero:
            return
        if recorder is None or recorder.best is None:
            print("no validation ran during fit: metrics.json not written")
            return
        best = getattr(self.trainer.checkpoint_callback, "best_model_path", "") or None
        write_fit_metrics(run_dir, recorder.best, self.model, best)


def write_fit_metrics(run_dir: Path, logged: dict[str, Any], model: SegmentationModule,
                      checkpoint: str | None) -> dict[str, Any]:
    """Print the validation metrics as a table and write them to `run_dir/metrics.json` (no NaN written)."""
    from rich.console import Console
    from rich.table import Table

    def num(v: Any) -> float | None:
        v = float(v)
        return None if math.isnan(v) else v

    per_class = {}
    for name in model.class_names:
        if f"val/dice_{name}" in logged:
            per_class[name] = {"dice": num(logged[f"val/dice_{name}"]), "iou": num(logged[f"val/iou_{name}"])}
    out = {"dice": num(logged["val/dice"]), "miou": num(logged["val/miou"]), "per_class": per_class,
           "val_loss": num(logged["val/loss"]) if "val/loss" in logged else None,
           "checkpoint": checkpoint, "epoch": logged.get("epoch"), "model": model.hparams["model_name"]}
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(out, indent=2))
    os.replace(tmp, run_dir / "metrics.json")

    epoch = logged.get("epoch")
    table = Table(title=f"validation (best checkpoint, epoch {epoch})" if epoch is not None else "validation")
    for col in ("class", "Dice", "IoU"):
        table.add_column(col)
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for name, m in per_class.items():
        table.add_row(name, fmt(m["dice"]), fmt(m["iou"]))
    table.add_row("[bold]mean (foreground)", fmt(out["dice"]), fmt(out["miou"]))
    Console().print(table)
    print(f"metrics written to {run_dir / 'metrics.json'}")
    return out


def run_lightning_cli(argv: list[str]) -> ZooCLI:
    """Run one LightningCLI subcommand (`fit`, `validate`, `test`, `predict`) with segzoo's defaults."""
    import sys

    # LightningCLI reads sys.argv; argv[0] is kept because DDP relaunches the same program from it
    saved, sys.argv = sys.argv, [sys.argv[0], *argv]
    try:
        return _make_cli()
    finally:
        sys.argv = saved


def _make_cli() -> ZooCLI:
    return ZooCLI(
        SegmentationModule, SegDataModule, subclass_mode_model=True, subclass_mode_data=True,
        trainer_defaults={
            "precision": "bf16-mixed" if torch.cuda.is_available() else "32-true",
            "plugins": [{"class_path": f"{AtomicCheckpointIO.__module__}.{AtomicCheckpointIO.__qualname__}"}],
        },
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "zoo"},
        auto_configure_optimizers=False,
    )
