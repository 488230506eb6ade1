"""The sizes of a pre-training run, fixed by its settings, the shards and the world size."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common.errors import UsageError
from pretrain.schedule import peak_lr
from pretrain.shardlist import ShardList, shard_list


@dataclasses.dataclass
class Plan:
    """Sizes of the run, fixed by the settings and the shards."""

    world: int
    per_rank_batch: int
    bn_groups: int  # per process
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    peak_lr: float
    shards: ShardList


def make_plan(cfg, root: Path, world: int, shards: ShardList | None = None) -> Plan:
    """Check the settings against the shards (``shards``, the list ``launch`` checked; else
    made here) and the world size; raise UsageError on a mismatch."""
    if cfg.batch_size % world:
        raise UsageError(f"batch_size {cfg.batch_size} is not a multiple of the {world} processes")
    per_rank = cfg.batch_size // world
    groups = max(1, cfg.bn_groups // world)
    if per_rank % groups:
        raise UsageError(f"batch per process {per_rank} is not a multiple of its {groups} Shuffle-BN groups")
    shards = shards if shards is not None else shard_list(cfg.shards, root)
    epoch_size = cfg.epoch_size or shards.samples
    steps = epoch_size // cfg.batch_size
    if steps < 1:
        raise UsageError(f"an epoch of {epoch_size} samples is smaller than one batch of {cfg.batch_size}")
    return Plan(
        world=world,
        per_rank_batch=per_rank,
        bn_groups=groups,
        steps_per_epoch=steps,
        total_steps=cfg.epochs * steps,
        warmup_steps=cfg.warmup_epochs * steps,
        peak_lr=peak_lr(cfg.base_lr, cfg.batch_size, cfg.base_batch),
        shards=shards,
    )
