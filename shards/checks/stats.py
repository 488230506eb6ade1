"""``python pipeline.py stats``: ``stats.json``, the paper's Table 1 for this build, and figures.

Figures go to ``<root>/figures/``: ``examples.png`` (a grid of random crops, like Figure 2),
``crop_height.png``, ``aspect_ratio.png``, ``score.png``, ``per_city.png``, ``drop_reasons.png``.
Unreadable inputs end in one line naming the file; on a root it cannot write to, Table 1 is still
printed and the command fails with one line naming what it could not write. ``stats`` also writes
``<root>/report.html`` (:mod:`shards.checks.report`: Table 1, example boxes per detection status,
the figures, per-video counts, ``dets_report.json``) with its images in ``<root>/report_files/``,
and ``<root>/DATASHEET.md`` (:mod:`shards.checks.datasheet`: Gebru et al.'s seven sections, answered
from the workspace where it can, the rest marked for the maintainer).

``write_stats`` is the one writer of ``stats.json``: ``build-shards`` calls it after a build (no
figures), ``stats`` calls it with the figures it drew (the same content plus a ``figures`` key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.atomic import write_json, write_text
from common.errors import UsageError
from common.manifests import samples as samples_file
from shards.checks.box_tally import tally
from shards.checks.datasheet import write_datasheet
from shards.checks.figures import write_figures
from shards.checks.report import write_report
from shards.checks.table1 import dataset_stats, table1
from shards.settings import StatsSettings


def write_stats(
    root: Path, figures: dict[str, str] | None = None, report: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``<root>/stats.json``: ``dataset_stats`` of the root, plus ``figures`` when given.

    ``report`` is ``dataset_stats(root)`` when the caller has already computed it (``stats`` draws
    the figures from it first). Returns what was written.
    """
    root = Path(root)
    report = dataset_stats(root) if report is None else report
    if figures is not None:
        report["figures"] = figures
    write_json(root / "stats.json", report)
    return report


def stats(cfg: StatsSettings, root: Path) -> dict[str, Any]:
    """Compute the statistics, draw the figures, print Table 1; return the headline figures."""
    root = Path(root)
    samples = samples_file.read(root / "shards")
    counted = tally(root)  # the box files, read once for stats.json and the page
    report = dataset_stats(root, samples, counted)
    table = table1(report)
    try:
        figures = write_figures(report, samples, root, cfg.grid_size, cfg.seed)
        write_stats(root, figures, report)
        write_text(root / "figures" / "table1.txt", table + "\n")
        page = write_report(root, report, figures, samples, cfg.seed, cfg.report_examples, counted=counted)
        sheet = write_datasheet(root, report)
    except OSError as e:  # a read-only or full root; reading errors are UsageErrors already
        print(table, flush=True)
        where = e.filename or root
        raise UsageError(
            f"could not write {where} ({e.strerror or e}): stats.json and figures/ not written"
        ) from None
    print(table, flush=True)
    for note in report["notes"]:
        print(f"note: {note}", flush=True)
    keep = (
        "source",
        "images",
        "videos",
        "cities",
        "estimated_persons",
        "crop_width",
        "crop_height",
        "shards",
    )
    summary = {k: report[k] for k in keep}
    summary["failed"] = report["failed"]
    summary["figures"] = {k: v if v.startswith("skipped") else Path(v).name for k, v in figures.items()}
    summary["report"] = str(page)
    summary["datasheet"] = str(sheet)
    return {k: ("-" if v is None else v) for k, v in summary.items()}
