"""`ClassificationModule`: the encoder of a registered segmenter trained as an image classifier (e.g. on
Imagenette), so that its weights can initialise that segmenter (`SegmentationModule(encoder_weights=...)`)."""
from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F

from zoo.encoders import create_classifier
from zoo.lightning.common import ModelRunnerMixin, merge_data_info

__all__ = ["ClassificationModule"]


class ClassificationModule(ModelRunnerMixin, L.LightningModule):
    """Train `create_classifier(model_name, num_classes, drop_rate, **model_kwargs)` on an `ImageFolderDataModule`.

    `model_name` is the segmenter whose encoder is trained (e.g. `lka_unet_small`: VAN-B0); `data_info` (linked
    from the data module by `zoo fit`) gives num_classes and in_channels. Cross-entropy with label smoothing;
    mixup/cutmix by timm's `Mixup` when `mixup_alpha` or `cutmix_alpha` > 0. Logs `train/loss`, `val/loss`,
    `val/top1`, `val/top5` (fractions in [0, 1]).
    """

    def __init__(
        self,
        model_name: str = "lka_unet_tiny",
        model_kwargs: dict[str, Any] | None = None,
        data_info: dict[str, Any] | None = None,
        lr: float = 2e-3,
        weight_decay: float = 0.05,
        warmup_epochs: float = 5.0,
        schedule: Literal["cosine", "poly", "constant"] = "cosine",
        poly_power: float = 0.9,
        label_smoothing: float = 0.1,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mixup_prob: float = 1.0,
        mixup_switch_prob: float = 0.5,
        drop_rate: float = 0.0,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha} and {cutmix_alpha}")
        info = dict(data_info or {})
        kwargs = merge_data_info(model_kwargs, info, ("in_channels",))
        kwargs.setdefault("in_channels", 3)
        if "num_classes" in kwargs:
            raise ValueError("model_kwargs.num_classes would set the segmenter's classes; the classifier's come from "
                             f"data_info (got model_kwargs.num_classes={kwargs['num_classes']})")
        self.num_classes = int(info.get("num_classes", 1000))
        self.model = create_classifier(model_name, self.num_classes, drop_rate, **kwargs)
        info.setdefault("num_classes", self.num_classes)
        info.setdefault("in_channels", kwargs["in_channels"])
        self.class_names = list(info.get("class_names") or [f"class{i}" for i in range(self.num_classes)])
        self.save_run_hparams(
            model_name=model_name, model_kwargs=kwargs, data_info=info, lr=lr, weight_decay=weight_decay,
            warmup_epochs=warmup_epochs, schedule=schedule, poly_power=poly_power, label_smoothing=label_smoothing,
            mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, mixup_prob=mixup_prob,
            mixup_switch_prob=mixup_switch_prob, drop_rate=drop_rate, channels_last=channels_last, compile=compile,
        )
        self.mixup = None
        if mixup_alpha > 0 or cutmix_alpha > 0:
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=mixup_prob,
                               switch_prob=mixup_switch_prob, label_smoothing=label_smoothing,
                               num_classes=self.num_classes)
        self.setup_runner(2, channels_last, compile)
        self._val_counts: torch.Tensor | None = None

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        image, label = batch["image"], batch["label"]
        if self.mixup is not None and image.shape[0] % 2 == 0:  # timm's Mixup pairs samples: even batches only
            image, target = self.mixup(image, label)  # soft targets, label smoothing included
            logits = self(image).float()
            loss = torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
        else:
            loss = F.cross_entropy(self(image).float(), label, label_smoothing=self.hparams["label_smoothing"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=image.shape[0])
        return loss

    # -- validation / test --------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        # correct in top-1, correct in top-5, images, summed loss
        self._val_counts = torch.zeros(4, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self(batch["image"]).float()
        label = batch["label"]
        top = logits.topk(min(5, self.num_classes), dim=1).indices
        hit = top == label[:, None]
        assert self._val_counts is not None
        loss = F.cross_entropy(logits, label, reduction="sum")
        for i, v in enumerate((hit[:, 0].sum(), hit.any(1).sum(), label.numel(), loss)):
            self._val_counts[i] += v

    def _summarize(self, prefix: str) -> dict[str, float]:
        assert self._val_counts is not None
        counts = self.sum_over_ranks(self._val_counts)
        n = max(float(counts[2]), 1.0)
        return {f"{prefix}/top1": float(counts[0]) / n, f"{prefix}/top5": float(counts[1]) / n,
                f"{prefix}/loss": float(counts[3]) / n}

    def on_validation_epoch_end(self) -> None:
        metrics = self._summarize("val")
        self.log("val/top1", metrics.pop("val/top1"), prog_bar=True)
        self.log_dict(metrics)

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self._summarize("test"))
