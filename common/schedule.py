"""The learning-rate tail both trainings share: after the warm-up, half a cosine from the base to 0.

Each stage keeps its own warm-up line, because the two ramps are different functions, not one
function with two start values: pre-training climbs ``peak * (step + 1) / warmup`` (from
``peak / warmup``, reaching the peak on the last warm-up step), fine-tuning climbs
``base * (0.1 + 0.9 * step / warmup)`` (from ``base / 10``, reaching the base on the first
cosine step). Folding them into one formula would change the rates they produce.
"""

from __future__ import annotations

import math


def cosine_decay(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Learning rate of step ``step`` (0-based, ``step >= warmup``): ``base_lr`` at ``warmup``,
    half a cosine down to 0 at ``total``, and 0 after it."""
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(1.0, progress)))
