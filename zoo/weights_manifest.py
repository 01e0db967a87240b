"""Manifests of shipped weights (`zoo/weights/<model>_<dataset>.json`): schema, validation, and registration of
each one as a pretrained model name, e.g. `attention_unet_small_drive` = `attention_unet_small` + its overrides.

A manifest (``schema_version`` 1) holds::

    name           "<model>_<dataset>" or "<prefix of model>_<dataset>" (`attention_unet_drive` for
                   `attention_unet_small`), equal to the file's stem
    model          registry name of the architecture; model_kwargs: its overrides (JSON values)
    dataset        {"name", "split", "licence"} (+ optional "url")
    data_info      as stored in segzoo checkpoints: num_classes, in_channels, spatial_dims, patch_size,
                   normalization (+ optional class_names, orientation, spacing)
    metrics        {"dice": M, "miou": M, optional "auc", "hd95", ...}, M = {"value": number, "command": str}
    metrics_tta    optional, the same measured with `zoo predict --tta` (mirroring test-time augmentation)
    training       {"config": path, "time_hours": number, "gpu": str} (+ optional "epochs", "checkpoint")
    throughput     {"value": number, "unit": "images/s"|"volumes/s", "device", "batch_size", "input_size", "command"}
    file, sha256, bytes, dtype   the safetensors file next to the manifest, its sha256, size and dtype
    float32_tensors  optional names of the tensors kept in fp32 because their values overflow `dtype`
    sw_overlap     optional sliding-window overlap for `zoo predict` (default 0.5)
"""
from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from zoo.data.normalize import check_normalization

__all__ = ["SCHEMA_VERSION", "MAX_WEIGHTS_BYTES", "ManifestError", "validate_manifest", "load_manifest",
           "manifest_paths", "register_pretrained", "pretrained_manifest"]

SCHEMA_VERSION = 1
MAX_WEIGHTS_BYTES = 25 * 1024 * 1024  # one shipped weight file (issue 6: <= 25 MiB each, <= 150 MiB in all)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_DATASET = re.compile(r"^[a-z0-9][a-z0-9]*$")  # no '_' so that "<model>_<dataset>" splits one way only
_REQUIRED_METRICS = ("dice", "miou")
_UNIT_METRICS = ("dice", "dice_pooled", "miou", "auc", "accuracy", "sensitivity", "precision", "f1",  # in [0, 1]
                 "top1")
_DTYPES = ("float16", "bfloat16", "float32")
_THROUGHPUT_UNITS = ("images/s", "volumes/s")


class ManifestError(ValueError):
    """A manifest that does not follow the schema; the message names the file and the field."""


def _fail(where: str, field: str, expected: str, got: Any) -> None:
    raise ManifestError(f"{where}: {field} must be {expected}, got {got!r}")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _str(where: str, d: Mapping[str, Any], key: str, prefix: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v.strip():
        _fail(where, prefix + key, "a non-empty string", v)
    return v


def _section(where: str, m: Mapping[str, Any], key: str) -> dict[str, Any]:
    v = m.get(key)
    if not isinstance(v, dict):
        _fail(where, key, "an object", v)
    return v


def _check_data_info(where: str, info: dict[str, Any]) -> None:
    for key in ("num_classes", "in_channels"):
        if not _is_pos_int(info.get(key)):
            _fail(where, f"data_info.{key}", "a positive integer", info.get(key))
    dims = info.get("spatial_dims")
    if dims not in (2, 3) or isinstance(dims, bool):
        _fail(where, "data_info.spatial_dims", "2 or 3", dims)
    patch = info.get("patch_size")
    if not isinstance(patch, list) or len(patch) != dims or not all(map(_is_pos_int, patch)):
        _fail(where, "data_info.patch_size", f"a list of {dims} positive integers", patch)
    try:
        check_normalization(info.get("normalization"))
    except ValueError as err:
        raise ManifestError(f"{where}: data_info.normalization: {err}") from err
    names = info.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != info["num_classes"]
                              or not all(isinstance(n, str) for n in names)):
        _fail(where, "data_info.class_names", f"a list of {info['num_classes']} strings", names)
    spacing = info.get("spacing")
    if spacing is not None and (not isinstance(spacing, list) or len(spacing) != dims
                                or not all(_is_num(s) and s > 0 for s in spacing)):
        _fail(where, "data_info.spacing", f"a list of {dims} positive numbers", spacing)
    orientation = info.get("orientation")
    if orientation is not None and (not isinstance(orientation, str) or len(orientation) != dims):
        _fail(where, "data_info.orientation", f"a {dims}-letter axis code such as 'RAS'", orientation)


