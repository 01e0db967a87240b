"""Model registry: `@register_model` adds a builder; `create_model` / `list_models` find them (timm's convention)."""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

__all__ = ["ModelEntry", "register_model", "register_prefix", "create_model", "list_models", "get_model_entry",
           "UnknownModelError"]


class UnknownModelError(KeyError):
    """Raised for a model name the registry does not hold; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: its builder plus facts `zoo models` prints."""

    name: str
    builder: Callable[..., nn.Module]
    family: str
    spatial_dims: tuple[int, ...]
    default_cfg: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}
# "timm" -> resolver: names "timm:<rest>" are built on demand by resolver("<rest>") and are not listed.
_PREFIXES: dict[str, Callable[[str], ModelEntry]] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    name: str | None = None,
    family: str = "misc",
    spatial_dims: tuple[int, ...] = (2, 3),
    **default_cfg: Any,
):
    """Register a model builder under `name` (default: the function's name).

    The builder takes keyword overrides (`num_classes`, `in_channels`, `spatial_dims`, ...) and returns an
    `nn.Module`. Usable bare (`@register_model`) or with arguments (`@register_model(family="unet")`).
    """

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _REGISTRY and _REGISTRY[key].builder is not builder:
            raise ValueError(f"model name {key!r} is already registered by {_REGISTRY[key].builder.__module__}")
        _REGISTRY[key] = ModelEntry(key, builder, family, tuple(spatial_dims), dict(default_cfg))
        return builder

    return wrap(fn) if fn is not None else wrap


def register_prefix(prefix: str, resolver: Callable[[str], ModelEntry]) -> None:
    """Resolve names `"<prefix>:<rest>"` dynamically with `resolver(rest)`, which returns a `ModelEntry` or
    raises `UnknownModelError` (e.g. `timm:resnet18`, `monai:SwinUNETR`)."""
    if not prefix or ":" in prefix:
        raise ValueError(f"prefix must be a non-empty name without ':', got {prefix!r}")
    if prefix in _PREFIXES and _PREFIXES[prefix] is not resolver:
        raise ValueError(f"model prefix {prefix!r} is already registered by {_PREFIXES[prefix].__module__}")
    _PREFIXES[prefix] = resolver


_PRETRAINED_REGISTERED = False


def _ensure_builtin_models() -> None:
    # Importing zoo.models registers every built-in family; imported lazily so `zoo.registry` stays light.
    # Then each manifest of zoo/weights/ becomes a pretrained name ("<model>_<dataset>"), once.
    global _PRETRAINED_REGISTERED
    import zoo.models  # noqa: F401

    if not _PRETRAINED_REGISTERED:
        _PRETRAINED_REGISTERED = True  # set first: registering looks up the base models through this function
        from zoo.weights import WEIGHTS_DIR
        from zoo.weights_manifest import register_pretrained

        try:
            register_pretrained(WEIGHTS_DIR)
        except Exception:
            _PRETRAINED_REGISTERED = False  # a broken manifest keeps failing loudly, not only the first time
            raise


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for `name`; unknown names raise `UnknownModelError` with suggestions."""
    _ensure_builtin_models()
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix, sep, rest = name.partition(":")
    if sep:
        if prefix not in _PREFIXES:
            raise UnknownModelError(f"unknown model prefix {prefix + ':'!r} in {name!r}; known prefixes: "
                                    f"{', '.join(p + ':' for p in sorted(_PREFIXES)) or 'none'}")
        return _PREFIXES[prefix](rest)
    close = difflib.get_close_matches(name, _REGISTRY.keys(), n=5, cutoff=0.5)
    if not close:
        close = [k for k in _REGISTRY if name.split("_")[0] in k][:5]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownModelError(f"unknown model {name!r}{hint} (`zoo models` lists all {len(_REGISTRY)})")


def list_models(pattern: str = "*", family: str | None = None, spatial_dims: int | None = None,
                pretrained: bool | None = None) -> list[str]:
    """Sorted registered names matching a shell-style `pattern`, optionally filtered by family and dims;
    ``pretrained=True`` keeps only names with shipped weights (`zoo/weights/`), ``False`` only the others."""
    _ensure_builtin_models()
    names = []
    for key, entry in _REGISTRY.items():
        if not fnmatch.fnmatchcase(key, pattern):
            continue
        if pretrained is not None and ("manifest" in entry.default_cfg) != pretrained:
            continue
        if family is not None and entry.family != family:
            continue
        if spatial_dims is not None and spatial_dims not in entry.spatial_dims:
            continue
        names.append(key)
    return sorted(names)


def create_model(name: str, pretrained: bool | str = False, **overrides: Any) -> nn.Module:
    """Build a registered model, e.g. `create_model("unet_small", num_classes=3, spatial_dims=3)`.

    `pretrained=True` loads the shipped weights of a pretrained name (`list_models(pretrained=True)`, e.g.
    "<model>_<dataset>"); a path or https URL loads that file (safetensors or a `weights_only` torch file,
    sha256-verified where a checksum is known).
    """
    entry = get_model_entry(name)
    sd = overrides.get("spatial_dims")
    if sd is not None and sd not in entry.spatial_dims:
        raise ValueError(f"model {name!r} supports spatial_dims in {entry.spatial_dims}, got spatial_dims={sd}")
    params = inspect.signature(entry.builder).parameters
    accepts_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in overrides if k not in params and not accepts_kwargs]
    if unknown:
        valid = [k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        raise TypeError(f"model {name!r} got unknown argument(s) {unknown}; expected some of {valid}")
    model = entry.builder(**overrides)
    model.segzoo_name = name  # type: ignore[attr-defined]
    if pretrained:
        from zoo.weights import load_pretrained

        load_pretrained(model, name, pretrained)
    return model
