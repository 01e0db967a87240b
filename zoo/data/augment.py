"""Augmentation pipelines built from a YAML-friendly spec: albumentations for 2-D, MONAI for 3-D.

A spec maps an operation name to its settings: a number is its probability, a dict its parameters (``p`` is
the probability), ``true`` uses the defaults, ``null``/``false`` switches it off. Operations run in a fixed
order (geometric first, then intensity) whatever their order in the YAML, e.g.::

    augment: {hflip: 0.5, vflip: 0.5, rotate: {limit: 180, p: 0.5}, scale: {range: [0.8, 1.2], p: 0.3},
              elastic: {alpha: 30, sigma: 6, p: 0.2}, brightness_contrast: {brightness: 0.2, contrast: 0.2}}

2-D ``brightness_contrast`` (albumentations) clips float images to [0, 1]: on images normalised before
augmentation (`FolderSegDataModule`) use ``intensity: {scale, shift, p}`` (unclipped ``x * a + b``) instead.
"""
from __future__ import annotations

import inspect
import math
import os
from typing import Any, Callable, Mapping, Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__all__ = ["augment_2d_ops", "build_augment_2d", "build_augment_3d", "AUGMENT_2D_OPS", "AUGMENT_3D_OPS"]


# ---- 2-D (albumentations; image HWC uint8 or float, masks HW nearest-interpolated, filled with 0) --------------

def _hflip(p: float = 0.5) -> Any:
    import albumentations as A
    return A.HorizontalFlip(p=p)


def _vflip(p: float = 0.5) -> Any:
    import albumentations as A
    return A.VerticalFlip(p=p)


def _rot90(p: float = 0.5) -> Any:
    import albumentations as A
    return A.RandomRotate90(p=p)


def _rotate2d(limit: float = 180.0, p: float = 0.5) -> Any:
    import albumentations as A
    return A.Affine(rotate=(-limit, limit), fill=0, fill_mask=0, p=p)


def _scale2d(range: Sequence[float] = (0.8, 1.2), p: float = 0.5) -> Any:  # noqa: A002  (YAML key name)
    import albumentations as A
    return A.Affine(scale=tuple(range), fill=0, fill_mask=0, p=p)


def _elastic(alpha: float = 30.0, sigma: float = 6.0, p: float = 0.2) -> Any:
    import albumentations as A
    return A.ElasticTransform(alpha=alpha, sigma=sigma, fill=0, fill_mask=0, p=p)


def _brightness_contrast(brightness: float = 0.2, contrast: float = 0.2, p: float = 0.5) -> Any:
    import albumentations as A
    return A.RandomBrightnessContrast(brightness_limit=brightness, contrast_limit=contrast, p=p)


def _gamma2d(range: Sequence[float] = (0.7, 1.5), p: float = 0.3) -> Any:  # noqa: A002
    import albumentations as A
    lo, hi = range
    return A.RandomGamma(gamma_limit=(lo * 100, hi * 100), p=p)


def _hue_saturation(hue: float = 10, saturation: float = 20, value: float = 10, p: float = 0.3) -> Any:
    import albumentations as A
    return A.HueSaturationValue(hue_shift_limit=hue, sat_shift_limit=saturation, val_shift_limit=value, p=p)


def _noise2d(std: Sequence[float] = (0.01, 0.05), p: float = 0.2) -> Any:
    import albumentations as A
    return A.GaussNoise(std_range=tuple(std), p=p)


def _blur2d(sigma: Sequence[float] = (0.5, 1.0), p: float = 0.2) -> Any:
    import albumentations as A
    return A.GaussianBlur(sigma_limit=tuple(sigma), p=p)


def _intensity2d(scale: float = 0.1, shift: float = 0.1, p: float = 0.5) -> Any:
    """x * U(1 - scale, 1 + scale) + U(-shift, shift), unclipped: for images already normalised (z-scored)."""
    from zoo.data.albu_ops import ScaleShift
    return ScaleShift(scale=scale, shift=shift, p=p)


AUGMENT_2D_OPS: dict[str, Callable[..., Any]] = {
    "hflip": _hflip, "vflip": _vflip, "rot90": _rot90, "rotate": _rotate2d, "scale": _scale2d,
    "elastic": _elastic, "brightness_contrast": _brightness_contrast, "gamma": _gamma2d,
    "hue_saturation": _hue_saturation, "noise": _noise2d, "blur": _blur2d, "intensity": _intensity2d,
}


# ---- 3-D (MONAI dictionary transforms on keys image/label[/roi]; channels-first tensors) ------------------------

def _flip3d(keys: list[str], dims: int, p: float = 0.5, axes: Sequence[int] | None = None) -> list:
    from monai.transforms import RandFlipd
    return [RandFlipd(keys, prob=p, spatial_axis=a) for a in (range(dims) if axes is None else axes)]


def _rot90_3d(keys: list[str], dims: int, p: float = 0.2, axes: Sequence[int] = (0, 1)) -> list:
    from monai.transforms import RandRotate90d
    return [RandRotate90d(keys, prob=p, spatial_axes=tuple(axes))]


def _rotate3d(keys: list[str], dims: int, degrees: float = 15.0, p: float = 0.2) -> list:
    from monai.transforms import RandRotated
    r = math.radians(degrees)
    modes = ["bilinear"] + ["nearest"] * (len(keys) - 1)
    return [RandRotated(keys, range_x=r, range_y=r if dims == 3 else 0.0, range_z=r if dims == 3 else 0.0, prob=p,
                        mode=modes, padding_mode="zeros", keep_size=True)]


