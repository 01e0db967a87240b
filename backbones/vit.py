"""Vision Transformer for 2-D/3-D: patch-embedding conv, pre-norm blocks on `scaled_dot_product_attention`,
a learned position embedding resampled to the input grid; as an encoder, a classifier and UNETR."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from timm.layers import DropPath
from torch import nn
from torch.nn import functional as F

from backbones.base import EncoderClassifier, FeatureEncoder, SegmentationModel
from backbones.layers import ConvStage, conv_nd, conv_transpose_nd
from backbones.unet import UNetDecoder

__all__ = ["Attention", "TransformerBlock", "PositionEmbedding", "resample_pos_embeds", "TransformerStack", "ViTEncoder",
           "VisionTransformerClassifier", "UNETRSkips", "UNETR"]


def _as_tuple(v: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    t = (v,) * n if isinstance(v, int) else tuple(v)
    if len(t) != n:
        raise ValueError(f"{name} must be an int or {n} ints for spatial_dims={n}, got {v!r}")
    return t


class Attention(nn.Module):
    """Multi-head self-attention over tokens `[B, N, C]` through `F.scaled_dot_product_attention`."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)), with stochastic depth."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, dim),
                                 nn.Dropout(drop))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PositionEmbedding(nn.Module):
    """Learned position embedding stored as a `[1, C, *grid]` map and resampled (bi/trilinear) to the token grid."""

    def __init__(self, dim: int, grid_size: Sequence[int]) -> None:
        super().__init__()
        self.grid_size = tuple(grid_size)
        self.weight = nn.Parameter(torch.zeros(1, dim, *self.grid_size))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, grid: Sequence[int]) -> torch.Tensor:
        """The embedding as `[1, C, *grid]`."""
        if tuple(grid) == self.grid_size:
            return self.weight
        return _resample(self.weight, grid)


