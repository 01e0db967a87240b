"""Checkpoint writing that never leaves a half-written file: write to a temporary name, then rename."""
from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from zoo.atomic import write_atomic

__all__ = ["AtomicCheckpointIO"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose saves are atomic (a killed run keeps its previous `last.ckpt` intact)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        write_atomic(path, lambda tmp: torch.save(checkpoint, tmp))
