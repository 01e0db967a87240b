"""Private host-side helpers shared by the Triton kernel modules (kept apart from `_nd` so the references never
import Triton)."""
from __future__ import annotations

import torch
import triton.language as tl

__all__ = ["TL_DTYPE"]

TL_DTYPE: dict[torch.dtype, tl.dtype] = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16,
                                         torch.float32: tl.float32}
"""`torch` dtype -> the `tl` dtype passed as a kernel's `DT` constexpr; keys are `ops._nd.TRITON_DTYPES`."""
