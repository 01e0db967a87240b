"""Neighborhood attention (NATTEN semantics): functional `na1d/na2d/na3d`, modules, and backends
(`reference` PyTorch, fused `triton` kernels registered as torch.library custom ops, `flex` FlexAttention)."""
from .functional import BACKENDS, na1d, na2d, na3d, neighborhood_attention
from .modules import NeighborhoodAttention1d, NeighborhoodAttention2d, NeighborhoodAttention3d

__all__ = [
    "na1d", "na2d", "na3d", "neighborhood_attention", "BACKENDS",
    "NeighborhoodAttention1d", "NeighborhoodAttention2d", "NeighborhoodAttention3d",
]
