"""albumentations transforms segzoo needs that the library lacks (imported only when a 2-D pipeline is built)."""
from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np

__all__ = ["ScaleShift"]


class ScaleShift(A.ImageOnlyTransform):
    """``image * a + b`` with ``a ~ U(1 - scale, 1 + scale)``, ``b ~ U(-shift, shift)``, never clipped: for
    normalised float images (albumentations' brightness/contrast clips float images to [0, 1])."""

    def __init__(self, scale: float = 0.1, shift: float = 0.1, p: float = 0.5) -> None:
        super().__init__(p=p)
        if scale < 0 or shift < 0:
            raise ValueError(f"scale and shift must be >= 0, got scale={scale}, shift={shift}")
        self.scale, self.shift = float(scale), float(shift)

    def get_params(self) -> dict[str, float]:
        return {"alpha": self.py_random.uniform(1 - self.scale, 1 + self.scale),
                "beta": self.py_random.uniform(-self.shift, self.shift)}

    def apply(self, img: np.ndarray, alpha: float = 1.0, beta: float = 0.0, **params: Any) -> np.ndarray:
        return (img * alpha + beta).astype(img.dtype, copy=False)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "shift")
