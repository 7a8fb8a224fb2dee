"""Step-based learning-rate schedule: linear warmup then cosine decay (the paper's recipe)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_factor(
    step: int, *, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> float:
    """Multiplier of the base learning rate at optimizer step ``step``.

    Linear from ``1 / (warmup_steps + 1)`` to 1 over ``warmup_steps`` steps, then a half cosine
    from 1 down to ``min_lr_ratio`` at ``total_steps``; constant ``min_lr_ratio`` afterwards.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _WarmupCosine:
    """Picklable ``lr_lambda`` (LambdaLR stores it; a closure would break checkpoint pickling)."""

    def __init__(self, *, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, step: int) -> float:
        return warmup_cosine_factor(
            step,
            warmup_steps=self.warmup_steps,
            total_steps=self.total_steps,
            min_lr_ratio=self.min_lr_ratio,
        )


def warmup_cosine(
    optimizer: Optimizer, *, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """Build the LambdaLR; Hydra passes it ``_partial_`` and the module supplies ``optimizer``.

    Args:
        optimizer: the optimizer whose groups' ``lr`` is the peak learning rate.
        warmup_steps: number of linear-warmup optimizer steps.
        total_steps: step at which the cosine reaches ``min_lr_ratio`` (usually
            ``trainer.max_steps``).
        min_lr_ratio: final learning rate as a fraction of the peak.

    Raises:
        ValueError: If the numbers are inconsistent.
    """
    if warmup_steps < 0 or total_steps <= 0:
        raise ValueError(
            f"optim.scheduler: warmup_steps must be >= 0 and total_steps > 0, "
            f"got {warmup_steps} and {total_steps}"
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"optim.scheduler.min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    fn = _WarmupCosine(
        warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio
    )
    return LambdaLR(optimizer, lr_lambda=fn)
