"""Shuffle-BN on one GPU: BatchNorm whose training statistics are computed per group of the batch.

MoCo shuffles the keys across GPUs so that a query and its key never share BatchNorm statistics
(otherwise the model can find its positive from the batch statistics instead of the image). On
one GPU we split the batch into ``groups`` contiguous groups, each normalised with its own
statistics as if it ran on its own GPU, and shuffle the keys across groups (``moco.py``). Running
statistics are updated once per step with the mean of the groups' updates (the MoCo CIFAR demo's
SplitBatchNorm). Parameter and buffer names are those of ``nn.BatchNorm2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
