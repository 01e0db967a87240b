"""`timm:<name>`: any timm model as a 2-D U-Net encoder, resolved on demand through the registry's prefix hook."""
from __future__ import annotations

import difflib
import functools

from backbones.timm_encoder import TimmUNet
from zoo.registry import ModelEntry, UnknownModelError, register_prefix


def resolve_timm(name: str) -> ModelEntry:
    """Registry entry for `timm:<name>`: `TimmUNet(name, ...)` (timm `features_only`, no pretrained download)."""
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise UnknownModelError(f"unknown timm model {name!r} in 'timm:{name}'{hint}")
    return ModelEntry(f"timm:{name}", functools.partial(TimmUNet, name), family="timm", spatial_dims=(2,))


register_prefix("timm", resolve_timm)