def _resample(weight: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[weight.ndim - 2]
    return F.interpolate(weight, size=tuple(grid), mode=mode, align_corners=False)


def resample_pos_embeds(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` (for `module`) with each `PositionEmbedding` weight from another grid resampled to the module's grid,
    so weights trained at one image size load into a model built for another."""
    out = dict(state)
    for name, m in module.named_modules():
        key = f"{name}.weight" if name else "weight"
        if isinstance(m, PositionEmbedding) and key in out:
            w = out[key]
            if w.ndim == m.weight.ndim and w.shape[:2] == m.weight.shape[:2] and tuple(w.shape[2:]) != m.grid_size:
                out[key] = _resample(w, m.grid_size)
    return out


class TransformerStack(nn.Module):
    """Position embedding + transformer blocks on a `[B, C, *grid]` map; returns the maps after the blocks in
    `out_indices` (1-based), the last one layer-normed."""

    def __init__(self, spatial_dims: int, dim: int, depth: int, num_heads: int, grid_size: Sequence[int],
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        self.out_indices = tuple(out_indices) if out_indices is not None else (depth,)
        if not self.out_indices or any(not 1 <= i <= depth for i in self.out_indices) or \
                list(self.out_indices) != sorted(set(self.out_indices)):
            raise ValueError(f"out_indices must be increasing block numbers in 1..{depth}, got {self.out_indices}")
        self.pos_embed = PositionEmbedding(dim, _as_tuple(grid_size, spatial_dims, "grid_size"))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        # Blocks after the last output would be unused (no gradient), so they are not built.
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate,
                                                     rates[i]) for i in range(self.out_indices[-1]))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b, c, *grid = x.shape
        x = self.pos_drop((x + self.pos_embed(grid).to(x.dtype)).flatten(2).transpose(1, 2))
        outs = []
        for i, blk in enumerate(self.blocks, start=1):
            x = blk(x)
            if i in self.out_indices:
                y = self.norm(x) if i == self.out_indices[-1] else x
                outs.append(y.transpose(1, 2).reshape(b, c, *grid))
        return outs



class ViTEncoder(FeatureEncoder):
    """ViT encoder: patch-embedding conv (stride = patch_size) + `TransformerStack`.

    `forward_features` returns the token maps `[B, embed_dim, *input/patch]` after the blocks in `out_indices`
    (default: the last block), all at stride `patch_size`; `img_size` only sets the stored position-embedding grid.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 3, img_size: int | Sequence[int] = 224,
                 patch_size: int = 16, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        img = _as_tuple(img_size, spatial_dims, "img_size")
        if any(s % patch_size for s in img):
            raise ValueError(f"img_size {img} must be a multiple of patch_size={patch_size}")
        self.spatial_dims, self.in_channels, self.patch_size = spatial_dims, in_channels, patch_size
        self.patch_embed = conv_nd(spatial_dims, in_channels, embed_dim, patch_size, patch_size)
        self.transformer = TransformerStack(spatial_dims, embed_dim, depth, num_heads, [s // patch_size for s in img],
                                            mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, drop_path_rate,
                                            out_indices)
        n = len(self.transformer.out_indices)
        self.feature_channels, self.feature_strides = [embed_dim] * n, [patch_size] * n

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.transformer(self.patch_embed(x))


class VisionTransformerClassifier(EncoderClassifier):
    """ViT classifier (global average pool of the final tokens, LayerNorm, linear head) for pretraining the
    encoder that UNETR uses."""

    def __init__(self, num_classes: int = 1000, drop_rate: float = 0.0, **encoder_kwargs) -> None:
        super().__init__(ViTEncoder(**encoder_kwargs), num_classes, drop_rate)


class UNETRSkips(nn.Module):
    """UNETR's skip pyramid: a conv block on the input (stride 1) and, from the i-th chosen hidden state,
    i transposed-conv+block upsamplings to stride patch/2^i; the deepest hidden state is kept at stride patch.
    """

    def __init__(self, spatial_dims: int, in_channels: int, embed_dim: int, patch_size: int, feature_size: int = 16,
                 norm: str | None = "instance", act: str | None = "leakyrelu") -> None:
        super().__init__()
        levels = int(round(math.log2(patch_size)))
        if patch_size < 2 or 2 ** levels != patch_size:
            raise ValueError(f"UNETR needs patch_size a power of two >= 2, got {patch_size}")
        self.levels = levels
        self.stem = ConvStage(spatial_dims, in_channels, feature_size, 2, 1, False, norm, act)
        self.projs = nn.ModuleList()
        for i in range(1, levels):
            out_c, layers, prev = feature_size * 2 ** i, [], embed_dim
            for _ in range(levels - i):
                layers += [conv_transpose_nd(spatial_dims, prev, out_c, 2, 2, bias=False),
                           ConvStage(spatial_dims, out_c, out_c, 1, 1, True, norm, act)]
                prev = out_c
            self.projs.append(nn.Sequential(*layers))
        self.feature_channels = [feature_size * 2 ** i for i in range(levels)] + [embed_dim]
        self.feature_strides = [2 ** i for i in range(levels)] + [patch_size]

    def forward(self, x: torch.Tensor, hidden: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(hidden) != self.levels:
            raise ValueError(f"UNETRSkips needs {self.levels} hidden states, got {len(hidden)}")
        return [self.stem(x), *(proj(h) for proj, h in zip(self.projs, hidden[:-1])), hidden[-1]]


class UNETR(SegmentationModel):
    """UNETR (Hatamizadeh et al. 2022) in 2-D or 3-D: ViT encoder, `UNETRSkips`, the shared U-Net decoder with
    residual blocks. Any input whose size is a multiple of `patch_size` (the position embedding is resampled).
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, num_classes: int = 2,
                 img_size: int | Sequence[int] = 96, patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, feature_size: int = 16, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, norm: str | None = "instance",
                 act: str | None = "leakyrelu", deep_supervision: bool = False, pad_input: bool = False) -> None:
        super().__init__(spatial_dims, in_channels, num_classes, patch_size, pad_input)
        levels = int(round(math.log2(max(patch_size, 1))))
        if depth < levels:
            raise ValueError(f"UNETR with patch_size={patch_size} needs depth >= {levels}, got {depth}")
        out_indices = [depth * (i + 1) // levels for i in range(levels)]
        self.encoder = ViTEncoder(spatial_dims, in_channels, img_size, patch_size, embed_dim, depth, num_heads,
                                  mlp_ratio, True, drop_rate, attn_drop_rate, drop_path_rate, out_indices)
        self.neck = UNETRSkips(spatial_dims, in_channels, embed_dim, patch_size, feature_size, norm, act)
        self.decoder = UNetDecoder(spatial_dims, self.neck.feature_channels, self.neck.feature_strides, num_classes,
                                   self.neck.feature_channels[:-1], 1, norm, act, deep_supervision, residual=True)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(self.neck(x, self.encoder.forward_features(x)))
