"""The entry of one training process (launched by ``launch.pretrain`` or by an external torchrun)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from common.errors import UsageError
from common.integrity import DISK_FULL
from common.log import setup_logging
from pretrain.shardlist import ShardList
from pretrain.trainer import Trainer


def out_of_memory(cfg) -> str:
    """The one line for a batch that does not fit the GPU: what to pass instead."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    per_gpu = cfg.batch_size // world
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 2**30
    half = cfg.batch_size // 2
    return (
        f"batch {cfg.batch_size} ({per_gpu} per GPU at {cfg.height}x{cfg.width}) does not fit in the "
        f"{total:.0f} GiB of a GPU: pass --batch-size {half} (the learning rate follows it: "
        f"{cfg.base_lr} x {half}/{cfg.base_batch}) or more --gpus"
    )


def train_worker(cfg, root: Path, shards: ShardList | None = None) -> dict[str, Any]:
    """Entry of one process (launched by ``launch.pretrain`` or by an external torchrun);
    ``shards``: the list ``launch`` checked against the index (each tar's identity with it)."""
    setup_logging()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    elif local_world > 1 and "OMP_NUM_THREADS" not in os.environ:
        # As torchrun does: processes sharing a node must not oversubscribe its cores.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    try:
        return Trainer(cfg, Path(root), shards).fit()
    except torch.cuda.OutOfMemoryError:
        raise UsageError(out_of_memory(cfg)) from None
    except OSError as e:  # a full disk while writing logs or plots (checkpoints say so themselves)
        if e.errno not in DISK_FULL:
            raise
        raise UsageError(f"cannot write {e.filename or root} ({e.strerror})") from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
