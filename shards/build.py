"""``python pipeline.py build-shards``: valid person crops -> WebDataset shards under ``<root>/shards``.

Outputs: ``shards/lup-NNNNNN.tar`` (samples ``<key>.jpg`` + ``<key>.json``), ``shards/index.parquet``
(shard, n_samples, bytes, sha256, first_key, last_key), ``shards/samples.parquet`` (every planned
item with status and reason) and ``stats.json`` (the paper's Table 1 figures).

    python pipeline.py build-shards                       # from filter + detect outputs
    python pipeline.py build-shards --from-images crops/  # a folder tree of person crops
    python pipeline.py build-shards --from-lmdb lup/      # the official LUPerson LMDB
    python pipeline.py build-shards --from-dets dets.pkl  # the released boxes, on crawl --from-vnames videos
    python pipeline.py build-shards --engine ray --address auto  # the same tasks on a Ray cluster

``--from-dets`` also writes ``dets_report.json`` (videos listed / downloaded / cut, crops expected /
written, by reason). On a root whose shards came from another plan (other inputs or settings) the
build is refused with one line naming what differs; ``--replace-shards`` builds the new plan beside
them and swaps it in only when complete. Crops a takedown removed (``python pipeline.py takedown``)
are never written again: they are recorded ``taken_down`` in samples.parquet.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shards.checks.stats import write_stats
from shards.release import takedown
from shards.release.dets_report import write_report
from shards.settings import ShardSettings
from shards.sources import pick
from shards.write import plan_guard, progress, replace
from shards.write.items import Task
from shards.write.task_file import count_items, plan_folder
from shards.write.writer import write_shards, writing

log = logging.getLogger(__name__)


def plan_record(
    cfg: ShardSettings, root: Path, settings: dict[str, Any], tasks: Sequence[Task]
) -> dict[str, Any]:
    """What ``shards/plan.json`` records: the fingerprint, and what a refusal names when it differs."""
    given = cfg.from_images or cfg.from_lmdb or cfg.from_dets
    shaping = {k: v for k, v in settings.items() if k != "source"}
    if cfg.dets_size:
        shaping["dets_size"] = cfg.dets_size
    if cfg.from_dets:
        shaping |= {
            k: v for k, v in dataclasses.asdict(cfg).items() if k.startswith(("calibrate", "cut_unverified"))
        }
    return {
        "fingerprint": progress.fingerprint(settings, tasks),
        "source": settings["source"],
        "input": str(Path(given).resolve() if given else root / "detections"),
        "settings": shaping,
        "items": count_items(tasks),
    }


def build_shards(cfg: ShardSettings, root: Path) -> dict[str, Any]:
    """Plan the samples of the chosen source, write the shards, then ``stats.json``.

    Shards of another plan are never deleted: the build is refused, or (``replace_shards``) the
    new plan is built in ``shards.next`` and swapped in when complete (``shards.write.replace``).
    A plan of one item per crop waits on disk in a temporary folder of the root, not in memory.
    """
    root = Path(root).resolve()  # tasks carry absolute paths: Ray workers run elsewhere
    takedown.finish_pending(root)  # one cut short: its crops must be out of the shards this reuses
    with plan_folder(root) as scratch:
        source, tasks, counts = pick.plan(cfg, root, scratch)
        if not tasks:
            log.warning("no samples to write from %s", source)
        settings = {
            "source": source,
            "max_samples": cfg.max_samples,
            "max_bytes": cfg.max_bytes,
            **cfg.encoding_plan(),
        }
        plan = plan_record(cfg, root, settings, tasks)
        with writing(root / "shards"):  # a full disk: one line naming the file and the free space
            summary = write_plan(cfg, root, tasks, settings, plan, scratch)
        with writing(root / "stats.json"):
            write_stats(root)
        if source == "dets":
            with writing(root / "dets_report.json"):
                report = write_report(root, cfg.from_dets, tasks)
            return {"source": source, "engine": cfg.engine, **counts, **summary, "regenerate": report}
    return {"source": source, "engine": cfg.engine, **counts, **summary}


def write_plan(
    cfg: ShardSettings,
    root: Path,
    tasks: Sequence[Task],
    settings: dict[str, Any],
    plan: dict[str, Any],
    scratch: Path | None = None,
) -> dict[str, Any]:
    """Write the plan's shards in ``root/shards``; or, when the root holds another plan's and
    ``replace_shards`` allows it, in ``shards.next``, swapped in when complete."""
    replace.recover(root)
    beside = plan_guard.check(root / "shards", plan, cfg.replace_shards, replace.staging(root))
    if not beside and replace.staging(root).is_dir():
        log.warning("%s holds an unfinished --replace-shards build of another plan", replace.staging(root))
    summary = write_shards(
        tasks,
        replace.staging(root) if beside else root / "shards",
        settings,
        pick.run_job,
        cfg.workers,
        cfg.encoding(),
        cfg.engine,
        cfg.address,
        plan=plan,
        discard_other=beside,
        scratch=scratch,
    )
    if beside:
        replace.swap_in(root)
        summary["replaced"] = True
    return summary
