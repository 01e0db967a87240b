"""What every segzoo LightningModule shares: model kwargs checked against the data module's facts, the
`channels_last`/`torch.compile` forward, and AdamW with warm-up + cosine/poly decay stepped per optimiser step."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from zoo.lightning.schedules import warmup_decay

__all__ = ["merge_data_info", "ModelRunnerMixin"]


def merge_data_info(model_kwargs: Mapping[str, Any] | None, data_info: Mapping[str, Any],
                    keys: Sequence[str]) -> dict[str, Any]:
    """`model_kwargs` with `keys` taken from `data_info`; a contradicting explicit value raises ValueError."""
    kwargs = dict(model_kwargs or {})
    for key in keys:
        if key in data_info:
            if key in kwargs and kwargs[key] != data_info[key]:
                raise ValueError(f"model_kwargs.{key}={kwargs[key]} contradicts the data module's {key}="
                                 f"{data_info[key]}")
            kwargs[key] = data_info[key]
    return kwargs


class ModelRunnerMixin:
    """Mixed into a LightningModule holding `self.model`; its hparams hold `lr`, `weight_decay`, `warmup_epochs`,
    `schedule` and `poly_power`. Call `setup_runner` once `self.model` is built (and its weights loaded)."""

    model: nn.Module
    hparams: Any
    trainer: Any

    def save_run_hparams(self, **hparams: Any) -> None:
        """`save_hyperparameters` plus Lightning's `_class_path` key: with it `zoo fit|validate ... --ckpt_path`
        re-parses the checkpoint's hyper-parameters as this class (the CLI's model base is `LightningModule`)."""
        cls = type(self)
        self.save_hyperparameters(  # type: ignore[attr-defined]
            dict(hparams, _class_path=f"{cls.__module__}.{cls.__qualname__}"))

    def setup_runner(self, spatial_dims: int, channels_last: bool, compile: bool) -> None:
        """Convert the model to channels-last memory format and/or compile it (both optional)."""
        self._memory_format = ({2: torch.channels_last, 3: torch.channels_last_3d}.get(spatial_dims)
                               if channels_last else None)
        if self._memory_format is not None:
            self.model = self.model.to(memory_format=self._memory_format)
        # kept out of the module tree so the compiled wrapper does not duplicate the weights in the state dict
        self.__dict__["_compiled"] = torch.compile(self.model) if compile else None

    def sum_over_ranks(self, t: torch.Tensor) -> torch.Tensor:
        """`t` added up over all processes (under DDP each scores its own cases); `t` itself on one process."""
        if self.trainer.world_size > 1:
            return self.trainer.strategy.reduce(t, reduce_op="sum")
        return t

    def forward(self, x: torch.Tensor) -> Any:
        if self._memory_format is not None:
            x = x.contiguous(memory_format=self._memory_format)
        return self._compiled(x) if self._compiled is not None else self.model(x)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (no weight decay on norms and biases) with the per-step warm-up + decay schedule."""
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.hparams["lr"])
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = int(round(self.hparams["warmup_epochs"] * total / epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, warmup_decay(total, warmup, self.hparams["schedule"], self.hparams["poly_power"]))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
