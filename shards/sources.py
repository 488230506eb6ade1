"""Pick the sample source of a build and run its tasks (in a worker or in-process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.errors import UsageError
from shards.items import Result, Task
from shards.settings import ShardSettings


def plan(cfg: ShardSettings, root: Path) -> tuple[str, list[Task], dict[str, Any]]:
    """``(source name, tasks in sorted key order, counts)`` for the settings' source."""
    given = [name for name in ("from_images", "from_lmdb", "from_dets") if getattr(cfg, name)]
    if len(given) > 1:
        raise UsageError(f"give one of --from-images, --from-lmdb, --from-dets, not {' and '.join(given)}")
    if cfg.dets_size and not cfg.from_dets:
        raise UsageError("--dets-size applies to --from-dets only")
    if cfg.from_images:
        from shards import from_images

        return ("images", *from_images.plan(cfg.from_images))
    if cfg.from_lmdb:
        from shards import from_lmdb

        return ("lmdb", *from_lmdb.plan(cfg.from_lmdb))
    if cfg.from_dets:
        from shards import from_dets

        return ("dets", *from_dets.plan(cfg.from_dets, root, cfg.dets_size))
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
    elif task.kind == "dets":
        from shards.from_dets import run
    else:
        raise ValueError(f"unknown task kind {task.kind!r}")
    return run(task, quality)


def run_job(job: tuple[Task, int]) -> list[Result]:
    """``run_task(task, quality)`` of one ``(task, quality)`` pair: a one-argument, module-level
    function, as Ray tasks and the local pool both need."""
    task, quality = job
    return run_task(task, quality)
