"""Volume geometry for 3-D prediction: resample an input to the training orientation/spacing, logits back.

Training on NIfTI data may reorient (MONAI ``Orientation``, e.g. ``"RAS"``) and resample (``Spacing``) each case;
a checkpoint's ``data_info`` then records ``orientation`` and ``spacing`` and `zoo predict` applies the same
steps, runs the model, and resamples the logits onto the input's own grid (so labels keep its affine).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, Spacing, SpatialResample

__all__ = ["to_training_grid", "to_input_grid"]

# The anatomical axis labels MONAI's LoadImage/Orientation use for NIfTI (RAS+ world coordinates).
_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def to_training_grid(image: np.ndarray | torch.Tensor, affine: np.ndarray, orientation: str | None,
                     spacing: Sequence[float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``[C, X, Y, Z]`` image reoriented to ``orientation`` and resampled (bilinear) to ``spacing`` (mm).

    Returns the resampled image and its affine; with neither set, the input and its affine unchanged.
    """
    x = MetaTensor(torch.as_tensor(image, dtype=torch.float32), affine=torch.as_tensor(affine, dtype=torch.float64))
    if orientation:
        x = Orientation(axcodes=orientation, labels=_LABELS)(x)
    if spacing:
        if len(spacing) != x.ndim - 1:
            raise ValueError(f"spacing must have {x.ndim - 1} values (mm per axis), got {list(spacing)}")
        x = Spacing(pixdim=[float(s) for s in spacing], mode="bilinear")(x)
    return x.as_tensor(), x.affine.clone()


def to_input_grid(logits: torch.Tensor, affine: torch.Tensor, input_affine: np.ndarray,
                  input_shape: Sequence[int]) -> torch.Tensor:
    """Resample ``[K, *spatial]`` logits on the grid ``affine`` onto the input's grid (bilinear, border-clamped)."""
    src = MetaTensor(logits.float().cpu(), affine=affine.to(torch.float64))
    out = SpatialResample(mode="bilinear", padding_mode="border")(
        src, dst_affine=torch.as_tensor(input_affine, dtype=torch.float64), spatial_size=list(input_shape))
    return torch.as_tensor(out.as_tensor())
