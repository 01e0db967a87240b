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

__all__ = ["load_segzoo_checkpoint", "load_weights_file", "load_model_weights", "DATA_INFO_KEYS"]

DATA_INFO_KEYS = ("num_classes", "in_channels", "spatial_dims", "patch_size", "class_names", "normalization")


def _torch_load(path: Path, arg: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{arg}: file {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle with disallowed globals, not a torch file at all
        raise ValueError(f"{arg}: cannot load {str(path)!r} with torch.load(weights_only=True): corrupt, not a "
                         f"torch file, or it holds pickled Python objects ({_short(err)})") from err


def _short(err: Exception) -> str:
    """The informative sentence of torch.load's long error text (without its advice to unpickle)."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
        return text.split(". ")[0].split("\n")[0].strip()
    return text.strip().split("\n")[0].split(". ")[0]


def _model_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The ``model.``-prefixed entries of a Lightning state dict, prefix (and torch.compile's ``_orig_mod.``) cut."""
    out = {}
    for k, v in state.items():
        if k.startswith("model."):
            k = k[len("model."):]
            out[k[len("_orig_mod."):] if k.startswith("_orig_mod.") else k] = v
    return out


def load_weights_file(path: str | Path, arg: str = "weights") -> dict[str, torch.Tensor]:
    """A model state dict from ``.safetensors`` or a torch file (a bare state dict, or a checkpoint whose
    ``state_dict`` holds ``model.``-prefixed weights)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise FileNotFoundError(f"{arg}: file {str(path)!r} does not exist")
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:
            raise ValueError(f"{arg}: cannot read safetensors file {str(path)!r}: {err}") from err
    obj = _torch_load(path, arg)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = _model_weights(obj["state_dict"]) or obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{arg}: {str(path)!r} holds no state dict of tensors")
    return obj


def load_model_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with an error naming the file and the mismatched keys."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights in {source!r} do not fit the model: {err}") from err


def load_segzoo_checkpoint(path: str | Path, arg: str = "ckpt") -> tuple[nn.Module, dict[str, Any]]:
    """The model (weights loaded, eval mode, on CPU) and ``data_info`` of a segzoo Lightning checkpoint."""
    path = Path(path)
    ckpt = _torch_load(path, arg)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    missing = [k for k in ("model_name", "model_kwargs", "data_info") if not isinstance(hp, dict) or k not in hp]
    if missing or not isinstance(ckpt.get("state_dict"), dict):
        what = f"hyper_parameters keys {missing}" if missing else "a 'state_dict'"
        raise ValueError(f"{arg}: {str(path)!r} is not a segzoo checkpoint (it lacks {what}; expected a file saved "
                         "by zoo.lightning.SegmentationModule)")
    info = dict(hp["data_info"])
    lacking = [k for k in DATA_INFO_KEYS if k not in info and k != "class_names"]
    if lacking:
        raise ValueError(f"{arg}: {str(path)!r} has data_info without keys {lacking}; expected {list(DATA_INFO_KEYS)}")
    state = _model_weights(ckpt["state_dict"])
    if not state:
        raise ValueError(f"{arg}: {str(path)!r} has no 'model.'-prefixed weights in its state_dict")
    model = create_model(hp["model_name"], **dict(hp["model_kwargs"]))
    load_model_weights(model, state, str(path))
    return model.eval(), info
