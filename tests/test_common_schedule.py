"""The shared cosine tail (``common/schedule.py``) gives both trainings exactly the rates of the
formulas they used before it was shared (issue 14)."""

from __future__ import annotations

import math

import pytest

from finetune.train import lr_at as finetune_lr
from pretrain.trainer import lr_at as pretrain_lr


def old_pretrain(step: int, peak: float, total_steps: int, warmup_steps: int) -> float:
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * peak * (1 + math.cos(math.pi * min(1.0, progress)))


def old_finetune(step: int, total: int, warmup: int, base_lr: float) -> float:
    if step < warmup:
        return base_lr * (0.1 + 0.9 * step / warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


@pytest.mark.parametrize("peak", [0.03, 0.3 * 512 / 2560, 3.5e-4, 1.0])
@pytest.mark.parametrize(("total", "warmup"), [(100, 10), (1000, 0), (7, 7), (5, 9), (12345, 617)])
def test_pretrain_rates_are_bit_identical(peak, total, warmup):
    for step in range(total + 20):  # the old formula held 0 after the end; so does the new one
        assert pretrain_lr(step, peak, total, warmup) == old_pretrain(step, peak, total, warmup)


@pytest.mark.parametrize("base", [3.5e-4, 0.01, 0.00035 * 64 / 64, 1.0])
@pytest.mark.parametrize(("total", "warmup"), [(100, 10), (1000, 0), (7, 7), (12345, 617)])
def test_finetune_rates_are_bit_identical(base, total, warmup):
    for step in range(total):  # training stops at step total - 1 (train_epoch breaks there)
        assert finetune_lr(step, total, warmup, base) == old_finetune(step, total, warmup, base)
