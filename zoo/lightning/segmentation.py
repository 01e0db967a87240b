"""`SegmentationModule`: any registered model trained with Dice + cross-entropy, validated with Dice and IoU."""
from __future__ import annotations

from typing import Any, Literal, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from zoo.encoders import load_encoder_file
from zoo.lightning.common import ModelRunnerMixin, merge_data_info
from zoo.metrics import confusion_per_class, dice_iou
from zoo.registry import create_model

__all__ = ["SegmentationModule"]


class SegmentationModule(ModelRunnerMixin, L.LightningModule):
    """Train a `zoo` model on a `SegDataModule`.

    `data_info` (num_classes, in_channels, spatial_dims, patch_size, class_names, normalization) is linked
    from the data module by `zoo fit`; it is stored in the checkpoint so `zoo predict` can rebuild the model
    and its input pipeline from the checkpoint alone. Validation reports per-case Dice/IoU averaged over
    cases (a class empty in both prediction and ground truth is skipped), the same numbers as `zoo eval`.
    `encoder_weights`: a `ClassificationModule` checkpoint or a classifier state dict (safetensors or torch file)
    whose `encoder.*` weights initialise the model's encoder (e.g. Imagenette pretraining).
    """

    def __init__(
        self,
        model_name: str = "unet_tiny",
        model_kwargs: dict[str, Any] | None = None,
        data_info: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 1.0,
        schedule: Literal["cosine", "poly", "constant"] = "cosine",
        poly_power: float = 0.9,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        channels_last: bool = False,
        compile: bool = False,
        sw_overlap: float = 0.25,
        encoder_weights: str | None = None,
    ) -> None:
        super().__init__()
        info = dict(data_info or {})
        kwargs = merge_data_info(model_kwargs, info, ("num_classes", "in_channels", "spatial_dims"))
        self.model = create_model(model_name, **kwargs)
        if encoder_weights is not None:
            load_encoder_file(self.model, encoder_weights)
        self.num_classes = int(getattr(self.model, "num_classes", kwargs.get("num_classes", 2)))
        self.spatial_dims = int(getattr(self.model, "spatial_dims", kwargs.get("spatial_dims", 2)))
        info.setdefault("num_classes", self.num_classes)
        info.setdefault("spatial_dims", self.spatial_dims)
        self.class_names = list(info.get("class_names") or [f"class{i}" for i in range(self.num_classes)])
        self.save_run_hparams(
            model_name=model_name, model_kwargs=kwargs, data_info=info, lr=lr, weight_decay=weight_decay,
            warmup_epochs=warmup_epochs, schedule=schedule, poly_power=poly_power, dice_weight=dice_weight,
            ce_weight=ce_weight, channels_last=channels_last, compile=compile, sw_overlap=sw_overlap,
            encoder_weights=encoder_weights,
        )
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False,
                                  lambda_dice=dice_weight, lambda_ce=ce_weight)
        self.setup_runner(self.spatial_dims, channels_last, compile)
        self._val_sums: torch.Tensor | None = None

    # -- loss -------------------------------------------------------------------------------------------
    def compute_loss(self, out: torch.Tensor | Sequence[torch.Tensor], label: torch.Tensor) -> torch.Tensor:
        """Dice+CE; for deep supervision, a weighted sum over scales (weights 1/2^i, normalised; targets resampled
        by nearest neighbour), as nnU-Net does."""
        target = label.unsqueeze(1)
        if isinstance(out, torch.Tensor):
            return self.loss_fn(out.float(), target)
        weights = torch.tensor([0.5**i for i in range(len(out))])
        weights = weights / weights.sum()
        total = out[0].new_zeros((), dtype=torch.float32)
        for w, o in zip(weights.tolist(), out):
            t = target if o.shape[2:] == target.shape[2:] else F.interpolate(target.float(), o.shape[2:],
                                                                              mode="nearest").long()
            total = total + w * self.loss_fn(o.float(), t)
        return total

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(self(batch["image"]), batch["label"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch["image"].shape[0])
        return loss

    # -- validation -------------------------------------------------------------------------------------
    @property
    def divisor(self) -> int | Sequence[int]:
        """Input-size multiple of the wrapped model (read by `zoo.inference.predict_logits`)."""
        return getattr(self.model, "divisor", 1)

    @property
    def pad_input(self) -> bool:
        """Whether the wrapped model pads inputs to its divisor itself (read by `zoo.inference.predict_logits`)."""
        return bool(getattr(self.model, "pad_input", False))

    def predict_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits for whole cases, the same path as `zoo predict`: sliding-window (gaussian) beyond the patch."""
        from zoo.inference import predict_logits

        return predict_logits(self, image, self.hparams["data_info"].get("patch_size"), self.hparams["sw_overlap"], 4)

    def on_validation_epoch_start(self) -> None:
        # per class: sum of per-case Dice, sum of per-case IoU, number of cases scored, then tp, fp, fn summed over
        # cases (the pooled Dice that `zoo eval` reports as dice_pooled)
        self._val_sums = torch.zeros(6, self.num_classes, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._score_batch(batch, "val")

    def _score_batch(self, batch: dict[str, Any], stage: str) -> None:
        """Log ``<stage>/loss`` on whole cases and add each case's per-class Dice/IoU to the epoch sums."""
        logits = self.predict_logits(batch["image"])
        self.log(f"{stage}/loss", self.compute_loss(logits, batch["label"]), batch_size=batch["image"].shape[0],
                 sync_dist=True)
        pred = logits.argmax(1)
        roi = batch.get("roi")
        for i in range(pred.shape[0]):
            conf = confusion_per_class(pred[i], batch["label"][i], self.num_classes,
                                       None if roi is None else roi[i])
            dice, iou = dice_iou(conf)
            valid = ~torch.isnan(dice)
            assert self._val_sums is not None
            self._val_sums[0] += torch.nan_to_num(dice)
            self._val_sums[1] += torch.nan_to_num(iou)
            self._val_sums[2] += valid
            self._val_sums[3:] += conf.T

    def on_validation_epoch_end(self) -> None:
        assert self._val_sums is not None
        metrics = self.summarize_validation(self.sum_over_ranks(self._val_sums))
        dice = metrics.pop("val/dice")
        self.log("val/dice", dice, prog_bar=True)
        self.log_dict(metrics)

    def summarize_validation(self, sums: torch.Tensor) -> dict[str, float]:
        """Mean per-case Dice/IoU per class and their foreground means (classes never scored are left out), and
        the pooled foreground Dice of the summed counts."""
        count = sums[2]
        out: dict[str, float] = {}
        fg_dice, fg_iou = [], []
        for c in range(self.num_classes):
            if count[c] == 0:
                continue
            d, j = float(sums[0, c] / count[c]), float(sums[1, c] / count[c])
            name = self.class_names[c]
            out[f"val/dice_{name}"] = d
            out[f"val/iou_{name}"] = j
            if c > 0:
                fg_dice.append(d)
                fg_iou.append(j)
        out["val/dice"] = sum(fg_dice) / len(fg_dice) if fg_dice else float("nan")
        out["val/miou"] = sum(fg_iou) / len(fg_iou) if fg_iou else float("nan")
        pooled = dice_iou(sums[3:].T)[0][1:]
        pooled = pooled[~torch.isnan(pooled)]
        out["val/dice_pooled"] = float(pooled.mean()) if pooled.numel() else float("nan")
        return out

    # -- test / predict -----------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._score_batch(batch, "test")

    def on_test_epoch_end(self) -> None:
        assert self._val_sums is not None
        metrics = self.summarize_validation(self.sum_over_ranks(self._val_sums))
        self.log_dict({k.replace("val/", "test/"): v for k, v in metrics.items()})

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return {"name": batch.get("name"), "label": self.predict_logits(batch["image"]).argmax(1)}
