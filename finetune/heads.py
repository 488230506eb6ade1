"""Re-ID models on a pre-trained ResNet trunk: IDE, Trip and an MGN-style head (§4.3, §5.2).

Every head puts the paper's extra BatchNorm re-calibration layer after each place the
pre-trained feature is used (§4.3): after the pooled feature for IDE / Trip, and after each of
the three MGN branches (and on each reduced feature, as fast-reid's MGN does).

In training mode ``forward`` returns ``{"logits": [...], "triplet": [...], "embedding": ...}``
(the losses applied to each list are in ``finetune.losses``); in eval mode it returns the
embedding used for retrieval.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

HEADS = ("ide", "trip", "mgn")


def neck_bn(dim: int) -> nn.BatchNorm1d:
    """The §4.3 re-calibration BN; its shift is frozen (the BNNeck of bag-of-tricks)."""
    bn = nn.BatchNorm1d(dim)
    bn.bias.requires_grad_(False)
    return bn


def trunk_to_layer3(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Stem and layer1-3 of a torchvision ResNet: N x 3 x H x W -> N x C3 x H/16 x W/16."""
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
    return backbone.layer3(backbone.layer2(backbone.layer1(x)))


def feature_dim(backbone: nn.Module) -> int:
    """Channels of the last ResNet stage (512 for resnet18/34, 2048 for resnet50+)."""
    last = backbone.layer4[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


class GlobalModel(nn.Module):
    """IDE (softmax on the BN'd pooled feature) or Trip (batch-hard triplet on it)."""

    def __init__(self, backbone: nn.Module, head: str, num_classes: int) -> None:
        super().__init__()
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.head = head
        dim = feature_dim(backbone)
        self.bn = neck_bn(dim)
        self.classifier = nn.Linear(dim, num_classes, bias=False) if head == "ide" else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> Any:
        fmap = self.backbone.layer4(trunk_to_layer3(self.backbone, x))  # N x C x h x w
        emb = self.bn(fmap.mean(dim=(2, 3)))  # N x C
        if not self.training:
            return emb
        if self.classifier is not None:
            return {"logits": [self.classifier(emb)], "triplet": [], "embedding": emb}
        return {"logits": [], "triplet": [emb], "embedding": emb}


class MGNModel(nn.Module):
    """MGN-style: a global branch plus 2- and 3-stripe branches on copies of layer4 (Wang 2018).

    The global branch keeps layer4's stride 2; the part branches use stride-1 copies initialised
    from the same pre-trained layer4. Eight features (3 global + 2 + 3 stripes) are reduced to
    ``dim``, each BN'd and classified; the triplet loss sees the three global ones.
    """

    STRIPES = (1, 2, 3)

    def __init__(self, backbone: nn.Module, num_classes: int, dim: int = 256) -> None:
        super().__init__()
        backbone.fc = nn.Identity()
        self.backbone = backbone
        channels = feature_dim(backbone)
        part = copy.deepcopy(backbone.layer4)
        part[0].conv1.stride = part[0].conv2.stride = (1, 1)
        if part[0].downsample is not None:
            part[0].downsample[0].stride = (1, 1)
        self.branch2, self.branch3 = part, copy.deepcopy(part)
        self.branch_bn = nn.ModuleList(nn.BatchNorm2d(channels) for _ in self.STRIPES)  # §4.3: one per branch
        n_feats = sum(1 + (s if s > 1 else 0) for s in self.STRIPES)  # 1 + 3 + 4 = 8
        self.reduce = nn.ModuleList(
            nn.Sequential(nn.Linear(channels, dim, bias=False), neck_bn(dim)) for _ in range(n_feats)
        )
        self.classifiers = nn.ModuleList(nn.Linear(dim, num_classes, bias=False) for _ in range(n_feats))
        for c in self.classifiers:
            nn.init.normal_(c.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> Any:
        mid = trunk_to_layer3(self.backbone, x)  # N x C3 x H/16 x W/16
        maps = (self.backbone.layer4(mid), self.branch2(mid), self.branch3(mid))
        pooled: list[torch.Tensor] = []
        n_global = []
        for stripes, fmap, bn in zip(self.STRIPES, maps, self.branch_bn, strict=True):
            fmap = bn(fmap)  # N x C x h x w
            n_global.append(len(pooled))
            pooled.append(fmap.mean(dim=(2, 3)))  # branch-global feature, N x C
            if stripes > 1:
                parts = nn.functional.adaptive_avg_pool2d(fmap, (stripes, 1)).flatten(2)  # N x C x stripes
                pooled.extend(parts.unbind(dim=2))
        feats = [reduce(p) for reduce, p in zip(self.reduce, pooled, strict=True)]  # 8 x (N x dim)
        emb = torch.cat(feats, dim=1)  # N x 8*dim
        if not self.training:
            return emb
        logits = [c(f) for c, f in zip(self.classifiers, feats, strict=True)]
        return {"logits": logits, "triplet": [feats[i] for i in n_global], "embedding": emb}


def build_model(backbone: nn.Module, head: str, num_classes: int) -> nn.Module:
    """The Re-ID model of ``head`` around an (already initialised) torchvision ResNet."""
    if head == "mgn":
        return MGNModel(backbone, num_classes)
    if head in ("ide", "trip"):
        return GlobalModel(backbone, head, num_classes)
    raise ValueError(f"head must be one of {HEADS}, got {head!r}")
