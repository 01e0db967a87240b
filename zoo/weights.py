"""Pretrained weights: find (manifest, path or https URL), verify (sha256) and load (safetensors / weights_only).

Nothing is ever unpickled: `.safetensors` files load with safetensors, anything else with
`torch.load(weights_only=True)`. A Lightning checkpoint's `state_dict` (keys prefixed `model.`) is accepted.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["WEIGHTS_DIR", "sha256_of", "read_manifest", "resolve_weights", "load_state_dict_file", "load_pretrained"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(name: str) -> tuple[dict[str, Any], Path]:
    """The validated manifest (and its path) of a pretrained model name; clear error for a name without one."""
    from zoo.registry import list_models
    from zoo.weights_manifest import pretrained_manifest

    found = pretrained_manifest(name)
    if found is None:
        have = list_models(pretrained=True)
        raise FileNotFoundError(f"no pretrained weights for model {name!r} (no manifest {name}.json in "
                                f"{WEIGHTS_DIR}); models with weights: {have or 'none yet'}. Pass "
                                f"pretrained=<path or https URL> instead.")
    return found


def _cache_dir() -> Path:
    return Path(os.environ.get("SEGZOO_CACHE", Path.home() / ".cache" / "segzoo"))


def resolve_weights(name: str, pretrained: bool | str) -> tuple[Path, str | None]:
    """Local file and expected sha256 (or None) for `pretrained=True`, a path, or an https URL."""
    if pretrained is True:
        manifest, path = read_manifest(name)
        file = path.parent / manifest["file"]
        if not file.is_file():
            raise FileNotFoundError(f"manifest {path} names weights file {file}, which is missing")
        return file, manifest["sha256"]
    spec = str(pretrained)
    if spec.startswith(("https://", "http://")):
        url, _, frag = spec.partition("#sha256=")
        dest = _cache_dir() / hashlib.sha256(url.encode()).hexdigest()[:16] / Path(url.split("?")[0]).name
        from zoo.data.download import download

        download(url, dest, sha256=frag or None)  # keeps a cached file that matches; verifies a new one
        return dest, frag or None
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    return path, None


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a `weights_only` torch file; Lightning checkpoints are unwrapped."""
    from zoo.checkpoint import load_weights_only, model_weights

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # corrupt or foreign file: say which and why
            raise ValueError(f"could not read weights from {path}: {type(e).__name__}: {e}") from e
    obj = load_weights_only(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = model_weights(obj["state_dict"])
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return obj


def load_pretrained(model: nn.Module, name: str, pretrained: bool | str) -> nn.Module:
    """Load verified weights into `model` in place (dtype converted to the model's); strict key matching."""
    path, expected = resolve_weights(name, pretrained)
    if expected is not None:
        got = sha256_of(path)
        if got != expected:
            raise ValueError(f"sha256 mismatch for {path}: expected {expected}, got {got} (corrupt or wrong file)")
    state = load_state_dict_file(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"weights {path} do not fit model {name!r}: missing keys {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                         f"{'...' if len(unexpected) > 5 else ''}")
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise ValueError(f"weights {path}: {k} has shape {tuple(v.shape)}, model expects {tuple(own[k].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model
