"""Keeps the full validation metrics of the epoch the checkpoint callback judged best, for `metrics.json`.

Recording them as they are logged (already reduced over DDP ranks) gives exactly the numbers of `best.ckpt`
without a second validation pass after `fit`.
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

__all__ = ["BestValidationMetrics"]


class BestValidationMetrics(Callback):
    """Stores `val/*` metrics of the best validation epoch by the checkpoint callback's monitor and mode."""

    def __init__(self) -> None:
        self.best: dict[str, Any] | None = None
        self._score: float | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        ckpt = trainer.checkpoint_callback
        monitor = getattr(ckpt, "monitor", None) or "val/dice"
        mode = getattr(ckpt, "mode", "max")
        if monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[monitor])
        if math.isnan(score):
            return
        better = self._score is None or (score > self._score if mode == "max" else score < self._score)
        if better:
            self._score = score
            self.best = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            self.best["epoch"] = trainer.current_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "score": self._score}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self._score = state_dict.get("best"), state_dict.get("score")
