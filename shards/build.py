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
written, by reason).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from common.atomic import write_json
from shards import sources
from shards.settings import ShardSettings
from shards.table1 import dataset_stats
from shards.writer import write_shards

log = logging.getLogger(__name__)


def build_shards(cfg: ShardSettings, root: Path) -> dict[str, Any]:
    """Plan the samples of the chosen source, write the shards, then ``stats.json``."""
    root = Path(root).resolve()  # tasks carry absolute paths: Ray workers run elsewhere
    source, tasks, counts = sources.plan(cfg, root)
    if not tasks:
        log.warning("no samples to write from %s", source)
    settings = {
        "source": source,
        "max_samples": cfg.max_samples,
        "max_bytes": cfg.max_bytes,
        "jpeg_quality": cfg.jpeg_quality,
    }
    summary = write_shards(
        tasks,
        root / "shards",
        settings,
        sources.run_job,
        cfg.workers,
        cfg.jpeg_quality,
        cfg.engine,
        cfg.address,
    )
    stats = dataset_stats(root)
    write_json(root / "stats.json", stats)
    if source == "dets":
        import pandas as pd

        from shards.dets_report import write_report

        samples = pd.read_parquet(root / "shards" / "samples.parquet")
        report = write_report(root, cfg.from_dets, tasks, samples)
        return {"source": source, "engine": cfg.engine, **counts, **summary, "regenerate": report}
    return {"source": source, "engine": cfg.engine, **counts, **summary}
