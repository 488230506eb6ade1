"""Pick the sample source of a build and run its tasks (in a worker or in-process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.errors import UsageError
from shards.items import Result, Task
from shards.settings import ShardSettings


def plan(cfg: ShardSettings, root: Path) -> tuple[str, list[Task], dict[str, Any]]:
    """``(source name, tasks in sorted key order, counts)`` for the settings' source."""
    if cfg.from_images and cfg.from_lmdb:
        raise UsageError("give --from-images or --from-lmdb, not both")
    if cfg.from_images:
        from shards import from_images

        return ("images", *from_images.plan(cfg.from_images))
    if cfg.from_lmdb:
        from shards import from_lmdb

        return ("lmdb", *from_lmdb.plan(cfg.from_lmdb))
    from shards import from_detections

    return ("detections", *from_detections.plan(root))


def run_task(task: Task, quality: int) -> list[Result]:
    """Results of one task, one per item, in item order."""
    if task.kind == "images":
        from shards.from_images import run
    elif task.kind == "lmdb":
        from shards.from_lmdb import run
    elif task.kind == "detections":
        from shards.from_detections import run
    else:
        raise ValueError(f"unknown task kind {task.kind!r}")
    return run(task, quality)