def _scale3d(keys: list[str], dims: int, range: Sequence[float] = (0.85, 1.25), p: float = 0.2) -> list:  # noqa: A002
    from monai.transforms import RandZoomd
    modes = ["trilinear" if dims == 3 else "bilinear"] + ["nearest"] * (len(keys) - 1)
    return [RandZoomd(keys, prob=p, min_zoom=range[0], max_zoom=range[1], mode=modes, keep_size=True)]


def _intensity_scale(keys: list[str], dims: int, factor: float = 0.1, p: float = 0.5) -> list:
    from monai.transforms import RandScaleIntensityd
    return [RandScaleIntensityd(keys[:1], factors=factor, prob=p)]


def _intensity_shift(keys: list[str], dims: int, offset: float = 0.1, p: float = 0.5) -> list:
    from monai.transforms import RandShiftIntensityd
    return [RandShiftIntensityd(keys[:1], offsets=offset, prob=p)]


def _noise3d(keys: list[str], dims: int, std: float = 0.1, p: float = 0.15) -> list:
    from monai.transforms import RandGaussianNoised
    return [RandGaussianNoised(keys[:1], std=std, prob=p)]


def _gamma3d(keys: list[str], dims: int, range: Sequence[float] = (0.7, 1.5), p: float = 0.3) -> list:  # noqa: A002
    from monai.transforms import RandAdjustContrastd
    return [RandAdjustContrastd(keys[:1], gamma=tuple(range), prob=p)]


AUGMENT_3D_OPS: dict[str, Callable[..., list]] = {
    "flip": _flip3d, "rot90": _rot90_3d, "rotate": _rotate3d, "scale": _scale3d,
    "intensity_scale": _intensity_scale, "intensity_shift": _intensity_shift, "noise": _noise3d, "gamma": _gamma3d,
}


def _settings(name: str, value: Any) -> dict | None:
    """Normalise one spec entry to keyword arguments (``None`` = off)."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, (int, float)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"augment.{name}: a number is a probability in [0, 1], got {value}")
        return {"p": float(value)}
    if isinstance(value, Mapping):
        return dict(value)
    raise ValueError(f"augment.{name} must be a probability, a dict of parameters, true or null; got {value!r}")


def _call(name: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    accepted = [n for n in inspect.signature(fn).parameters if n not in ("keys", "dims")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"augment.{name} accepts parameters {accepted}, got unknown {unknown}")
    p = kwargs.get("p", 0.5)
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"augment.{name}.p must be a probability in [0, 1], got {p}")
    return fn(*args, **kwargs)


def _check_names(spec: Mapping[str, Any], ops: Mapping[str, Any], dims: str) -> None:
    if not isinstance(spec, Mapping):
        raise ValueError(f"augment must be a dict of operation -> settings, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(ops))
    if unknown:
        raise ValueError(f"unknown {dims} augmentation(s) {unknown}; known: {sorted(ops)}")


def _check_rot90(spec: Mapping[str, Any], patch_size: Sequence[int] | None, axes: Sequence[int]) -> None:
    """Quarter turns swap the rotated axes: only shape-preserving (equal sizes) so patches still batch together."""
    if _settings("rot90", spec.get("rot90")) is None or patch_size is None:
        return
    sizes = [patch_size[a] for a in axes]
    if len(set(sizes)) > 1:
        raise ValueError(f"augment.rot90 needs equal patch sizes along the rotated axes {list(axes)}, "
                         f"got patch_size={list(patch_size)}")


def augment_2d_ops(spec: Mapping[str, Any] | None, patch_size: Sequence[int] | None = None) -> list:
    """The albumentations transforms of a 2-D spec in their fixed order (geometric, then intensity).

    ``patch_size`` (H, W), when given, is checked against shape-changing operations (``rot90`` needs H == W).
    """
    if not spec:
        return []
    _check_names(spec, AUGMENT_2D_OPS, "2-D")
    _check_rot90(spec, patch_size, (0, 1))
    transforms = []
    for name, fn in AUGMENT_2D_OPS.items():
        kwargs = _settings(name, spec.get(name))
        if kwargs is not None:
            transforms.append(_call(name, fn, (), kwargs))
    return transforms


def build_augment_2d(spec: Mapping[str, Any] | None, extra_masks: Sequence[str] = (),
                     patch_size: Sequence[int] | None = None) -> Any | None:
    """An ``albumentations.Compose`` of `augment_2d_ops` for image + ``mask`` (+ ``extra_masks`` such as
    ``roi``), or None if the spec switches everything off."""
    transforms = augment_2d_ops(spec, patch_size)
    if not transforms:
        return None
    import albumentations as A
    return A.Compose(transforms, additional_targets={k: "mask" for k in extra_masks})


def build_augment_3d(spec: Mapping[str, Any] | None, keys: Sequence[str] = ("image", "label"),
                     spatial_dims: int = 3, patch_size: Sequence[int] | None = None) -> list:
    """MONAI dictionary transforms for ``keys`` (the first is the image; the others are label maps).

    ``patch_size``, when given, is checked against ``rot90`` (equal sizes along its ``axes``).
    """
    if not spec:
        return []
    _check_names(spec, AUGMENT_3D_OPS, "3-D")
    rot = _settings("rot90", spec.get("rot90"))
    _check_rot90(spec, patch_size, tuple((rot or {}).get("axes", (0, 1))))
    out: list = []
    for name, fn in AUGMENT_3D_OPS.items():
        kwargs = _settings(name, spec.get(name))
        if kwargs is not None:
            out.extend(_call(name, fn, (list(keys), spatial_dims), kwargs))
    return out
