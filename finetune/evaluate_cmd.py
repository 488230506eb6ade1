"""``python pipeline.py evaluate``: score a backbone on a benchmark's test split, no training needed.

    python pipeline.py evaluate --dataset viper --weights runs/lup_moco/backbone.pth --arch resnet50
    python pipeline.py evaluate --dataset prid --weights runs/finetune/checkpoint.pt

Pre-trained weights (``random``, a torchvision state dict, a MoCo checkpoint) are evaluated as
frozen pooled features: the ResNet's global-average-pooled last stage, L2-normalised, cosine
distance, the quick signal of pre-training quality. A ``finetune`` checkpoint is evaluated with
its own embedding (the BN'd head features) at the size it was trained at.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.device import pick_device
from finetune.backbone import LoadReport, build_resnet, load_backbone_weights, recorded_normalisation
from finetune.checkpoint import load_finetuned
from finetune.datasets import load_split
from finetune.features import evaluate_model
from finetune.normalisation import choose_normalisation
from finetune.settings import EvaluateSettings

log = logging.getLogger(__name__)


def frozen_backbone(arch: str, weights: str) -> tuple[nn.Module, LoadReport]:
    """The pre-trained ResNet as it was trained (stride 2), its ``fc`` replaced by identity."""
    model = build_resnet(arch, last_stride=2)
    report = load_backbone_weights(model, weights, "weights")
    model.fc = nn.Identity()  # forward() now ends at the pooled N x C feature
    return model, report


def evaluate_command(cfg: EvaluateSettings, root: Path) -> dict[str, Any]:
    """mAP, rank-1/5/10, mINP (percent), n_query, n_gallery of ``cfg.weights`` on ``cfg.dataset``."""
    split = load_split(cfg.dataset, cfg.data_dir, cfg.split_seed)
    finetuned = load_finetuned(cfg.weights) if cfg.weights not in ("random", "imagenet") else None
    height, width = cfg.height, cfg.width
    if finetuned is not None:
        model, ckpt = finetuned
        height, width = ckpt["height"], ckpt["width"]
        info: dict[str, Any] = {"source": "finetune", "arch": ckpt["arch"], "head": ckpt["head"]}
        recorded = recorded_normalisation(ckpt, "finetune", cfg.weights)
    else:
        torch.manual_seed(cfg.seed)  # reproducible random weights
        model, report = frozen_backbone(cfg.arch, cfg.weights)
        info, recorded = report.summary(), report.normalisation
    norm = choose_normalisation(cfg.normalisation, recorded, cfg.weights)
    summary = evaluate_model(
        model, split, height, width, cfg.batch_size, pick_device(cfg.device), norm, cfg.workers, cfg.rerank
    )
    log.info("%s on %s (%s): %s", cfg.weights, cfg.dataset, split.protocol, summary)
    return {**summary, "weights": info}
