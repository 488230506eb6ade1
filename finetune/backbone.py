"""A torchvision ResNet trunk and its initial weights: random, ImageNet, a state dict, or a MoCo checkpoint.

``imagenet`` loads torchvision's ImageNet-supervised weights (``finetune.imagenet``). Accepted
``init`` files (``torch.load``-able):

* a torchvision ResNet state dict (``backbone.pth`` written by ``pretrain``), optionally with a
  ``module.`` prefix (DataParallel / DDP);
* a MoCo checkpoint: a dict whose ``"model"`` (or ``"state_dict"``) entry has keys
  ``encoder_q.backbone.<torchvision key>`` (ours) or ``encoder_q.<torchvision key>`` (the
  original facebookresearch/moco, whose ``fc`` is the MLP head and is dropped);
* a checkpoint written by ``finetune`` (``"kind": "finetune"``): its ``backbone.*`` tensors.

Every file is read with ``torch.load(weights_only=True)``: tensors and plain Python values
only. A file that pickles other objects (which could run code when loaded) is refused with one
line naming it; re-save its state dict (``torch.save(ckpt["state_dict"], ...)``) where you
trust it. The classifier ``fc`` is never loaded; what matched, was missing or left over is
reported, and so is the normalisation the weights were trained with where the file (or the
``backbone.json`` beside a state dict) records it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from common.backbone_card import card_normalisation
from common.errors import UsageError
from common.normalisation import PRESET_NORMALISATION, Normalisation, from_record, named
from common.safe_load import load_tensors_only
from finetune.imagenet import imagenet_normalisation, imagenet_state

log = logging.getLogger(__name__)
MOCO_PREFIXES = ("encoder_q.backbone.", "encoder_q.")


@dataclass
class LoadReport:
    """What ``load_backbone_weights`` did: the source kind and the key counts."""

    source: str
    matched: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    normalisation: Normalisation | None = None  # what the weights were trained with, when recorded

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "matched": self.matched,
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
        }


def build_resnet(arch: str, last_stride: int = 1) -> nn.Module:
    """A randomly initialised torchvision ResNet ``arch`` without weights download.

    ``last_stride=1`` keeps a 16x8 map at 256x128 input, the usual Re-ID choice (fast-reid).
    """
    if not arch.startswith(("resnet", "resnext", "wide_resnet")) or not hasattr(torchvision.models, arch):
        raise UsageError(f"arch: '{arch}' is not a torchvision ResNet (e.g. resnet18, resnet50)")
    model = getattr(torchvision.models, arch)(weights=None)
    model.arch = arch  # which weights --init imagenet fetches
    if last_stride == 1:
        block = model.layer4[0]
        block.conv1.stride = block.conv2.stride = (1, 1)  # the stride sits in conv1 or conv2
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
    return model


def _arch_of(model: nn.Module) -> str:
    raise UsageError(f"init imagenet: cannot tell which torchvision model a {type(model).__name__} is")


def read_checkpoint(path: str | Path, what: str = "init weights") -> Any:
    """``torch.load(weights_only=True)`` on CPU; ``UsageError`` naming the file when it is not
    a checkpoint or needs more than tensors and plain values (no fallback)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what}: {p} is not a file (or say 'random' or 'imagenet')")
    return load_tensors_only(p, what)


def torchvision_state(obj: Any) -> tuple[dict[str, torch.Tensor], str]:
    """Extract torchvision-named backbone tensors from any accepted checkpoint form."""
    if not isinstance(obj, dict):
        raise UsageError("init weights: the file does not hold a dict of tensors")
    if obj.get("kind") == "finetune":
        return _with_prefix(obj["model"], "backbone."), "finetune"
    inner = obj.get("model", obj.get("state_dict"))
    if isinstance(inner, dict):
        keys = [k.removeprefix("module.") for k in inner]
        for prefix in MOCO_PREFIXES:
            if any(k.startswith(prefix) for k in keys):
                state = {k.removeprefix("module."): v for k, v in inner.items()}
                return _with_prefix(state, prefix), "moco"
        obj = inner
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return state, "state_dict"


def recorded_normalisation(obj: Any, source: str, init: str) -> Normalisation | None:
    """The mean/std the checkpoint ``obj`` (of kind ``source``) or the card beside ``init`` records."""
    if source == "state_dict":
        return card_normalisation(init)
    if isinstance(obj.get("normalisation"), dict):
        return from_record(obj["normalisation"], f"{init} ({source} checkpoint)")
    if source == "finetune":  # written before the record existed: finetune always used LUPerson's
        return named("lup", f"{init} (finetune checkpoint)")
    preset = (obj.get("settings") or {}).get("preset") if isinstance(obj.get("settings"), dict) else None
    if preset in PRESET_NORMALISATION:
        return named(PRESET_NORMALISATION[preset], f"{init} (MoCo checkpoint, preset {preset})")
    return None


def _with_prefix(state: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """Tensors whose name starts with ``prefix``, renamed without it."""
    return {
        k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and isinstance(v, torch.Tensor)
    }


def load_backbone_weights(model: nn.Module, init: str, what: str = "init weights") -> LoadReport:
    """Load ``init`` ('random' or a file) into a torchvision ResNet, ``fc`` excluded."""
    if init == "random":
        return LoadReport("random", missing=[k for k in model.state_dict() if not k.startswith("fc.")])
    if init == "imagenet":
        arch = getattr(model, "arch", None) or _arch_of(model)
        state, report = imagenet_state(arch), LoadReport("imagenet", normalisation=imagenet_normalisation())
    else:
        obj = read_checkpoint(init, what)
        state, source = torchvision_state(obj)
        report = LoadReport(source, normalisation=recorded_normalisation(obj, source, init))
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    usable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            raise UsageError(
                f"init weights: {key} has shape {tuple(value.shape)}, the {type(model).__name__} "
                f"expects {tuple(own[key].shape)} (wrong --arch?)"
            )
        else:
            usable[key] = value
    report.matched = len(usable)
    report.missing = sorted(set(own) - set(usable))
    if not usable:
        raise UsageError(
            f"init weights: no tensor of {init} matches a torchvision ResNet (wrong file or --arch?)"
        )
    model.load_state_dict(usable, strict=False)
    log.info(
        "init %s (%s): %d tensors loaded, %d missing, %d unused",
        init,
        report.source,
        report.matched,
        len(report.missing),
        len(report.unexpected),
    )
    return report