def _check_metrics(where: str, metrics: dict[str, Any], section: str = "metrics") -> None:
    missing = [k for k in _REQUIRED_METRICS if k not in metrics]
    if missing:
        raise ManifestError(f"{where}: {section} lacks {missing}; every manifest records {list(_REQUIRED_METRICS)} "
                            f"(got keys {sorted(metrics)})")
    for name, entry in metrics.items():
        if not isinstance(entry, dict) or set(entry) - {"value", "command", "notes"}:
            _fail(where, f"{section}.{name}", 'an object {"value": number, "command": str} (optional "notes")',
                  entry)
        value = entry.get("value")
        if not _is_num(value) or value < 0 or (name in _UNIT_METRICS and value > 1):
            _fail(where, f"{section}.{name}.value", "a number in [0, 1]" if name in _UNIT_METRICS else
                  "a non-negative number", value)
        _str(where, entry, "command", f"{section}.{name}.")


def validate_manifest(manifest: Any, where: str = "manifest", weights_dir: str | Path | None = None,
                      check_file: bool = False) -> dict[str, Any]:
    """Check ``manifest`` against the schema (module docstring) and return it; `ManifestError` names the field.

    With ``check_file``, the weights file in ``weights_dir`` must exist with the recorded size and sha256.
    """
    if not isinstance(manifest, dict):
        _fail(where, "the manifest", "a JSON object", type(manifest).__name__)
    m = manifest
    if m.get("schema_version") != SCHEMA_VERSION:
        _fail(where, "schema_version", str(SCHEMA_VERSION), m.get("schema_version"))
    name, model = _str(where, m, "name", ""), _str(where, m, "model", "")
    if not _NAME.match(model):
        _fail(where, "model", "a registry name (lower case, digits, '_')", model)
    kwargs = m.get("model_kwargs")
    if not isinstance(kwargs, dict):
        _fail(where, "model_kwargs", "an object of keyword overrides", kwargs)
    dataset = _section(where, m, "dataset")
    ds_name = _str(where, dataset, "name", "dataset.")
    if not _DATASET.match(ds_name):
        _fail(where, "dataset.name", "lower-case letters and digits only (no '_')", ds_name)
    _str(where, dataset, "split", "dataset.")
    _str(where, dataset, "licence", "dataset.")
    if not (_NAME.match(name) and name.endswith(f"_{ds_name}") and model.startswith(name[: -len(ds_name) - 1])):
        _fail(where, "name", f"'<model or its family prefix>_<dataset.name>', e.g. {model + '_' + ds_name!r}", name)
    info = _section(where, m, "data_info")
    _check_data_info(where, info)
    for key in ("num_classes", "in_channels", "spatial_dims"):
        if key in kwargs and kwargs[key] != info[key]:
            raise ManifestError(f"{where}: model_kwargs.{key}={kwargs[key]!r} contradicts data_info.{key}="
                                f"{info[key]!r}")
    _check_metrics(where, _section(where, m, "metrics"))
    if "metrics_tta" in m:
        _check_metrics(where, _section(where, m, "metrics_tta"), "metrics_tta")
    training = _section(where, m, "training")
    _str(where, training, "config", "training.")
    _str(where, training, "gpu", "training.")
    if not _is_num(training.get("time_hours")) or training["time_hours"] <= 0:
        _fail(where, "training.time_hours", "a positive number", training.get("time_hours"))
    tp = _section(where, m, "throughput")
    if not _is_num(tp.get("value")) or tp["value"] <= 0:
        _fail(where, "throughput.value", "a positive number", tp.get("value"))
    if tp.get("unit") not in _THROUGHPUT_UNITS:
        _fail(where, "throughput.unit", f"one of {_THROUGHPUT_UNITS}", tp.get("unit"))
    _str(where, tp, "device", "throughput.")
    _str(where, tp, "command", "throughput.")
    if not _is_pos_int(tp.get("batch_size")):
        _fail(where, "throughput.batch_size", "a positive integer", tp.get("batch_size"))
    size = tp.get("input_size")
    if not isinstance(size, list) or len(size) != info["spatial_dims"] or not all(map(_is_pos_int, size)):
        _fail(where, "throughput.input_size", f"a list of {info['spatial_dims']} positive integers", size)
    file = _str(where, m, "file", "")
    if file != f"{name}.safetensors":
        _fail(where, "file", f"{name + '.safetensors'!r} (next to the manifest)", file)
    sha = m.get("sha256")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        _fail(where, "sha256", "64 lower-case hex digits", sha)
    if not _is_pos_int(m.get("bytes")) or m["bytes"] > MAX_WEIGHTS_BYTES:
        _fail(where, "bytes", f"a positive integer <= {MAX_WEIGHTS_BYTES} (25 MiB)", m.get("bytes"))
    if m.get("dtype") not in _DTYPES:
        _fail(where, "dtype", f"one of {_DTYPES}", m.get("dtype"))
    kept = m.get("float32_tensors", [])
    if not isinstance(kept, list) or not all(isinstance(k, str) and k for k in kept):
        _fail(where, "float32_tensors", "a list of tensor names", kept)
    overlap = m.get("sw_overlap", 0.5)
    if not _is_num(overlap) or not 0 <= overlap < 1:
        _fail(where, "sw_overlap", "a number in [0, 1)", overlap)
    if check_file:
        from zoo.weights import sha256_of

        path = Path(weights_dir if weights_dir is not None else ".") / file
        if not path.is_file():
            raise ManifestError(f"{where}: weights file {path} is missing")
        if path.stat().st_size != m["bytes"]:
            raise ManifestError(f"{where}: {path} has {path.stat().st_size} bytes, the manifest says {m['bytes']}")
        got = sha256_of(path)
        if got != sha:
            raise ManifestError(f"{where}: sha256 of {path} is {got}, the manifest says {sha}")
    return m


