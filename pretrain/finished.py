"""``runs/<name>/finished.json``: the record of a completed run, so that rerunning it changes nothing.

Written last, after ``backbone.pth`` and the loss curve: the step, the checkpoint the outputs
came from (name and sha256), the backbone's sha256, the settings and the summary. A rerun whose
settings reach no further than that step, whose newest checkpoint is still that one and whose
backbone still has that hash is finished: it returns the recorded summary and writes nothing.
Anything else (a kill before the record, more steps asked for, a damaged backbone) runs on and
exports again from the newest good checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from common.atomic import write_json
from common.backbone_card import card_path
from common.integrity import recorded_digest, sha256_file
from pretrain.checkpoint import check_compatible, checkpoints

log = logging.getLogger(__name__)
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
