"""`AttentionGate` module (Attention U-Net): gates a skip connection x with a (possibly coarser) gating signal g."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._nd import check_spatial_dims, conv_module
from .op import attention_gate

__all__ = ["AttentionGate"]


class AttentionGate(nn.Module):
    """x [B, x_channels, *s] gated by g [B, g_channels, *s'] -> (x * alpha, alpha), alpha [B, 1, *s].

    g may be coarser than x (the usual decoder case): it is then resampled to x's size (bilinear/trilinear,
    align_corners=False) before the fused gate. theta_x, phi_g and psi are 1x1 convs with bias."""

    def __init__(self, spatial_dims: int, x_channels: int, g_channels: int, inter_channels: int) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        for name, v in (("x_channels", x_channels), ("g_channels", g_channels), ("inter_channels", inter_channels)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.spatial_dims = spatial_dims
        self.theta_x = conv_module(spatial_dims, x_channels, inter_channels, 1)
        self.phi_g = conv_module(spatial_dims, g_channels, inter_channels, 1)
        self.psi = conv_module(spatial_dims, inter_channels, 1, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != self.spatial_dims + 2 or g.dim() != x.dim():
            raise ValueError(f"x and g must be [B, C, *spatial] with {self.spatial_dims} spatial dims, "
                             f"got {list(x.shape)} and {list(g.shape)}")
        if g.shape[2:] != x.shape[2:]:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            g = F.interpolate(g, size=x.shape[2:], mode=mode, align_corners=False)
        return attention_gate(x, g, self.theta_x.weight, self.theta_x.bias, self.phi_g.weight, self.phi_g.bias,
                              self.psi.weight, self.psi.bias)
