"""The fine-tuning checkpoint: a plain dict, written atomically, that resumes a run or evaluates it.

Keys: ``kind`` ("finetune"), ``model`` (state dict: ``backbone.<torchvision key>`` + head),
``optimizer`` (None once training is over), ``epoch`` (epochs completed), ``step``, ``history`` (one dict per epoch),
``arch``, ``head``, ``num_classes``, ``last_stride``, ``height``, ``width``, ``settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from common.atomic import atomic_path
from common.errors import UsageError
from common.resume import check_resume_settings
from common.safe_load import save_torch
from finetune.backbone import build_resnet, read_checkpoint
from finetune.heads import build_model

# Settings that may change between a killed run and its rerun without changing the result.
RESUME_FREE = {"device", "workers", "eval_batch_size", "rerank", "run_name"}


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        save_torch(payload, tmp)


def check_resumable(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """``UsageError`` when a run folder holds a checkpoint made with other training settings."""
    check_resume_settings(
        saved,
        current,
        RESUME_FREE,
        made_with=f"{path} was trained with",
        fix="use another --run-name or delete that run",
        missing_ok=False,
    )


def build_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """The fine-tuned model (all heads' weights) described by a finetune checkpoint."""
    backbone = build_resnet(ckpt["arch"], ckpt["last_stride"])
    model = build_model(backbone, ckpt["head"], ckpt["num_classes"])
    model.load_state_dict(ckpt["model"])
    return model


def load_finetuned(path: str | Path, what: str = "weights") -> tuple[nn.Module, dict[str, Any]] | None:
    """``(model, checkpoint)`` when ``path`` is a finetune checkpoint, else ``None``."""
    ckpt = read_checkpoint(path, what)
    if not (isinstance(ckpt, dict) and ckpt.get("kind") == "finetune"):
        return None
    try:
        return build_from_checkpoint(ckpt), ckpt
    except (KeyError, RuntimeError) as e:
        raise UsageError(
            f"{path}: a finetune checkpoint that does not load ({e.__class__.__name__})"
        ) from None
