"""`zoo fit|validate|test|predict --config FILE`: LightningCLI with segzoo's defaults.

Adds: the data module's facts linked into the model (`data_info`), best/last checkpoints by val Dice (or the
metric a config names in `checkpoint.monitor`, e.g. `val/top1` for a `ClassificationModule`), atomic
checkpoint writes, bf16 mixed precision by default on a GPU, and after `fit` the validation metrics of the best
checkpoint's epoch printed as a table and written to `<run dir>/metrics.json`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from zoo.atomic import write_atomic
from zoo.lightning.best_metrics import BestValidationMetrics
from zoo.lightning.checkpoint_io import AtomicCheckpointIO
from zoo.lightning.classification import ClassificationModule
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


def _num(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def write_fit_metrics(run_dir: Path, logged: dict[str, Any], model: SegmentationModule | ClassificationModule,
                      checkpoint: str | None) -> dict[str, Any]:
    """Print the validation metrics as a table and write them to `run_dir/metrics.json` (no NaN written):
    Dice/mIoU (overall and per class) for segmentation, top-1/top-5 accuracy for classification."""
    from rich.console import Console

    if isinstance(model, ClassificationModule):
        out, table = _classification_summary(logged)
    else:
        out, table = _segmentation_summary(logged, model)
    epoch = logged.get("epoch")
    out.update(val_loss=_num(logged["val/loss"]) if "val/loss" in logged else None, checkpoint=checkpoint,
               epoch=epoch, model=model.hparams["model_name"])
    write_atomic(run_dir / "metrics.json", lambda tmp: tmp.write_text(json.dumps(out, indent=2)))
    table.title = f"validation (best checkpoint, epoch {epoch})" if epoch is not None else "validation"
    Console().print(table)
    print(f"metrics written to {run_dir / 'metrics.json'}")
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _classification_summary(logged: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    from rich.table import Table

    out = {"top1": _num(logged["val/top1"]), "top5": _num(logged["val/top5"])}
    table = Table()
    for col in ("top-1", "top-5"):
        table.add_column(col)
    table.add_row(_fmt(out["top1"]), _fmt(out["top5"]))
    return out, table


def _segmentation_summary(logged: dict[str, Any], model: SegmentationModule) -> tuple[dict[str, Any], Any]:
    from rich.table import Table

    per_class = {}
    for name in model.class_names:
        if f"val/dice_{name}" in logged:
            per_class[name] = {"dice": _num(logged[f"val/dice_{name}"]), "iou": _num(logged[f"val/iou_{name}"])}
    out = {"dice": _num(logged["val/dice"]), "miou": _num(logged["val/miou"]), "per_class": per_class}
    table = Table()
    for col in ("class", "Dice", "IoU"):
        table.add_column(col)
    for name, m in per_class.items():
        table.add_row(name, _fmt(m["dice"]), _fmt(m["iou"]))
    table.add_row("[bold]mean (foreground)", _fmt(out["dice"]), _fmt(out["miou"]))
    return out, table


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
        L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
        trainer_defaults={
            "precision": "bf16-mixed" if torch.cuda.is_available() else "32-true",
            "plugins": [{"class_path": f"{AtomicCheckpointIO.__module__}.{AtomicCheckpointIO.__qualname__}"}],
        },
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "zoo"},
        auto_configure_optimizers=False,
    )
