"""One training process's device, place in the process group (the torchrun environment) and seeds."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist

from common.device import pick_device as common_pick_device


def pick_device(cfg, local_rank: int) -> torch.device:
    """This process's device: ``cfg.device`` (``auto``, ``cpu``, ``cuda``), the GPU of its local rank."""
    device = common_pick_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    return device


def init_distributed(device: torch.device) -> tuple[int, int, int]:
    """(rank, world, local rank) from the torchrun environment; joins the process group if world > 1."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, local


def param_checksum(module: torch.nn.Module) -> float:
    """Sum of every parameter in float64: equal on every rank when the replicas agree."""
    return float(sum(p.detach().double().sum().item() for p in module.parameters()))


def seed_process(seed: int) -> None:
    """Seed torch's, Python's and NumPy's global generators: a checkpoint records all three, so two
    equal runs write equal checkpoints (and ``finished.json`` hashes)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
