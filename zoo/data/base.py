"""The contract every segmentation data module keeps, so models, training, predict and eval plug together.

Batches are dicts: ``image`` float32 ``[B, C, *spatial]`` (already normalised), ``label`` int64
``[B, *spatial]`` class indices in ``[0, num_classes)``, ``name`` list of case names, and optionally
``roi`` bool ``[B, *spatial]`` (e.g. DRIVE's field of view: metrics are computed inside it only).
Training batches are patches of ``patch_size``; validation/test batches are whole cases, batch size 1.
"""
from __future__ import annotations

from typing import Sequence

import lightning as L

__all__ = ["SegDataModule"]


class SegDataModule(L.LightningDataModule):
    """Base class: subclasses set the attributes below in ``__init__`` and implement the dataloaders."""

    num_classes: int
    in_channels: int
    spatial_dims: int
    patch_size: Sequence[int]
    class_names: Sequence[str]

    def predict_dataloader(self):
        """`zoo predict --config` runs over the validation cases unless a subclass says otherwise."""
        return self.val_dataloader()

    def describe(self) -> dict:
        """Facts a trained model must remember to predict on new files (stored in the checkpoint)."""
        return dict(num_classes=self.num_classes, in_channels=self.in_channels, spatial_dims=self.spatial_dims,
                    patch_size=list(self.patch_size), class_names=list(self.class_names),
                    normalization=getattr(self, "normalization", {"kind": "zscore"}))
