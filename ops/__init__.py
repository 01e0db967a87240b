"""Attention ops: functional forms and modules, each with a pure-PyTorch reference and fused Triton kernels.

ops knows nothing of models: each op package holds its reference (`reference.py`), Triton kernels
(`kernels.py` / `triton_kernels.py`), torch.library registration and `nn.Module` wrappers.
"""
from ops.axial import AxialAttention, axial_attention, axial_rel_attention
from ops.gate import AttentionGate, attention_gate
from ops.lka import LargeKernelAttention, VANBlock, VANMlp, lka
from ops.na import (NeighborhoodAttention1d, NeighborhoodAttention2d, NeighborhoodAttention3d, na1d, na2d, na3d,
                    neighborhood_attention)

__all__ = [
    "na1d", "na2d", "na3d", "neighborhood_attention",
    "NeighborhoodAttention1d", "NeighborhoodAttention2d", "NeighborhoodAttention3d",
    "lka", "LargeKernelAttention", "VANBlock", "VANMlp",
    "attention_gate", "AttentionGate",
    "axial_attention", "axial_rel_attention", "AxialAttention",
]
