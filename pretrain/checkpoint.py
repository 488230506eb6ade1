"""What a run leaves on disk: its checkpoints, the exported backbone with its card, and
``finished.json``.

Checkpoints are written atomically with a sha256 sidecar, the newest kept. A checkpoint holds
tensors and plain Python values only, so it loads with ``torch.load(weights_only=True)``: a file
that would need more (a pickle that could run code) is refused with one line naming it. A file
whose bytes differ from its ``.sha256`` sidecar is damaged: it is reported and the next older
checkpoint used; when none is usable the resume is refused rather than silently restarted from
step 0.

The backbone: ``backbone.pth`` (``export_backbone``: the query backbone as a torchvision state
dict) and, beside it, ``backbone.json`` (``common.backbone_card``) with what ``backbone_card``
says of the run.

``runs/<name>/finished.json``: the record of a completed run, so that rerunning it changes nothing.
Written last, after ``backbone.pth`` and the loss curve: the step, the checkpoint the outputs
came from (name and sha256), the backbone's sha256, the settings and the summary. A rerun whose
settings reach no further than that step, whose newest checkpoint is still that one and whose
backbone still has that hash is finished: it returns the recorded summary and writes nothing.
Anything else (a kill before the record, more steps asked for, a damaged backbone) runs on and
exports again from the newest good checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.atomic import write_json
from common.backbone_card import card_path
from common.errors import UsageError
from common.integrity import Damaged, checked_digest, recorded_digest, sha256_file, sidecar, write_checked
from common.normalisation import Normalisation
from common.provenance import project_commit
from common.resume import check_resume_settings
from common.safe_load import NotATorchFile, load_tensors_only, save_torch
from pretrain.settings import Recipe

log = logging.getLogger(__name__)
PATTERN = re.compile(r"step_(\d{8})\.pt$")
NAMES = re.compile(r"step_\d{8}\.pt(\.sha256)?")  # the checkpoints this module writes (stale temporaries)

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
    "gpu_decode",
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "max_steps",
    "device",
}


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream of this process, as tensors and plain values (``weights_only``-safe)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "augment": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    generator.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PATTERN.search(p.name))


def save_checkpoint(folder: Path, state: dict[str, Any], keep: int) -> tuple[Path, str]:
    """Write ``step_<step>.pt`` (and its sidecar) atomically, then delete all but the newest
    ``keep``; the path and its sha256."""
    path = folder / f"step_{state['step']:08d}.pt"
    digest = write_checked(path, lambda tmp: save_torch(state, tmp))
    for old in checkpoints(folder)[:-keep]:
        try:
            old.unlink(missing_ok=True)
        finally:  # a Ctrl-C between the two leaves no sidecar without its file
            sidecar(old).unlink(missing_ok=True)
    return path, digest


def load_weights_only(path: Path) -> Any:
    """``common.safe_load.load_tensors_only``: ``UsageError`` for a file that needs more than
    tensors and plain values, ``Damaged`` for one that does not load."""
    try:
        return load_tensors_only(path, "checkpoint")
    except NotATorchFile as e:
        raise Damaged(e.reason) from None


def load_latest(folder: Path) -> dict[str, Any] | None:
    """The newest checkpoint whose bytes match its sidecar (its ``path`` and ``sha256`` added).

    A damaged one is reported and the next older tried; None when the folder holds none;
    ``UsageError`` when every one is damaged or one needs more than ``weights_only``.
    """
    problems = []
    for path in reversed(checkpoints(folder)):
        try:
            digest = checked_digest(path)
            state = load_weights_only(path)
            if not isinstance(state, dict) or "step" not in state:
                raise Damaged("not a pretrain checkpoint")
        except Damaged as e:
            log.warning("checkpoint %s is damaged (%s): trying an older one", path, e)
            problems.append(f"{path.name}: {e}")
            continue
        state["path"], state["sha256"] = str(path), digest
        return state
    if problems:
        shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        raise UsageError(
            f"no usable checkpoint in {folder} ({shown}): move that folder away to start the run over"
        )
    return None


def check_compatible(saved: dict[str, Any], current: dict[str, Any], folder: Path) -> None:
    """Refuse to resume a run whose training-defining settings changed."""
    check_resume_settings(
        saved,
        current,
        RESUMABLE_CHANGES,
        made_with=f"checkpoints in {folder} were made with",
        fix="use another --run-name or the same settings",
        missing_ok=True,
    )


def export_backbone(backbone: torch.nn.Module, path: Path) -> Path:
    """Save the query backbone as a torchvision ResNet state dict without ``fc.*``.

    ``torchvision.models.<arch>()`` loads it with ``strict=False``; the only missing keys are
    ``fc.weight`` and ``fc.bias`` (pre-training has no classifier).
    """
    state = {k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
    write_checked(path, lambda tmp: save_torch(state, tmp))  # equal weights, equal bytes
    return path


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


NAME = "finished.json"


def planned_stop(cfg: Any, samples: int) -> int:
    """The step a run with settings ``cfg`` over ``samples`` images ends at (0 when it cannot run)."""
    steps = (cfg.epoch_size or samples) // cfg.batch_size
    total = cfg.epochs * steps
    return total if cfg.max_steps is None else min(total, cfg.max_steps)


def record_finished(
    run_dir: Path, checkpoint: Path, checkpoint_sha256: str, summary: dict[str, Any], settings: dict[str, Any]
) -> None:
    """Write ``finished.json`` for outputs exported from ``checkpoint``."""
    write_json(
        run_dir / NAME,
        {
            "step": summary["steps"],
            "checkpoint": checkpoint.name,
            "checkpoint_sha256": checkpoint_sha256,
            "backbone_sha256": sha256_file(run_dir / "backbone.pth"),
            "settings": settings,
            "summary": summary,
        },
    )


def finished_summary(run_dir: Path, stop: int, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded summary when the run in ``run_dir`` is finished for ``stop``, else None.

    ``UsageError`` (``check_compatible``) when it finished with other training settings.
    """
    path = run_dir / NAME
    if stop < 1 or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        step, name, digest = int(record["step"]), record["checkpoint"], record["checkpoint_sha256"]
        backbone_digest, saved, summary = record["backbone_sha256"], record["settings"], record["summary"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s unreadable (%s): finishing the run again", path, type(e).__name__)
        return None
    newest = checkpoints(run_dir / "checkpoints")
    if step < stop or not newest or newest[-1].name != name or recorded_digest(newest[-1]) != digest:
        return None
    backbone = run_dir / "backbone.pth"
    if not backbone.is_file() or sha256_file(backbone) != backbone_digest:
        log.warning("%s is not the backbone %s recorded: exporting it again", backbone, path)
        return None
    if not card_path(backbone).is_file():
        log.warning("%s has no %s: exporting it again", backbone, card_path(backbone).name)
        return None
    check_compatible(saved, settings, run_dir / "checkpoints")
    return summary