def load_manifest(path: str | Path, check_file: bool = False) -> dict[str, Any]:
    """Read and validate one manifest file; the stem must be the manifest's ``name``."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: cannot read the manifest as JSON: {err}") from err
    validate_manifest(manifest, str(path), path.parent, check_file)
    if path.stem != manifest["name"]:
        _fail(str(path), "name", f"the file's stem {path.stem!r}", manifest["name"])
    return manifest


def manifest_paths(weights_dir: str | Path) -> list[Path]:
    """The ``*.json`` manifests of a weights folder, sorted (none if the folder does not exist)."""
    d = Path(weights_dir)
    return sorted(d.glob("*.json")) if d.is_dir() else []


def _alias_builder(base: Any, model_kwargs: dict[str, Any]) -> Any:
    """A builder calling ``base`` with the manifest's overrides (caller overrides win); keeps base's signature."""

    def build(**overrides: Any):
        return base(**{**model_kwargs, **overrides})

    return functools.update_wrapper(build, base)


def register_pretrained(weights_dir: str | Path) -> list[str]:
    """Register every manifest of ``weights_dir`` as a model name (idempotent); returns the names.

    The entry's ``default_cfg`` holds ``manifest`` (its path), ``dataset`` and ``base_model``, so
    `create_model(name, pretrained=True)` finds the weights and `list_models(pretrained=True)` lists it.
    """
    from zoo.registry import _REGISTRY, _ensure_builtin_models, get_model_entry, register_model

    _ensure_builtin_models()  # first, or its own registration of zoo/weights would collide with this loop's
    names = []
    for path in manifest_paths(weights_dir):
        m = load_manifest(path)
        name = m["name"]
        known = _REGISTRY.get(name)
        if known is not None:
            if known.default_cfg.get("manifest") == str(path.resolve()):
                names.append(name)
                continue
            raise ManifestError(f"{path}: model name {name!r} is already registered "
                                f"({known.default_cfg.get('manifest') or known.builder.__module__})")
        base = get_model_entry(m["model"])
        if base.default_cfg.get("manifest"):
            _fail(str(path), "model", "an architecture, not another pretrained name", m["model"])
        dims = m["data_info"]["spatial_dims"]
        if dims not in base.spatial_dims:
            _fail(str(path), "data_info.spatial_dims", f"one of {base.spatial_dims} (model {m['model']!r})", dims)
        register_model(_alias_builder(base.builder, {**m["model_kwargs"], "spatial_dims": dims}), name=name,
                       family=base.family, spatial_dims=(dims,), manifest=str(path.resolve()),
                       dataset=m["dataset"]["name"], base_model=m["model"])
        names.append(name)
    return names


def pretrained_manifest(name: str) -> tuple[dict[str, Any], Path] | None:
    """The manifest and its path of a registered pretrained name, or None for a plain architecture."""
    from zoo.registry import get_model_entry

    path = get_model_entry(name).default_cfg.get("manifest")
    if path is None:
        return None
    return load_manifest(path), Path(path)
