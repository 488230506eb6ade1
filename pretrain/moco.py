"""MoCo v2 (He et al. 2020, https://arxiv.org/abs/1911.05722; Chen et al. 2020) for Re-ID, §4.1.

In the style of facebookresearch/moco's ``builder.py``, without its DDP-only paths: the queue
wraps around when K is not a multiple of the batch, Shuffle-BN works in one process (groups of
``SplitBatchNorm2d``) and across processes (``distributed.batch_shuffle``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from pretrain.distributed import batch_shuffle, batch_unshuffle, concat_all_gather
from pretrain.splitbn import split_batch_norms


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
