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

A run, top to bottom: plan the source's samples (``shards.sources.pick``), check the plan against
the root once (``shards.write.plan_guard.place``), write the shards and their tables
(``shards.write.writer``), then report: ``stats.json`` and ``dets_report.json`` from one reading of
``samples.parquet``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.manifests import samples as samples_file
from shards.checks.stats import write_stats
from shards.checks.table1 import dataset_stats
from shards.release import takedown
from shards.release.dets_report import REPORT, write_report
from shards.settings import ShardSettings
from shards.sources import pick
from shards.write import plan_guard
from shards.write.items import Task
from shards.write.task_file import plan_folder
from shards.write.writer import write_shards, writing

log = logging.getLogger(__name__)


def build_shards(cfg: ShardSettings, root: Path) -> dict[str, Any]:
    """Plan the samples of the chosen source, write the shards, then ``stats.json``.

    Shards of another plan are never deleted: the build is refused, or (``replace_shards``) the
    new plan is built in ``shards.next`` and swapped in when complete (``plan_guard``).
    A plan of one item per crop waits on disk in a temporary folder of the root, not in memory.
    """
    root = Path(root).resolve()  # tasks carry absolute paths: Ray workers run elsewhere
    takedown.finish_pending(root)  # one cut short: its crops must be out of the shards this reuses
    with plan_folder(root) as scratch:
        source, tasks, counts = pick.plan(cfg, root, scratch)
        if not tasks:
            log.warning("no samples to write from %s", source)
        plan = plan_guard.plan_record(cfg, root, source, tasks)
        with writing(root / "shards"):  # a full disk: one line naming the file and the free space
            out = plan_guard.place(root, plan, cfg.replace_shards)
            summary = write_shards(tasks, out, cfg, pick.run_job, scratch)
            if out.name == plan_guard.NEXT:
                plan_guard.swap_in(root)
                summary["replaced"] = True
        regenerate = write_reports(root, cfg, tasks)
    summary = {"source": source, "engine": cfg.engine, **counts, **summary}
    return summary if regenerate is None else {**summary, "regenerate": regenerate}


def write_reports(root: Path, cfg: ShardSettings, tasks: Sequence[Task]) -> dict[str, Any] | None:
    """``stats.json`` and, for ``--from-dets``, ``dets_report.json`` (its figures returned; else
    ``None``), both from one reading of ``shards/samples.parquet``; the streaming build ends with it too."""
    samples = samples_file.read(root / "shards")
    with writing(root / "stats.json"):
        write_stats(root, report=dataset_stats(root, samples))
    if not cfg.from_dets:
        return None
    with writing(root / REPORT):
        return write_report(root, cfg.from_dets, tasks, samples)
