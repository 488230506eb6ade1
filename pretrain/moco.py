"""MoCo v2 (He et al. 2020, https://arxiv.org/abs/1911.05722; Chen et al. 2020) for Re-ID, §4.1:
the model, its loss (InfoNCE, Eq. 1), Shuffle-BN on one GPU and the collectives it needs.

In the style of facebookresearch/moco's ``builder.py``, without its DDP-only paths: the queue
wraps around when K is not a multiple of the batch, Shuffle-BN works in one process (groups of
``SplitBatchNorm2d``) and across processes (``batch_shuffle``).

Shuffle-BN on one GPU: BatchNorm whose training statistics are computed per group of the batch.
MoCo shuffles the keys across GPUs so that a query and its key never share BatchNorm statistics
(otherwise the model can find its positive from the batch statistics instead of the image). On
one GPU we split the batch into ``groups`` contiguous groups, each normalised with its own
statistics as if it ran on its own GPU, and shuffle the keys across groups (``batch_shuffle``).
Running statistics are updated once per step with the mean of the groups' updates (the MoCo CIFAR
demo's SplitBatchNorm). Parameter and buffer names are those of ``nn.BatchNorm2d``.

The collectives (``world``, ``concat_all_gather``, ``batch_shuffle``, ``batch_unshuffle``) are the
few MoCo needs; each is the identity in a single process.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchvision
from torch import nn


class Encoder(nn.Module):
    """A torchvision ResNet without its classifier (``backbone``) and MoCo v2's 2-layer MLP head."""

    def __init__(self, arch: str, dim: int, bn_groups: int = 1):
        super().__init__()
        backbone = torchvision.models.get_model(arch, weights=None)
        features = backbone.fc.in_features
        backbone.fc = nn.Identity()  # state dict keys = torchvision's, minus fc.*
        self.backbone = split_batch_norms(backbone, bn_groups)
        self.head = nn.Sequential(
            nn.Linear(features, features), nn.ReLU(inplace=True), nn.Linear(features, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # NxC


def info_nce_logits(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Eq. 1 as a (K+1)-way classification: logits whose target is always class 0 (the positive).

    q, k: NxC normalised queries and positive keys; queue: CxK normalised negative keys.
    ``cross_entropy(logits, 0) = -log(exp(q.k+/t) / (exp(q.k+/t) + sum_i exp(q.k_i-/t)))``.
    """
    l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)  # positive logits: Nx1
    l_neg = torch.einsum("nc,ck->nk", q, queue)  # negative logits: NxK
    return torch.cat([l_pos, l_neg], dim=1) / temperature  # logits: Nx(1+K)


def mask_own_tracklet(logits: torch.Tensor, ids: torch.Tensor, queue_ids: torch.Tensor) -> torch.Tensor:
    """Eq. 1 without the query's own tracklet among the negatives (``--positives tracklet``).

    logits: Nx(1+K); ids: N tracklet ids of the queries; queue_ids: K ids of the queued keys
    (-1: no tracklet, never masked). A queued key of the query's tracklet is another view of the
    same person, not a negative: its logit becomes -inf (it drops out of the softmax).
    """
    own = (queue_ids[None, :] == ids[:, None]) & (ids[:, None] >= 0)  # NxK
    no = torch.zeros_like(own[:, :1])  # Nx1: the positive is never masked
    return logits.masked_fill(torch.cat([no, own], dim=1), float("-inf"))


def info_nce_loss(logits: torch.Tensor) -> torch.Tensor:
    """Eq. 1 averaged over the batch: cross-entropy with the positive at index 0."""
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), labels)


@torch.no_grad()
def momentum_update(key: list[torch.Tensor], query: list[torch.Tensor], m: float) -> None:
    """Eq. 2: theta_k := m theta_k + (1 - m) theta_q, as two fused multi-tensor kernels."""
    torch._foreach_mul_(key, m)
    torch._foreach_add_(key, query, alpha=1 - m)


class MoCo(nn.Module):
    """Query encoder, momentum key encoder and a queue of K negative keys.

    State dict: ``encoder_q.backbone.<torchvision key>``, ``encoder_q.head.*``, ``encoder_k.*``,
    ``queue`` (CxK) and ``queue_ptr``; with ``tracklets`` also ``queue_ids`` (K tracklet ids of
    the queued keys, -1 for none), and ``forward`` takes the queries' ids and masks their own
    tracklet's queued keys out of the negatives (``mask_own_tracklet``).
    """

    def __init__(
        self,
        arch: str = "resnet50",
        dim: int = 128,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.07,
        bn_groups: int = 1,
        tracklets: bool = False,
    ):
        super().__init__()
        self.tracklets = tracklets
        self.queue_size, self.momentum, self.temperature = queue_size, momentum, temperature
        self.encoder_q = Encoder(arch, dim, bn_groups)
        self.encoder_k = copy.deepcopy(self.encoder_q)  # initialised as the query encoder
        self.encoder_k.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))  # CxK
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        if tracklets:  # instance mode keeps its state dict as it was
            self.register_buffer("queue_ids", torch.full((queue_size,), -1, dtype=torch.long))  # K

    @torch.no_grad()
    def momentum_update(self) -> None:
        momentum_update(list(self.encoder_k.parameters()), list(self.encoder_q.parameters()), self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """Replace the oldest keys (NxC, N <= K) by ``keys`` (and their tracklet ``ids``, N),
        wrapping around the end of the queue."""
        n = keys.shape[0]
        slots = (self.queue_ptr + torch.arange(n, device=keys.device)) % self.queue_size  # N
        self.queue.index_copy_(1, slots, keys.t().to(self.queue.dtype))  # no host sync
        if self.tracklets:
            self.queue_ids.index_copy_(0, slots, ids)
        self.queue_ptr.copy_((self.queue_ptr + n) % self.queue_size)

    def forward(
        self,
        im_q: torch.Tensor,
        im_k: torch.Tensor,
        generator: torch.Generator | None = None,
        ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits Nx(1+K) of Eq. 1 for queries ``im_q`` and keys ``im_k`` (Nx3xHxW each); with
        ``tracklets``, ``ids`` (N) are the pairs' tracklet ids and own-tracklet negatives are -inf."""
        if self.tracklets and ids is None:
            raise ValueError("a MoCo with tracklets needs the tracklet ids of the batch")
        q = F.normalize(self.encoder_q(im_q), dim=1)  # queries: NxC
        with torch.no_grad():
            self.momentum_update()  # Eq. 2
            fmt = torch.channels_last if im_k.is_contiguous(memory_format=torch.channels_last) else None
            im_k, unshuffle = batch_shuffle(im_k, generator)  # Shuffle-BN
            if fmt is not None:
                im_k = im_k.contiguous(memory_format=fmt)
            k = F.normalize(self.encoder_k(im_k), dim=1)  # keys: NxC
            k = batch_unshuffle(k, unshuffle)
        with torch.autocast(device_type=q.device.type, enabled=False):  # logits in fp32 (t = 0.07)
            logits = info_nce_logits(q.float(), k.float(), self.queue.clone().detach(), self.temperature)
            if self.tracklets:
                logits = mask_own_tracklet(logits, ids, self.queue_ids.clone())
        self.enqueue(concat_all_gather(k.float()), concat_all_gather(ids) if self.tracklets else None)
        return logits


class SplitBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with per-group batch statistics in training mode."""

    def __init__(self, num_features: int, groups: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.groups == 1:
            return super().forward(x)
        means, variances, outs = [], [], []
        for chunk in x.chunk(self.groups):  # views along N: keep channels_last, no copy
            mean, var = self.running_mean.clone(), self.running_var.clone()
            outs.append(F.batch_norm(chunk, mean, var, self.weight, self.bias, True, self.momentum, self.eps))
            means.append(mean)
            variances.append(var)
        with torch.no_grad():
            self.running_mean.copy_(torch.stack(means).mean(dim=0))
            self.running_var.copy_(torch.stack(variances).mean(dim=0))
            self.num_batches_tracked.add_(1)
        return torch.cat(outs)


def split_batch_norms(module: nn.Module, groups: int) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a ``SplitBatchNorm2d`` with the same state."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SplitBatchNorm2d):
            split = SplitBatchNorm2d(child.num_features, groups, eps=child.eps, momentum=child.momentum)
            split.load_state_dict(child.state_dict())
            setattr(module, name, split)
        else:
            split_batch_norms(child, groups)
    return module


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
