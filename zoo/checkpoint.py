"""Loading segzoo checkpoints and weight files without unpickling code: models are rebuilt from the registry.

A segzoo checkpoint (saved by `zoo.lightning.SegmentationModule`) is a dict with ``hyper_parameters`` holding
``model_name``, ``model_kwargs`` (for `zoo.create_model`) and ``data_info`` (`SegDataModule.describe()`), and
``state_dict`` whose model weights are prefixed ``model.``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.registry import create_model

__all__ = ["load_segzoo_checkpoint", "load_weights_only", "model_weights", "DATA_INFO_KEYS"]

DATA_INFO_KEYS = ("num_classes", "in_channels", "spatial_dims", "patch_size", "class_names", "normalization")


def load_weights_only(path: str | Path, arg: str = "weights") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, the only way segzoo reads torch files (nothing unpickled);
    a missing file raises FileNotFoundError and an unreadable one ValueError, both naming ``arg`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{arg}: file {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle with disallowed globals, not a torch file at all
        raise ValueError(f"{arg}: could not read weights from {str(path)!r} with torch.load(weights_only=True): "
                         f"corrupt, not a torch file, or it holds pickled Python objects ({_short(err)})") from err


def _short(err: Exception) -> str:
    """The informative sentence of torch.load's long error text (without its advice to unpickle)."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
        return text.split(". ")[0].split("\n")[0].strip()
    return text.strip().split("\n")[0].split(". ")[0]


def model_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The ``model.``-prefixed entries of a Lightning state dict, prefix (and a compiled ``_orig_mod.``) cut."""
    out = {}
    for k, v in state.items():
        if k.startswith("model."):
            k = k[len("model."):]
            out[k[len("_orig_mod."):] if k.startswith("_orig_mod.") else k] = v
    return out


def load_segzoo_checkpoint(path: str | Path, arg: str = "ckpt") -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """The model (weights loaded, eval mode, on CPU), ``data_info`` and all hyper-parameters of a segzoo
    checkpoint; ``data_info``'s num_classes/in_channels/spatial_dims default to the model's."""
    path = Path(path)
    ckpt = load_weights_only(path, arg)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    missing = [k for k in ("model_name", "model_kwargs", "data_info") if not isinstance(hp, dict) or k not in hp]
    if missing or not isinstance(ckpt.get("state_dict"), dict):
        what = f"hyper_parameters keys {missing}" if missing else "a 'state_dict'"
        raise ValueError(f"{arg}: {str(path)!r} is not a segzoo checkpoint (it lacks {what}; expected a file saved "
                         "by zoo.lightning.SegmentationModule)")
    info = dict(hp["data_info"])
    if "normalization" not in info:
        raise ValueError(f"{arg}: {str(path)!r} has data_info without 'normalization' (keys {sorted(info)}), so "
                         f"its input pipeline is unknown; expected keys {list(DATA_INFO_KEYS)}")
    state = model_weights(ckpt["state_dict"])
    if not state:
        raise ValueError(f"{arg}: {str(path)!r} has no 'model.'-prefixed weights in its state_dict")
    model = create_model(hp["model_name"], **dict(hp["model_kwargs"]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{arg}: the weights in {str(path)!r} do not fit model {hp['model_name']!r}: {err}") from err
    for key in ("num_classes", "in_channels", "spatial_dims"):
        if key not in info and getattr(model, key, None) is not None:
            info[key] = int(getattr(model, key))
    return model.eval(), info, dict(hp)
