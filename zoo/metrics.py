"""Segmentation metrics shared by validation and `zoo eval`, so both report the same numbers.

Convention: per case and per class; a class absent from both prediction and ground truth in a case is NaN
(skipped), a class present in only one scores Dice/IoU 0; means over cases ignore NaN. Sensitivity is NaN where
the ground truth lacks the class, precision where the prediction lacks it, HD95 unless both have it.
ROC AUC (one class vs the rest, from probabilities) is NaN where a case has no positive or no negative pixel.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

__all__ = ["confusion_per_class", "dice_iou", "sensitivity_precision", "hd95_per_class", "case_metrics",
           "aggregate_cases", "METRIC_NAMES", "RocCounts", "roc_counts", "merge_roc_counts", "roc_auc",
           "auc_per_class", "accuracy_counts", "nan_mean_std"]

METRIC_NAMES = ("dice", "iou", "hd95", "sensitivity", "precision")


def confusion_per_class(pred: torch.Tensor, gt: torch.Tensor, num_classes: int,
                        roi: torch.Tensor | None = None) -> torch.Tensor:
    """Counts ``[num_classes, 3]`` (tp, fp, fn) for one case; ``pred``/``gt`` are integer label maps of one shape."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} does not match ground truth shape {tuple(gt.shape)}")
    pred, gt = pred.reshape(-1).long(), gt.reshape(-1).long()
    if roi is not None:
        keep = roi.reshape(-1).bool()
        pred, gt = pred[keep], gt[keep]
    idx = gt * num_classes + pred
    cm = torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    tp = cm.diagonal()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    return torch.stack([tp, fp, fn], dim=1)


def dice_iou(conf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice and IoU per class from ``[..., num_classes, 3]`` counts; NaN where the class is empty on both sides."""
    tp, fp, fn = conf.double().unbind(-1)
    denom = 2 * tp + fp + fn
    nan = torch.full_like(tp, float("nan"))
    dice = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), nan)
    iou = torch.where(denom > 0, tp / (tp + fp + fn).clamp_min(1), nan)
    return dice, iou


def sensitivity_precision(conf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sensitivity tp/(tp+fn) and precision tp/(tp+fp) per class; NaN where the denominator is 0."""
    tp, fp, fn = conf.double().unbind(-1)
    nan = torch.full_like(tp, float("nan"))
    sens = torch.where(tp + fn > 0, tp / (tp + fn).clamp_min(1), nan)
    prec = torch.where(tp + fp > 0, tp / (tp + fp).clamp_min(1), nan)
    return sens, prec


def _cpu_tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    return a.detach().cpu() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a binary mask (the mask minus its erosion; voxels on the array border count)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _hd95_binary(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], percentile: float) -> float:
    """Symmetric percentile Hausdorff distance between the surfaces of two non-empty binary masks."""
    # Crop to the union's bounding box (+1 margin): every surface voxel lies inside, so distances stay exact.
    coords = np.argwhere(pred | gt)
    lo = np.maximum(coords.min(0) - 1, 0)
    hi = coords.max(0) + 2
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sp, sg = _surface(pred[box]), _surface(gt[box])
    d_to_gt = ndimage.distance_transform_edt(~sg, sampling=spacing)
    d_to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return float(max(np.percentile(d_to_gt[sp], percentile), np.percentile(d_to_pred[sg], percentile)))


def hd95_per_class(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, num_classes: int,
                   spacing: Sequence[float] | None = None, percentile: float = 95.0,
                   include_background: bool = True) -> np.ndarray:
    """HD95 per class for one case of integer label maps (MONAI's definition: max of the two directed
    95th-percentile surface distances), in units of ``spacing`` (default: voxels); NaN unless both have the class.
    Class 0 is left NaN unless ``include_background``: its surface spans the whole volume, which is slow."""
    pred, gt = _cpu_tensor(pred).numpy(), _cpu_tensor(gt).numpy()
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match ground truth shape {gt.shape}")
    spacing = [1.0] * pred.ndim if spacing is None else [float(s) for s in spacing]
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing must have {pred.ndim} entries (one per spatial dim), got {spacing}")
    out = np.full(num_classes, np.nan)
    for c in range(0 if include_background else 1, num_classes):
        p, g = pred == c, gt == c
        if p.any() and g.any():
            out[c] = _hd95_binary(p, g, spacing, percentile)
    return out


def case_metrics(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, num_classes: int,
                 spacing: Sequence[float] | None = None, hd95: bool = True,
                 roi: np.ndarray | torch.Tensor | None = None,
                 include_background: bool = True) -> dict[str, np.ndarray]:
    """Every metric of ``METRIC_NAMES`` for one case: ``{name: float64 [num_classes]}`` (NaN = undefined), plus
    ``confusion``: the ``[num_classes, 3]`` tp/fp/fn counts, which sum over cases into pooled scores (`dice_iou`).

    ``roi`` (bool, same shape) restricts scoring to its pixels, e.g. a retinal field of view; without
    ``include_background`` the background's HD95 is not computed (NaN).
    """
    pred_t, gt_t = _cpu_tensor(pred), _cpu_tensor(gt)
    roi_t = None if roi is None else _cpu_tensor(roi).bool()
    conf = confusion_per_class(pred_t, gt_t, num_classes, roi_t)
    dice, iou = dice_iou(conf)
    sens, prec = sensitivity_precision(conf)
    if roi_t is not None:  # outside the ROI neither side has any class, so no surface lies there
        pred_t, gt_t = pred_t.masked_fill(~roi_t, -1), gt_t.masked_fill(~roi_t, -1)
    hd = (hd95_per_class(pred_t, gt_t, num_classes, spacing, include_background=include_background) if hd95
          else np.full(num_classes, np.nan))
    return dict(dice=dice.numpy(), iou=iou.numpy(), hd95=hd, sensitivity=sens.numpy(), precision=prec.numpy(),
                confusion=conf.numpy())


