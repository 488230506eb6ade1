"""Losses of the Re-ID heads: label-smoothed softmax (IDE) and batch-hard triplet (Trip, MGN)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def batch_hard_triplet(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Hermans et al. 2017: for each anchor, hardest positive and hardest negative in the batch.

    ``max(0, margin + max_p d(a, p) - min_n d(a, n))`` averaged over anchors that have both a
    positive and a negative; Euclidean distances. Returns 0 when no anchor has both.
    """
    dist = torch.cdist(features, features).clamp_min(1e-12)  # N x N
    same = labels[:, None] == labels[None, :]  # N x N
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)  # N
    if not valid.any():
        return features.sum() * 0.0
    hardest_pos = torch.where(pos_mask, dist, torch.zeros_like(dist)).max(dim=1).values  # N
    hardest_neg = torch.where(neg_mask, dist, torch.full_like(dist, float("inf"))).min(dim=1).values  # N
    return F.relu(margin + hardest_pos - hardest_neg)[valid].mean()


def reid_loss(
    out: dict, labels: torch.Tensor, label_smoothing: float = 0.1, margin: float = 0.3
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean cross-entropy over ``out["logits"]`` plus mean triplet over ``out["triplet"]`` (in fp32)."""
    total = out["embedding"].new_zeros(())
    parts: dict[str, float] = {}
    if out["logits"]:
        ce = torch.stack(
            [F.cross_entropy(lg.float(), labels, label_smoothing=label_smoothing) for lg in out["logits"]]
        )
        total = total + ce.mean()
        parts["ce"] = ce.mean().item()
        parts["acc"] = float((out["logits"][0].argmax(dim=1) == labels).float().mean())
    if out["triplet"]:
        tri = torch.stack([batch_hard_triplet(f.float(), labels, margin) for f in out["triplet"]])
        total = total + tri.mean()
        parts["triplet"] = tri.mean().item()
    return total, parts
