"""Large-kernel attention modules (VAN): `LargeKernelAttention` and the VAN block built around it, channels-first."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .._nd import check_spatial_dims, conv_module
from .op import lka

__all__ = ["LargeKernelAttention", "VANMlp", "VANBlock"]

_BATCHNORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class LargeKernelAttention(nn.Module):
    """x [B, dim, *s] -> x * pw(dw_dilated(dw(x))): depthwise k0, depthwise k1 with `dilation`, 1x1 (VAN's LKA)."""

    def __init__(self, dim: int, spatial_dims: int = 2, kernel_sizes: Sequence[int] = (5, 7), dilation: int = 3
                 ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if len(kernel_sizes) != 2 or any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be two odd ints, got {tuple(kernel_sizes)}")
        k0, k1 = kernel_sizes
        self.spatial_dims, self.dilation = spatial_dims, dilation
        self.conv0 = conv_module(spatial_dims, dim, dim, k0, padding=k0 // 2, groups=dim)
        self.conv_spatial = conv_module(spatial_dims, dim, dim, k1, padding=dilation * (k1 // 2), groups=dim,
                                        dilation=dilation)
        self.conv1 = conv_module(spatial_dims, dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lka(x, self.conv0.weight, self.conv0.bias, self.conv_spatial.weight, self.conv_spatial.bias,
                   self.conv1.weight, self.conv1.bias, self.dilation)


class VANMlp(nn.Module):
    """1x1 -> depthwise 3x3 -> GELU -> 1x1 (VAN's MLP, channels-first)."""

    def __init__(self, dim: int, hidden: int, spatial_dims: int = 2, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = conv_module(spatial_dims, dim, hidden, 1)
        self.dwconv = conv_module(spatial_dims, hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = conv_module(spatial_dims, hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.dwconv(self.fc1(x))))))


class VANBlock(nn.Module):
    """VAN block: x + ls1 * (1x1 -> GELU -> LKA -> 1x1 + shortcut)(BN(x)), then x + ls2 * MLP(BN(x)).

    Channels-first [B, dim, *s]; `drop_path` is per-sample stochastic depth on both residual branches."""

    def __init__(self, dim: int, spatial_dims: int = 2, mlp_ratio: float = 4.0, kernel_sizes: Sequence[int] = (5, 7),
                 dilation: int = 3, layer_scale_init: float = 1e-2, drop: float = 0.0, drop_path: float = 0.0
                 ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        self.norm1 = _BATCHNORM[spatial_dims](dim)
        self.proj_1 = conv_module(spatial_dims, dim, dim, 1)
        self.act = nn.GELU()
        self.lka = LargeKernelAttention(dim, spatial_dims, kernel_sizes, dilation)
        self.proj_2 = conv_module(spatial_dims, dim, dim, 1)
        self.norm2 = _BATCHNORM[spatial_dims](dim)
        self.mlp = VANMlp(dim, int(dim * mlp_ratio), spatial_dims, drop)
        shape = (dim,) + (1,) * spatial_dims
        self.layer_scale_1 = nn.Parameter(torch.full(shape, layer_scale_init))
        self.layer_scale_2 = nn.Parameter(torch.full(shape, layer_scale_init))
        self.drop_path = drop_path

    def _drop_path(self, y: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path == 0.0:
            return y
        keep = 1.0 - self.drop_path
        mask = y.new_empty((y.shape[0],) + (1,) * (y.dim() - 1)).bernoulli_(keep)
        return y * mask / keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        h = self.proj_2(self.lka(self.act(self.proj_1(h)))) + h
        x = x + self._drop_path(self.layer_scale_1 * h)
        return x + self._drop_path(self.layer_scale_2 * self.mlp(self.norm2(x)))
