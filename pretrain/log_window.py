"""The logging window of the training loop: pending device losses -> metrics rows, one host sync each.

The loop keeps ``(step, lr, loss, acc)`` of each step on the device and turns them into rows every
``log_every`` steps, with the throughput and data-wait share of the window since the last flush.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist

from pretrain.logs import MetricsLog

Pending = list[tuple[int, float, torch.Tensor, torch.Tensor]]  # (step, lr, loss, acc) per step


def new_window() -> dict[str, float]:
    """A window starting now: ``start`` (of this window), ``wait`` (data wait in it), ``t0`` (of the run)."""
    t0 = time.perf_counter()
    return {"start": t0, "wait": 0.0, "t0": t0}


def flush(
    pending: Pending,
    metrics: MetricsLog | None,
    window: dict[str, Any],
    world: int,
    batch_size: int,
    steps_per_epoch: int,
) -> list[dict[str, float]]:
    """Turn the pending device losses into rows (averaged over ``world`` ranks) and start a new window."""
    if not pending:
        return []
    values = torch.stack([torch.stack([loss, acc]) for _, _, loss, acc in pending]).float()
    if world > 1:
        dist.all_reduce(values)
        values /= world
    values = values.cpu().tolist()
    elapsed = time.perf_counter() - window["start"]
    rate = len(pending) * batch_size / max(elapsed, 1e-9)
    wait = window["wait"] / max(elapsed, 1e-9)
    rows = [
        {
            "step": step,
            "epoch": step / steps_per_epoch,
            "lr": lr,
            "loss": v[0],
            "acc": v[1],
            "pairs_per_s": rate,
            "data_wait_share": wait,
            "time_s": time.perf_counter() - window["t0"],
        }
        for (step, lr, _, _), v in zip(pending, values, strict=True)
    ]
    if metrics is not None:
        metrics.write(rows)
    window.update(start=time.perf_counter(), wait=0.0)
    return rows
