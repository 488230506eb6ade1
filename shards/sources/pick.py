"""Pick the sample source of a build and run its tasks: ``run_job`` is the function the writer's
workers run (this module is what the local workers preload)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shards.release import import_dets, import_lmdb
from shards.settings import ShardSettings
from shards.sources import detections, images
from shards.write.faces import Encoding
from shards.write.items import Result, Task

RUNNERS = {
    "images": images.run,
    "lmdb": import_lmdb.run,
    "detections": detections.run,
    "dets": import_dets.run,
}


def plan(
    cfg: ShardSettings, root: Path, spill: Path | None = None
) -> tuple[str, Sequence[Task], dict[str, Any]]:
    """``(source name, tasks in sorted key order, counts)`` for the settings' source; ``spill``:
    where the per-crop sources (images, LMDB) keep their plan (a temporary folder when ``None``)."""
    if cfg.from_images:
        return ("images", *images.plan(cfg.from_images, cfg.tracklet_pattern, spill))
    if cfg.from_lmdb:
        return ("lmdb", *import_lmdb.plan(cfg.from_lmdb, spill))
    if cfg.from_dets:
        return ("dets", *import_dets.plan(cfg.from_dets, root, cfg.dets_size, cfg.calibrated()))
    return ("detections", *detections.plan(root))


def run_job(job: tuple[Task, Encoding]) -> list[Result]:
    """The results of one ``(task, encoding)`` job, one per item, in item order: a one-argument,
    module-level function, as Ray tasks and the local pool both need."""
    task, encoding = job
    if task.kind not in RUNNERS:
        raise ValueError(f"unknown task kind {task.kind!r}")
    return RUNNERS[task.kind](task, encoding)
