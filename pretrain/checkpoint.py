"""Checkpoints (written atomically, newest kept) and the exported torchvision backbone."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.atomic import atomic_path
from common.errors import UsageError

log = logging.getLogger(__name__)
PATTERN = re.compile(r"step_(\d{8})\.pt$")

# Settings that may change between a run and its resumption; any other change is refused.
RESUMABLE_CHANGES = {
    "shards",
    "gpus",
    "nnodes",
    "node_rank",
    "master_addr",
    "master_port",
    "workers",
    "cpu_threads",
    "shuffle_buffer",
    "bf16",
    "channels_last",
    "compile",
    "gpu_augment",
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "max_steps",
    "device",
}


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream of this process."""
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "augment": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    generator.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PATTERN.search(p.name))


def save_checkpoint(folder: Path, state: dict[str, Any], keep: int) -> Path:
    """Write ``step_<step>.pt`` atomically, then delete all but the newest ``keep``."""
    path = folder / f"step_{state['step']:08d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest(folder: Path) -> dict[str, Any] | None:
    """The newest checkpoint that loads (an unreadable one is reported and the next older tried)."""
    for path in reversed(checkpoints(folder)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # a damaged file: fall back to the previous checkpoint
            log.warning("checkpoint %s unreadable (%s); trying an older one", path, e)
            continue
        state["path"] = str(path)
        return state
    return None


def check_compatible(saved: dict[str, Any], current: dict[str, Any], folder: Path) -> None:
    """Refuse to resume a run whose training-defining settings changed."""
    for key, value in current.items():
        if key in RESUMABLE_CHANGES or key not in saved:
            continue
        if saved[key] != value:
            raise UsageError(
                f"checkpoints in {folder} were made with {key}={saved[key]!r}, not {value!r}: "
                "use another --run-name or the same settings"
            )


def export_backbone(backbone: torch.nn.Module, path: Path) -> Path:
    """Save the query backbone as a torchvision ResNet state dict without ``fc.*``.

    ``torchvision.models.<arch>()`` loads it with ``strict=False``; the only missing keys are
    ``fc.weight`` and ``fc.bias`` (pre-training has no classifier).
    """
    state = {k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path
