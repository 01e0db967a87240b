"""Writes the label maps of `zoo predict --config FILE` (LightningCLI's predict over a data module)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

from zoo.volume_io import label_dtype, write_label_map

__all__ = ["LabelMapWriter"]


class LabelMapWriter(BasePredictionWriter):
    """Saves each predicted case as `<output_dir>/<name>.png` (2-D) or `.nii.gz` (3-D, identity affine: the data
    module's cases carry no geometry; use `zoo predict --ckpt` on NIfTI files to keep their affine).

    `output_dir` defaults to `<run dir>/predictions`.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        import nibabel as nib

        out = Path(self.output_dir or Path(trainer.log_dir or trainer.default_root_dir) / "predictions")
        labels = prediction["label"].cpu().numpy()
        names = prediction.get("name") or [f"case{batch_idx:05d}_{i}" for i in range(len(labels))]
        num_classes = int(getattr(pl_module, "num_classes", int(labels.max()) + 1))
        for name, lab in zip(names, labels):
            if lab.ndim == 2:
                write_label_map(out / f"{name}.png", lab, num_classes)
            else:
                out.mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(lab.astype(label_dtype(num_classes)), np.eye(4)), str(out / f"{name}.nii.gz"))
