"""HRNet-W32 top-down pose model (COCO 17 keypoints, 256x192 input) without mmcv, loading mmpose's
checkpoints (Sun et al., CVPR 2019; the paper's keypoint model, §3.1).

timm's ``hrnet_w32`` built with ``features_only=True, feature_location=""`` has exactly the
parameter names of mmpose's HRNet backbone (mmpose's keys minus their ``backbone.`` prefix). Its
second feature map (32 channels, 1/4 resolution: the stage-4 highest-resolution branch) followed by
a 1x1 convolution holding mmpose's ``head.final_layer`` gives mmpose's heatmaps. timm also builds
the stage-4 fuse paths toward the lower resolutions of its last module, which mmpose omits
(``multiscale_output=False``) and this output does not use; they are the only tensors a checkpoint
may lack.

Checkpoints are read with ``torch.load(weights_only=True)`` only: a file that pickles other
objects is refused with one line (it could run code). mmpose names a published checkpoint
``<name>-<first 8 hex digits of its sha256>_<date>.pth`` (its ``tools/misc/publish_model.py``);
a file whose name carries such a tag (the default download among them) is checked against it
before it is loaded, so a damaged or substituted download is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from common.errors import UsageError
from common.integrity import sha256_file
from common.safe_load import load_tensors_only

NUM_KEYPOINTS = 17
HEAD_PREFIXES = ("head.final_layer.", "keypoint_head.final_layer.")  # mmpose 1.x, 0.x
MMPOSE_HASH_TAG = re.compile(r"-([0-9a-f]{8})_\d{8}\.pth$")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model: names the missing and unexpected keys."""


class HRNetW32Pose(nn.Module):
    """Crops (N, 3, 256, 192) -> heatmaps (N, 17, 64, 48). Random init; load weights with
    :func:`load_mmpose_checkpoint`.

    >>> HRNetW32Pose()(torch.zeros(1, 3, 256, 192)).shape
    torch.Size([1, 17, 64, 48])
    """

    def __init__(self, num_keypoints: int = NUM_KEYPOINTS) -> None:
        super().__init__()
        import timm

        self.backbone = timm.create_model(
            "hrnet_w32", pretrained=False, features_only=True, feature_location="", out_indices=(1,)
        )
        self.final_layer = nn.Conv2d(32, num_keypoints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)[0]  # N x 32 x H/4 x W/4
        return self.final_layer(features)  # N x K x H/4 x W/4


def unused_backbone_keys(model: HRNetW32Pose) -> set[str]:
    """Backbone keys of the last stage-4 module's fuse paths to branches 1-3 (not in mmpose)."""
    keys = model.backbone.state_dict().keys()
    last = max(int(m.group(1)) for k in keys if (m := re.match(r"stage4\.(\d+)\.", k)))
    pattern = re.compile(rf"stage4\.{last}\.fuse_layers\.[1-9]\d*\.")
    return {k for k in keys if pattern.match(k)}


def to_mmpose_state_dict(model: HRNetW32Pose) -> dict[str, torch.Tensor]:
    """The model's weights under mmpose 1.x names (``backbone.*``, ``head.final_layer.*``)."""
    unused = unused_backbone_keys(model)
    state = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items() if k not in unused}
    state.update({f"head.final_layer.{k}": v for k, v in model.final_layer.state_dict().items()})
    return state


def from_mmpose_state_dict(model: HRNetW32Pose, state: dict[str, torch.Tensor]) -> None:
    """Load mmpose-named weights; raise :class:`CheckpointError` listing what does not fit."""
    backbone, head, unexpected = {}, {}, []
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("backbone."):
            backbone[key.removeprefix("backbone.")] = value
        elif key.startswith(HEAD_PREFIXES):
            head[key.split("final_layer.", 1)[1]] = value
        else:
            unexpected.append(key)
    own_backbone = model.backbone.state_dict()
    unexpected += [f"backbone.{k}" for k in backbone if k not in own_backbone]
    missing = [
        f"backbone.{k}" for k in own_backbone if k not in backbone and k not in unused_backbone_keys(model)
    ]
    missing += [f"head.final_layer.{k}" for k in model.final_layer.state_dict() if k not in head]
    shapes = [
        f"{k} {tuple(v.shape)} != {tuple(own_backbone[k].shape)}"
        for k, v in backbone.items()
        if k in own_backbone and v.shape != own_backbone[k].shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            "not an mmpose HRNet-W32 COCO checkpoint: "
            + "; ".join(
                f"{len(items)} {what} ({', '.join(items[:4])}{', ...' if len(items) > 4 else ''})"
                for what, items in (
                    ("missing keys", missing),
                    ("unexpected keys", unexpected),
                    ("shape mismatches", shapes),
                )
                if items
            )
        )
    model.backbone.load_state_dict({k: v for k, v in backbone.items()}, strict=False)
    model.final_layer.load_state_dict(head)


def check_published_hash(path: str | Path) -> None:
    """``UsageError`` when ``path``'s name carries mmpose's sha256 tag and its bytes do not."""
    tag = MMPOSE_HASH_TAG.search(Path(path).name)
    if tag is None:
        return
    digest = sha256_file(path)
    if not digest.startswith(tag.group(1)):
        raise UsageError(
            f"pose weights: {path} has sha256 {digest[:8]}..., its name says {tag.group(1)}: "
            "a damaged or substituted download; delete it and run again"
        )


def read_mmpose_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an mmpose checkpoint file (``{"state_dict": ...}`` or a bare state dict).

    ``UsageError`` naming the file when its hash tag does not match, when it needs more than
    ``weights_only`` loading, or when it is not a torch file at all.
    """
    check_published_hash(path)
    ckpt = load_tensors_only(path, "pose weights")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state_dict of tensors inside")
    return state


def load_mmpose_checkpoint(model: HRNetW32Pose, path: str | Path) -> HRNetW32Pose:
    """Load an mmpose HRNet-W32 checkpoint file into ``model`` (in place) and return it."""
    from_mmpose_state_dict(model, read_mmpose_state(path))
    return model
