"""Intensity normalisation shared by the data modules and `zoo predict`, so training and inference see the same input.

The spec is a small dict stored in the checkpoint (``SegDataModule.describe()["normalization"]``):
``{"kind": "zscore"}``: per image and per channel, ``(x - mean) / std`` over the spatial axes.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["ZSCORE", "zscore", "normalize"]

ZSCORE: dict[str, Any] = {"kind": "zscore"}
_EPS = 1e-6


def zscore(image: np.ndarray) -> np.ndarray:
    """Per-channel z-score of a ``[C, *spatial]`` image (float32); a constant channel becomes zeros."""
    if image.ndim < 2:
        raise ValueError(f"image must be [C, *spatial], got shape {tuple(image.shape)}")
    x = image.astype(np.float64, copy=False)
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    return ((x - mean) / np.maximum(std, _EPS)).astype(np.float32)


def normalize(image: np.ndarray, spec: Mapping[str, Any] | None = None) -> np.ndarray:
    """Apply a normalisation spec (see module doc) to a ``[C, *spatial]`` image; ``None`` means z-score."""
    kind = (spec or ZSCORE).get("kind")
    if kind == "zscore":
        return zscore(image)
    raise ValueError(f"normalization kind must be 'zscore', got {kind!r}")
