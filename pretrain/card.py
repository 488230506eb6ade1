"""What ``pretrain`` writes into ``backbone.json`` (``common.backbone_card``) beside ``backbone.pth``."""

from __future__ import annotations

import dataclasses
from typing import Any

from common.normalisation import Normalisation
from common.provenance import project_commit
from pretrain.settings import Recipe

SWITCHES = ("color_jitter", "grayscale", "blur", "random_erasing", "erasing_max_area")


def recipe_normalisation(recipe: Recipe, preset: str) -> Normalisation:
    """The mean/std the run's augmentation normalises with."""
    return Normalisation(recipe.mean, recipe.std, f"pretrain preset {preset}")


def backbone_card(
    cfg: Any, recipe: Recipe, temperature: float, steps: int, steps_per_epoch: int, shards: str
) -> dict[str, Any]:
    """The card of a backbone exported after ``steps`` steps of the run ``cfg``."""
    norm = recipe_normalisation(recipe, cfg.preset)
    return {
        "kind": "luperson_backbone",
        "format": "torchvision ResNet state dict without fc.*",
        "arch": cfg.arch,
        "height": cfg.height,
        "width": cfg.width,
        "normalisation": norm.name,
        "mean": list(norm.mean),
        "std": list(norm.std),
        "preset": cfg.preset,
        "switches": {name: getattr(cfg, name) for name in SWITCHES},  # None: the preset's choice
        "recipe": dataclasses.asdict(recipe),
        "temperature": temperature,
        "positives": cfg.positives,  # the key: another view of the crop, or a crop of its tracklet
        "tracklet_window": cfg.tracklet_window if cfg.positives == "tracklet" else None,
        "queue_size": cfg.queue_size,
        "batch_size": cfg.batch_size,
        "epochs_planned": cfg.epochs,
        "epochs": round(steps / steps_per_epoch, 3),
        "steps": steps,
        "samples_seen": steps * cfg.batch_size,
        "shards_fingerprint": shards,
        "project_commit": project_commit(),
    }
