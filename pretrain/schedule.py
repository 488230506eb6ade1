"""Learning rate: 0.3 at batch 2,560 scaled linearly with the batch (§5.1), warm-up, then cosine."""

from __future__ import annotations

from common.schedule import cosine_decay


def peak_lr(base_lr: float, batch_size: int, base_batch: int = 2560) -> float:
    """Linear scaling rule: ``base_lr * batch_size / base_batch``."""
    return base_lr * batch_size / base_batch


def lr_at(step: int, peak: float, total_steps: int, warmup_steps: int) -> float:
    """Learning rate of step ``step`` (0-based): linear warm-up to ``peak``, then half a cosine to 0."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    return cosine_decay(step, total_steps, warmup_steps, peak)
