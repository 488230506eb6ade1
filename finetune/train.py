"""``python pipeline.py finetune``: fine-tune a backbone on a Re-ID benchmark, then evaluate it (§4.3).

    python pipeline.py finetune --dataset viper --init runs/lup_moco/backbone.pth --head ide
    python pipeline.py finetune --dataset market1501 --data-dir /data/Market-1501-v15.09.15 \\
        --init runs/lup_moco/checkpoint.pt --head mgn --id-share 0.1      # Table 6, small-scale

Outputs in ``<root>/runs/<run_name>/``: ``checkpoint.pt`` (after every epoch; a rerun resumes
from it), ``metrics.csv`` (one row per epoch), ``settings.yaml`` and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from common.atomic import write_json, write_text
from common.device import pick_device
from common.errors import UsageError
from common.integrity import remove_stale_temporaries
from common.schedule import cosine_decay
from common.settings import save_settings
from finetune.backbone import build_resnet, load_backbone_weights, read_checkpoint
from finetune.checkpoint import check_resumable, save_checkpoint
from finetune.datasets import load_split
from finetune.features import evaluate_model
from finetune.heads import build_model
from finetune.loader import IdentitySampler, ImageDataset, train_transform
from finetune.losses import reid_loss
from finetune.normalisation import choose_normalisation
from finetune.records import ReIDSplit, Sample, relabel
from finetune.settings import FinetuneSettings
from finetune.subsets import few_shot, small_scale

log = logging.getLogger(__name__)
METRIC_COLUMNS = ("epoch", "steps", "loss", "ce", "triplet", "acc", "lr", "seconds")
RUN_FILES = re.compile(r"checkpoint\.pt|metrics\.csv|results\.json|settings\.yaml")  # stale temporaries


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warm-up from base_lr / 10, then cosine decay to 0 over the remaining steps."""
    if step < warmup:
        return base_lr * (0.1 + 0.9 * step / warmup)
    return cosine_decay(step, total, warmup, base_lr)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    lines = [",".join(METRIC_COLUMNS)]
    lines += [",".join(str(row.get(c, "")) for c in METRIC_COLUMNS) for row in history]
    write_text(path, "\n".join(lines) + "\n")


@dataclasses.dataclass
class Progress:
    """Where a run stands: epochs completed, steps taken, one metrics row per epoch."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def training_identities(cfg: FinetuneSettings) -> tuple[ReIDSplit, list[Sample], dict[int, int]]:
    """The split, its (small-scale / few-shot) training samples relabelled 0..n-1, and the mapping."""
    split = load_split(cfg.dataset, cfg.data_dir, cfg.split_seed)
    train = few_shot(small_scale(split.train, cfg.id_share, cfg.split_seed), cfg.image_share, cfg.split_seed)
    train, mapping = relabel(train)
    if len(mapping) < 2:
        raise UsageError(f"{cfg.dataset}: {len(mapping)} training identity after id_share; need at least 2")
    return split, train, mapping


def resume(ckpt_path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, settings: dict) -> Progress:
    """The progress of a killed run from its checkpoint (model and optimiser restored), or a fresh one."""
    if not ckpt_path.exists():
        return Progress()
    ckpt = read_checkpoint(ckpt_path, "checkpoint")
    check_resumable(ckpt["settings"], settings, ckpt_path)
    model.load_state_dict(ckpt["model"])
    if ckpt["optimizer"] is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    log.info("resuming %s after epoch %d (step %d)", ckpt_path, ckpt["epoch"], ckpt["step"])
    return Progress(ckpt["epoch"], ckpt["step"], ckpt["history"])


def train_epoch(
    model: nn.Module, optimizer, loader: DataLoader, progress: Progress, total: int, warmup: int, cfg, bar
) -> dict[str, Any]:
    """One epoch (or what is left of ``total`` steps); its metrics row. ``progress`` is advanced."""
    device = next(model.parameters()).device
    model.train()
    loader.batch_sampler.set_epoch(progress.epoch)
    start, sums, n, lr = time.perf_counter(), {}, 0, cfg.lr
    for images, pids, _ in loader:
        lr = lr_at(progress.step, total, warmup, cfg.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(images.to(device, non_blocking=True))
        loss, parts = reid_loss(out, pids.to(device), cfg.label_smoothing, cfg.margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for k, v in {"loss": loss.item(), **parts}.items():
            sums[k] = sums.get(k, 0.0) + v
        n, progress.step = n + 1, progress.step + 1
        bar.update(1)
        if progress.step >= total:
            break
    progress.epoch += 1
    row = {k: round(v / max(n, 1), 5) for k, v in sums.items()}
    row.update(epoch=progress.epoch, steps=progress.step, lr=round(lr, 8))
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def finetune(cfg: FinetuneSettings, root: Path) -> dict[str, Any]:
    """Train ``cfg.head`` on the training part of ``cfg.dataset``; return test mAP / CMC / mINP."""
    run_dir = Path(root) / "runs" / cfg.run_name
    split, train, mapping = training_identities(cfg)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    last_stride = 2 if cfg.head == "mgn" else cfg.last_stride
    backbone = build_resnet(cfg.arch, last_stride)
    report = load_backbone_weights(backbone, cfg.init)
    norm = choose_normalisation(cfg.normalisation, report.normalisation, cfg.init)
    model = build_model(backbone, cfg.head, len(mapping)).to(device)
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    settings = dataclasses.asdict(cfg)
    ckpt_path = run_dir / "checkpoint.pt"
    remove_stale_temporaries(run_dir, RUN_FILES)  # of a killed write
    progress = resume(ckpt_path, model, optimizer, settings)
    save_settings(cfg, run_dir / "settings.yaml", "finetune")
    sampler = IdentitySampler(train, cfg.batch_size, cfg.instances, seed=cfg.seed)
    loader = DataLoader(
        ImageDataset(train, train_transform(cfg.height, cfg.width, norm)),
        batch_sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
    )
    total = (
        cfg.epochs * len(sampler) if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * len(sampler))
    )
    warmup = min(cfg.warmup_epochs * len(sampler), total // 2)  # a short run still reaches the full lr
    meta = {"kind": "finetune", "arch": cfg.arch, "head": cfg.head, "num_classes": len(mapping)}
    meta.update(last_stride=last_stride, height=cfg.height, width=cfg.width, settings=settings)
    meta["normalisation"] = norm.as_dict()
    with tqdm(total=total, initial=progress.step, desc=f"finetune {cfg.run_name}", disable=total < 20) as bar:
        while progress.epoch < cfg.epochs and progress.step < total:
            row = train_epoch(model, optimizer, loader, progress, total, warmup, cfg, bar)
            progress.history.append(row)
            log.info("epoch %d: %s", progress.epoch, row)
            more = progress.epoch < cfg.epochs and progress.step < total
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict() if more else None}
            # only a run that will resume needs the Adam moments (twice the model's size)
            save_checkpoint(ckpt_path, {**meta, **state, **dataclasses.asdict(progress)})
            write_metrics(run_dir / "metrics.csv", progress.history)
    summary = evaluate_model(
        model, split, cfg.height, cfg.width, cfg.eval_batch_size, device, norm, cfg.workers, cfg.rerank
    )
    results = {
        **summary,
        "dataset": cfg.dataset,
        "protocol": split.protocol,
        "train_images": len(train),
        "train_ids": len(mapping),
        "epochs": progress.epoch,
        "steps": progress.step,
        "init": report.summary(),
        "checkpoint": str(ckpt_path),
    }
    write_json(run_dir / "results.json", results)
    return results
