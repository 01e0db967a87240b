"""Dimension-generic building blocks (conv, norm, activation, residual blocks) shared by every backbone."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = [
    "conv_nd", "conv_transpose_nd", "max_pool_nd", "norm_nd", "act_layer", "ConvNormAct", "ResidualBlock", "ConvStage",
    "ParallelSum", "check_spatial_input", "pad_to_multiple",
]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_INSTANCE = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_BATCH = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _check_dims(spatial_dims: int) -> None:
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")


def conv_nd(spatial_dims: int, *args, **kwargs) -> nn.Module:
    """`nn.Conv{1,2,3}d` chosen by `spatial_dims`."""
    _check_dims(spatial_dims)
    return _CONV[spatial_dims](*args, **kwargs)


def conv_transpose_nd(spatial_dims: int, *args, **kwargs) -> nn.Module:
    """`nn.ConvTranspose{1,2,3}d` chosen by `spatial_dims`."""
    _check_dims(spatial_dims)
    return _CONV_T[spatial_dims](*args, **kwargs)


def max_pool_nd(spatial_dims: int, kernel_size: int, stride: int | None = None, padding: int = 0) -> nn.Module:
    """`nn.MaxPool{1,2,3}d` chosen by `spatial_dims`."""
    _check_dims(spatial_dims)
    return _MAXPOOL[spatial_dims](kernel_size, stride, padding)


def norm_nd(norm: str | None, spatial_dims: int, channels: int) -> nn.Module:
    """Normalisation layer by name: 'instance' (affine, as nnU-Net), 'batch', 'group' (8 groups), 'layer' or None."""
    _check_dims(spatial_dims)
    if norm is None or norm == "none":
        return nn.Identity()
    if norm == "instance":
        return _INSTANCE[spatial_dims](channels, affine=True)
    if norm == "batch":
        return _BATCH[spatial_dims](channels)
    if norm == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if norm == "layer":  # channels-first layer norm over C only
        return nn.GroupNorm(1, channels)
    raise ValueError(f"norm must be one of 'instance', 'batch', 'group', 'layer', None; got {norm!r}")


def act_layer(act: str | None) -> nn.Module:
    """Activation by name: 'leakyrelu' (slope 0.01, nnU-Net), 'relu', 'gelu', 'silu' or None."""
    if act is None or act == "none":
        return nn.Identity()
    table = {
        "leakyrelu": lambda: nn.LeakyReLU(0.01, inplace=True),
        "relu": lambda: nn.ReLU(inplace=True),
        "gelu": nn.GELU,
        "silu": lambda: nn.SiLU(inplace=True),
    }
    if act not in table:
        raise ValueError(f"act must be one of {sorted(table)} or None; got {act!r}")
    return table[act]()


class ConvNormAct(nn.Sequential):
    """conv -> norm -> activation with 'same' padding (stride divides the size)."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
        norm: str | None = "instance", act: str | None = "leakyrelu", groups: int = 1, dilation: int = 1,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            conv_nd(spatial_dims, in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                    groups=groups, bias=norm in (None, "none")),
            norm_nd(norm, spatial_dims, out_channels),
            act_layer(act),
        )


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm layers with an identity (or 1x1 projection) shortcut, as nnU-Net's ResEnc."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1,
        norm: str | None = "instance", act: str | None = "leakyrelu",
    ) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(spatial_dims, in_channels, out_channels, 3, stride, norm, act)
        self.conv2 = ConvNormAct(spatial_dims, out_channels, out_channels, 3, 1, norm, None)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                conv_nd(spatial_dims, in_channels, out_channels, 1, stride, bias=False),
                norm_nd(norm, spatial_dims, out_channels),
            )
        else:
            self.shortcut = nn.Identity()
        self.act = act_layer(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ConvStage(nn.Sequential):
    """`num_blocks` plain or residual conv blocks; the first one applies `stride` (strided-conv downsampling)."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, num_blocks: int = 2, stride: int = 1,
        residual: bool = False, norm: str | None = "instance", act: str | None = "leakyrelu",
    ) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        blocks: list[nn.Module] = []
        if residual:
            for i in range(num_blocks):
                blocks.append(ResidualBlock(spatial_dims, in_channels if i == 0 else out_channels, out_channels,
                                            stride if i == 0 else 1, norm, act))
        else:
            for i in range(num_blocks):
                blocks.append(ConvNormAct(spatial_dims, in_channels if i == 0 else out_channels, out_channels, 3,
                                          stride if i == 0 else 1, norm, act))
        super().__init__(*blocks)


class ParallelSum(nn.ModuleList):
    """Branches applied to the same input, outputs summed (multi-kernel and strip-conv blocks)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self[0](x)
        for branch in self[1:]:
            out = out + branch(x)
        return out


def check_spatial_input(x: torch.Tensor, spatial_dims: int, in_channels: int, divisor: int | Sequence[int],
                        name: str = "input") -> None:
    """Raise a clear error unless x is `[B, in_channels, *spatial]` with every spatial size a multiple of divisor."""
    if x.ndim != spatial_dims + 2:
        raise ValueError(f"{name} must have {spatial_dims + 2} dims [B, C, {', '.join('DHW'[-spatial_dims:])}] "
                         f"for spatial_dims={spatial_dims}, got shape {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(f"{name} must have {in_channels} channels (dim 1), got {x.shape[1]} "
                         f"(shape {tuple(x.shape)})")
    divs = [divisor] * spatial_dims if isinstance(divisor, int) else list(divisor)
    sizes = list(x.shape[2:])
    if any(s % d for s, d in zip(sizes, divs)):
        nearest = [max(d, round(s / d) * d) for s, d in zip(sizes, divs)]
        raise ValueError(f"{name} spatial size {tuple(sizes)} must be a multiple of {tuple(divs)}; "
                         f"nearest valid size is {tuple(nearest)} (or build the model with pad_input=True)")


def pad_to_multiple(x: torch.Tensor, divisor: int | Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad the spatial dims of x up to multiples of divisor; returns the padded tensor and the crop back."""
    nd = x.ndim - 2
    divs = [divisor] * nd if isinstance(divisor, int) else list(divisor)
    pads: list[int] = []
    crop = [slice(None), slice(None)]
    for s, d in zip(x.shape[2:], divs):
        crop.append(slice(0, s))
    for s, d in reversed(list(zip(x.shape[2:], divs))):
        pads.extend([0, (-s) % d])
    if any(pads):
        x = nn.functional.pad(x, pads)
    return x, tuple(crop)
