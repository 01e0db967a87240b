"""Input normalisation as a small recorded spec, so training and `zoo predict` apply exactly the same one.

A spec is a plain dict stored in the checkpoint (``SegDataModule.normalization``):

- ``{"kind": "zscore"}``: per image and per channel, ``(x - mean) / std`` over all pixels/voxels.
- ``{"kind": "mean_std", "mean": [...], "std": [...]}``: fixed per-channel values, in the raw intensity scale
  of the files (e.g. 0-255 for 8-bit images).
- ``{"kind": "window", "min": a, "max": b}``: clip to ``[a, b]`` then scale to ``[0, 1]`` (e.g. CT windows).
- ``{"kind": "none"}``: only cast to float32.

Optional key ``"channels": [i, ...]``: keep only these input channels first (e.g. DRIVE's green channel ``[1]``).
"""
from __future__ import annotations

from typing import Any, Mapping, TypeVar

import numpy as np
import torch

__all__ = ["normalize", "check_normalization", "NORMALIZATION_KINDS", "ZSCORE"]

NORMALIZATION_KINDS = ("zscore", "mean_std", "window", "none")
ZSCORE: dict[str, Any] = {"kind": "zscore"}  # the default: per image and channel
_EPS = 1e-6
Array = TypeVar("Array", np.ndarray, torch.Tensor)


def check_normalization(spec: Mapping[str, Any]) -> dict:
    """Validate a normalisation spec and return it as a plain dict (clear errors naming the bad key)."""
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ValueError(f"normalization must be a dict with a 'kind' key, got {spec!r}")
    kind = spec["kind"]
    if kind not in NORMALIZATION_KINDS:
        raise ValueError(f"normalization kind must be one of {NORMALIZATION_KINDS}, got {kind!r}")
    allowed = {"kind", "channels"} | {"mean_std": {"mean", "std"}, "window": {"min", "max"}}.get(kind, set())
    extra = set(spec) - allowed
    if extra:
        raise ValueError(f"normalization of kind {kind!r} accepts keys {sorted(allowed)}, got extra {sorted(extra)}")
    if kind == "mean_std":
        mean, std = list(spec.get("mean", [])), list(spec.get("std", []))
        if not mean or len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"normalization 'mean_std' needs equal-length 'mean' and positive 'std' lists, "
                             f"got mean={mean}, std={std}")
    if kind == "window" and not float(spec.get("min", 0)) < float(spec.get("max", 0)):
        raise ValueError(f"normalization 'window' needs min < max, got min={spec.get('min')}, max={spec.get('max')}")
    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in spec.items()}


def normalize(image: Array, spec: Mapping[str, Any]) -> Array:
    """Apply ``spec`` to a channels-first image ``[C, *spatial]`` (numpy or torch); returns float32 of the same kind."""
    spec = check_normalization(spec)
    is_np = isinstance(image, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(image)) if is_np else image
    x = x.float()
    if x.ndim < 2:
        raise ValueError(f"image must be channels-first [C, *spatial], got shape {tuple(x.shape)}")
    if "channels" in spec:
        idx = list(spec["channels"])
        if max(idx) >= x.shape[0]:
            raise ValueError(f"normalization selects channels {idx} but the image has {x.shape[0]} channel(s)")
        x = x[idx]
    kind = spec["kind"]
    if kind == "zscore":
        flat = x.reshape(x.shape[0], -1)
        shape = (-1,) + (1,) * (x.ndim - 1)
        x = (x - flat.mean(1).view(shape)) / flat.std(1, unbiased=False).clamp_min(_EPS).view(shape)
    elif kind == "mean_std":
        mean = torch.tensor(spec["mean"], dtype=x.dtype, device=x.device)
        std = torch.tensor(spec["std"], dtype=x.dtype, device=x.device)
        if mean.numel() != x.shape[0]:
            raise ValueError(f"normalization has {mean.numel()} mean/std values but the image has "
                             f"{x.shape[0]} channels")
        shape = (-1,) + (1,) * (x.ndim - 1)
        x = (x - mean.view(shape)) / std.view(shape)
    elif kind == "window":
        lo, hi = float(spec["min"]), float(spec["max"])
        x = (x.clamp(lo, hi) - lo) / (hi - lo)
    x = x.contiguous()
    return x.numpy() if is_np else x