RocCounts = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(values, positives, negatives)``: distinct scores in ascending order and how many positive / negative pixels
hold each. All that ROC AUC depends on, and summable over cases (`merge_roc_counts`) for a pooled AUC."""


def roc_counts(scores: np.ndarray, positive: np.ndarray) -> RocCounts:
    """`RocCounts` of one set of pixels: ``scores`` (any real values, finite) and a same-shape bool ``positive``."""
    scores, positive = np.asarray(scores).reshape(-1), np.asarray(positive, dtype=bool).reshape(-1)
    if scores.shape != positive.shape:
        raise ValueError(f"scores ({scores.size} values) and positive ({positive.size} values) must match in size")
    values, inverse = np.unique(scores, return_inverse=True)
    total = np.bincount(inverse, minlength=values.size)
    pos = np.bincount(inverse[positive], minlength=values.size)
    return values, pos, total - pos


def merge_roc_counts(parts: Sequence[RocCounts]) -> RocCounts:
    """Sum several `RocCounts` (e.g. one per case) into one, as if their pixels had been pooled."""
    if not parts:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    values, inverse = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
    pos = np.zeros(values.size, np.int64)
    neg = np.zeros(values.size, np.int64)
    np.add.at(pos, inverse, np.concatenate([p[1] for p in parts]).astype(np.int64))
    np.add.at(neg, inverse, np.concatenate([p[2] for p in parts]).astype(np.int64))
    return values, pos, neg


def roc_auc(counts: RocCounts) -> float:
    """Exact ROC AUC (Mann-Whitney U / (P N)): the probability that a random positive scores above a random
    negative, ties counting one half. NaN without positives or without negatives."""
    _, pos, neg = counts
    pos, neg = np.asarray(pos, np.int64), np.asarray(neg, np.int64)
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    neg_below = np.cumsum(neg) - neg
    twice_u = int(np.sum(pos * (2 * neg_below + neg)))  # integers: exact up to ~2e9 pixels per side
    return twice_u / (2 * n_pos * n_neg)


def auc_per_class(probs: np.ndarray, gt: np.ndarray, num_classes: int, roi: np.ndarray | None = None,
                  include_background: bool = True) -> tuple[np.ndarray, list[RocCounts | None]]:
    """One-vs-rest ROC AUC per class for one case: ``probs`` ``[num_classes, *spatial]`` scores, ``gt`` labels.

    Returns ``(auc [num_classes], counts)``; only ``roi`` pixels count. Background is NaN (counts None) unless
    ``include_background``; a class without positives or without negatives in the case is NaN.
    """
    probs, gt = np.asarray(probs), np.asarray(gt)
    if probs.shape != (num_classes, *gt.shape):
        raise ValueError(f"probs must be [num_classes={num_classes}, *{list(gt.shape)}] to match the ground truth, "
                         f"got shape {list(probs.shape)}")
    keep = np.ones(gt.shape, bool) if roi is None else np.asarray(roi, dtype=bool)
    labels = gt[keep]
    out = np.full(num_classes, np.nan)
    counts: list[RocCounts | None] = [None] * num_classes
    for c in range(0 if include_background else 1, num_classes):
        counts[c] = roc_counts(probs[c][keep], labels == c)
        out[c] = roc_auc(counts[c])
    return out, counts


def accuracy_counts(pred: np.ndarray, gt: np.ndarray, roi: np.ndarray | None = None) -> tuple[int, int]:
    """``(correct, total)`` pixels of a label map (all classes, background included), inside ``roi`` if given."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match ground truth shape {gt.shape}")
    same = pred == gt
    if roi is not None:
        same = same[np.asarray(roi, dtype=bool)]
    return int(same.sum()), int(same.size)


def nan_mean_std(values: np.ndarray) -> tuple[float, float, int]:
    """Mean, population std and count of the finite entries of a 1-D array (NaN, NaN, 0 when none)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std()), int(v.size)


def aggregate_cases(per_case: Mapping[str, np.ndarray | torch.Tensor], include_background: bool = False) -> dict:
    """Summarise ``{metric: [num_cases, num_classes]}`` arrays (NaN = undefined, skipped everywhere).

    Returns ``per_class[metric]`` = mean/std/n over cases per class, and ``mean[metric]`` = mean over the scored
    classes (foreground unless ``include_background``) of the per-class means -- the headline number -- with
    ``std[metric]`` = std over cases of each case's mean over its scored classes. Stds are population (ddof=0).
    """
    per_class: dict[str, dict[str, np.ndarray]] = {}
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    first = 0 if include_background else 1
    for name, arr in per_case.items():
        a = arr.double().cpu().numpy() if isinstance(arr, torch.Tensor) else np.asarray(arr, dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(f"per_case[{name!r}] must be [num_cases, num_classes], got shape {a.shape}")
        stats = np.array([nan_mean_std(a[:, c]) for c in range(a.shape[1])]).reshape(a.shape[1], 3)
        per_class[name] = dict(mean=stats[:, 0], std=stats[:, 1], n=stats[:, 2].astype(int))
        mean[name] = nan_mean_std(stats[first:, 0])[0]
        scored = a[:, first:]
        case_means = np.array([nan_mean_std(row)[0] for row in scored]) if len(scored) else np.zeros(0)
        std[name] = nan_mean_std(case_means)[1]
    return dict(per_class=per_class, mean=mean, std=std)
