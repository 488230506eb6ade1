"""The few collective operations MoCo needs; each is the identity in a single process."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N x ...) from every process along dim 0: (world*N) x ... (no gradient)."""
    _, size = world()
    if size == 1:
        return x
    nhwc = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    flat = x.permute(0, 2, 3, 1) if nhwc else x.contiguous()  # channels_last: gather its NHWC view, no copy
    out = [torch.empty_like(flat) for _ in range(size)]
    dist.all_gather(out, flat)
    gathered = torch.cat(out)
    return gathered.permute(0, 3, 1, 2) if nhwc else gathered


@torch.no_grad()
def batch_shuffle(x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle the global batch across processes (MoCo's Shuffle-BN): (this rank's x, unshuffle index).

    Rank 0 draws the permutation and broadcasts it; one process just permutes its batch, which
    moves keys across the BatchNorm groups of ``SplitBatchNorm2d``.
    """
    rank, size = world()
    x_all = concat_all_gather(x)  # (world*N) x ...
    n_all = x_all.shape[0]
    perm = torch.randperm(n_all, generator=generator, device=generator.device if generator else x.device)
    perm = perm.to(x.device)
    if size > 1:
        dist.broadcast(perm, src=0)
    unshuffle = torch.argsort(perm)
    n = x.shape[0]
    mine = perm.view(size, n)[rank]
    return x_all[mine], unshuffle


@torch.no_grad()
def batch_unshuffle(x: torch.Tensor, unshuffle: torch.Tensor) -> torch.Tensor:
    """Undo ``batch_shuffle`` on the keys: this rank's rows in their original order."""
    rank, size = world()
    x_all = concat_all_gather(x)
    n = x.shape[0]
    return x_all[unshuffle.view(size, n)[rank]]
