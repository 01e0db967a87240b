"""Learning-rate schedules: linear warm-up, then cosine or polynomial decay, stepped per optimiser step."""
from __future__ import annotations

import math
from typing import Callable

__all__ = ["warmup_decay"]


def warmup_decay(total_steps: int, warmup_steps: int, kind: str = "cosine", power: float = 0.9,
                 min_factor: float = 0.0) -> Callable[[int], float]:
    """Multiplier for `LambdaLR`: ramps 0->1 over `warmup_steps`, then decays to `min_factor` at `total_steps`."""
    if kind not in ("cosine", "poly", "constant"):
        raise ValueError(f"schedule must be 'cosine', 'poly' or 'constant', got {kind!r}")
    total_steps = max(1, int(total_steps))
    warmup_steps = max(0, min(int(warmup_steps), total_steps - 1))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if kind == "constant":
            return 1.0
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        decay = 0.5 * (1 + math.cos(math.pi * t)) if kind == "cosine" else (1 - t) ** power
        return min_factor + (1 - min_factor) * decay

    return factor
