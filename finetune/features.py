"""Embed the query and gallery of a split, compute cosine distances, and score them."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from common.normalisation import Normalisation
from finetune.loader import ImageDataset, test_transform
from finetune.metrics import evaluate, summary_percent
from finetune.records import ReIDSplit, Sample
from finetune.rerank import re_ranking

log = logging.getLogger(__name__)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    samples: list[Sample],
    height: int,
    width: int,
    batch_size: int,
    device: torch.device,
    norm: Normalisation,
    workers: int = 0,
) -> np.ndarray:
    """L2-normalised embeddings (N x D, float32) of ``samples``, in order, with the model in eval mode."""
    model.eval().to(device)
    loader = DataLoader(
        ImageDataset(samples, test_transform(height, width, norm)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    out = []
    for images, _, _ in tqdm(loader, desc="features", leave=False, disable=len(loader) < 5):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            emb = model(images.to(device, non_blocking=True))
        out.append(nn.functional.normalize(emb.float(), dim=1).cpu())
    return torch.cat(out).numpy()


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 - cos`` between rows of two L2-normalised matrices."""
    return 1.0 - a @ b.T


def evaluate_model(
    model: nn.Module,
    split: ReIDSplit,
    height: int,
    width: int,
    batch_size: int,
    device: torch.device,
    norm: Normalisation,
    workers: int = 0,
    rerank: bool = False,
) -> dict[str, Any]:
    """mAP, rank-1/5/10, mINP (percent) and query/gallery counts of ``model`` on the test split."""
    q = extract_features(model, split.query, height, width, batch_size, device, norm, workers)
    g = extract_features(model, split.gallery, height, width, batch_size, device, norm, workers)
    dist = cosine_distance(q, g)
    if rerank:
        dist = re_ranking(dist, cosine_distance(q, q), cosine_distance(g, g))
    result = evaluate(
        dist,
        np.array([s.pid for s in split.query]),
        np.array([s.pid for s in split.gallery]),
        np.array([s.camid for s in split.query]),
        np.array([s.camid for s in split.gallery]),
    )
    summary: dict[str, Any] = summary_percent(result)
    summary.update(
        n_query=len(split.query), n_gallery=len(split.gallery), n_valid_query=result["num_valid_queries"]
    )
    summary["normalisation"] = norm.as_dict()
    return summary
