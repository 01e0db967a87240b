"""The keyword arguments every registered model starts from, so a family's builder states only its own."""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["MODEL_DEFAULTS", "model_config"]

MODEL_DEFAULTS: dict[str, Any] = dict(spatial_dims=2, in_channels=1, num_classes=2)


def model_config(*parts: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """`MODEL_DEFAULTS` (2-D, one input channel, two classes), updated by each of `parts` in order (a size-table
    entry, a variant's settings), then by the caller's `overrides`."""
    cfg = dict(MODEL_DEFAULTS)
    for part in parts:
        cfg.update(part)
    cfg.update(overrides)
    return cfg
