"""Segmentation metrics shared by validation and `zoo eval`, so both report the same numbers.

Convention: per case and per class; a class absent from both prediction and ground truth in a case is NaN
(skipped), a class present in only one scores 0; means over cases ignore NaN.
"""
from __future__ import annotations

import torch

__all__ = ["confusion_per_class", "dice_iou"]


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
