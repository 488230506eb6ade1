"""The mean and std a backbone was trained with, and the names they go by.

A backbone only works on inputs normalised as in its training: ``lup`` pre-training and LUPerson
fine-tuning use LUPerson's statistics (§5.1), the original MoCo v2 recipe and torchvision's
ImageNet-supervised weights use ImageNet's. ``backbone.json`` (``common.backbone_card``) and the
checkpoints record which; ``finetune`` and ``evaluate`` read it back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from common.errors import UsageError

LUP_MEAN = (0.3525, 0.3106, 0.3140)  # §5.1, computed on LUPerson
LUP_STD = (0.2660, 0.2522, 0.2505)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet weights
IMAGENET_STD = (0.229, 0.224, 0.225)

NAMED = {"lup": (LUP_MEAN, LUP_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}
PRESET_NORMALISATION = {"lup": "lup", "mocov2": "imagenet"}  # pretrain preset -> its statistics


@dataclass(frozen=True)
class Normalisation:
    """Per-channel (R, G, B) mean and std on [0, 1] pixels, and where they were taken from."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str

    @property
    def name(self) -> str:
        """``lup``, ``imagenet`` or ``custom``."""
        for name, (mean, std) in NAMED.items():
            if _close(self.mean, mean) and _close(self.std, std):
                return name
        return "custom"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std), "source": self.source}


def named(name: str, source: str) -> Normalisation:
    """The statistics called ``name`` (``lup`` or ``imagenet``)."""
    if name not in NAMED:
        raise UsageError(f"normalisation: '{name}' is not one of {', '.join(NAMED)}")
    mean, std = NAMED[name]
    return Normalisation(mean, std, source)


def from_record(record: Any, source: str) -> Normalisation:
    """A ``{"mean": [3 floats], "std": [3 positive floats]}`` record, checked; ``UsageError`` if not."""
    try:
        mean = tuple(float(x) for x in record["mean"])
        std = tuple(float(x) for x in record["std"])
    except (TypeError, KeyError, ValueError):
        raise UsageError(f"{source}: no usable mean/std (want three numbers each)") from None
    if len(mean) != 3 or len(std) != 3 or not all(map(math.isfinite, mean + std)) or min(std) <= 0:
        raise UsageError(f"{source}: mean/std must be three finite numbers each, std > 0")
    return Normalisation(mean, std, source)  # type: ignore[arg-type]


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))
