"""The regeneration report of ``build-shards --from-dets``: videos listed / downloaded / unavailable,
videos cut, crops expected / written, each by reason. Written to ``<root>/dets_report.json``.

Top-level keys: ``source``, ``videos`` and ``crops`` (the figures; ``videos.not_cut`` and
``crops.not_written`` count by status, e.g. ``unverified`` and ``mismatch`` from calibration),
``videos_not_cut`` and ``videos_with_failed_crops`` (per video: vname, status, reason, boxes,
written, failed by status), ``malformed_entries``, and -- only when videos were calibrated --
``calibration`` (per video: chosen scale and offset, agreement of the winner and the runner-ups,
the frames used; totals by outcome), described in :mod:`shards.release.calibrate_report`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.atomic import write_json
from shards.release.calibrate_report import calibration_part
from shards.write.items import Task

REPORT = "dets_report.json"


def _counts(values) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(Counter(values).items())}


def listing(root: Path) -> dict[str, Any]:
    """The videos ``crawl --from-vnames`` listed in ``videos.parquet``, by download status."""
    import pandas as pd

    videos = pd.read_parquet(root / "videos.parquet", columns=["vname", "status"])
    listed = videos[videos["vname"].notna()]
    statuses = listed["status"].astype(str)
    return {
        "listed": len(listed),
        "downloaded": int((statuses == "ok").sum()),
        "unavailable": _counts(statuses[statuses != "ok"]) or 0,
        "vnames": set(listed["vname"].astype(str)),
    }


class VideoCounts:
    """Per video of the detections (``source_id``, the vname): crops by status, whether a written
    crop was rescaled, and the first reason of each failure status (samples.parquet is in key order)."""

    def __init__(self) -> None:
        self.by_status: dict[str, Counter[str]] = defaultdict(Counter)
        self.rescaled: set[str] = set()
        self.first_reason: dict[tuple[str, str], str] = {}

    def add(self, rows) -> None:
        """Count dets rows (``source_id``, ``status``, ``reason``) of samples.parquet."""
        for (vname, status), n in rows.groupby(["source_id", "status"], sort=False).size().items():
            self.by_status[vname][status] += int(n)
        ok = rows["status"] == "ok"
        self.rescaled.update(rows.loc[ok & rows["reason"].str.startswith("boxes rescaled"), "source_id"])
        firsts = rows[~ok].drop_duplicates(["source_id", "status"])
        for vname, status, reason in zip(
            firsts["source_id"], firsts["status"], firsts["reason"], strict=True
        ):
            self.first_reason.setdefault((vname, status), reason)

    def crops(self) -> Counter[str]:
        """Every dets crop counted by status."""
        return sum(self.by_status.values(), Counter())


def video_counts(samples) -> VideoCounts:
    """The dets rows of ``samples`` (``shards/samples.parquet``), counted per video (:class:`VideoCounts`)."""
    counts = VideoCounts()
    counts.add(samples.loc[samples["source"] == "dets", ["source_id", "status", "reason"]])
    return counts


def video_outcome(context: dict[str, Any], counts: VideoCounts) -> dict[str, Any]:
    """One video of the detections: status (``ok`` when at least one crop was written), crops, reason."""
    vname = context["vname"]
    statuses = counts.by_status.get(vname, Counter())
    failed = {s: n for s, n in sorted(statuses.items()) if s != "ok"}
    outcome = {
        "vname": vname,
        "boxes": context["boxes"],
        "written": statuses.get("ok", 0),
        "failed": failed,
        "rescaled": vname in counts.rescaled,
        "malformed_entries": len(context["malformed"]),
    }
    if context["status"] != "ok":
        return outcome | {"status": context["status"], "reason": context["reason"]}
    if outcome["written"]:
        return outcome | {"status": "ok", "reason": ""}
    if not failed:
        return outcome | {"status": "no_boxes", "reason": "the detections list no box for this video"}
    top = min(failed, key=lambda s: (-failed[s], s))  # the most crops; a tie: the first by name
    return outcome | {"status": top, "reason": counts.first_reason[vname, top]}


def write_report(root: Path, source: str, tasks: Sequence[Task], samples) -> dict[str, Any]:
    """Write ``dets_report.json`` from the plan's contexts and ``samples`` (``shards/samples.parquet``
    as a DataFrame); return its figures (without the per-video lists)."""
    contexts = list({id(t.context): t.context for t in tasks}.values())
    counts = video_counts(samples)
    crops = counts.crops()
    outcomes = [video_outcome(c, counts) for c in contexts]
    listed = listing(root)
    statuses = Counter(o["status"] for o in outcomes)
    figures = {
        "videos": {
            "listed": listed["listed"],
            "downloaded": listed["downloaded"],
            "unavailable": listed["unavailable"],
            "in_dets": len(outcomes),
            "listed_without_dets": len(listed["vnames"] - {o["vname"] for o in outcomes}),
            "cut": statuses.get("ok", 0),
            "rescaled": sum(o["rescaled"] for o in outcomes),
            "not_cut": {s: n for s, n in sorted(statuses.items()) if s != "ok"} or 0,
        },
        "crops": {
            "expected": sum(crops.values()),
            "written": crops.get("ok", 0),
            "not_written": {s: n for s, n in sorted(crops.items()) if s != "ok"} or 0,
            "malformed_entries": sum(o["malformed_entries"] for o in outcomes),
            "duplicate_boxes": sum(c["duplicates"] for c in contexts),
        },
    }
    report = {
        "source": source,
        **figures,
        "videos_not_cut": [o for o in outcomes if o["status"] != "ok"],
        "videos_with_failed_crops": [o for o in outcomes if o["status"] == "ok" and o["failed"]],
        "malformed_entries": {c["vname"]: c["malformed"] for c in contexts if c["malformed"]},
    }
    calibration = calibration_part(contexts)
    if calibration is not None:
        report["calibration"] = calibration
        figures["calibration"] = calibration["outcomes"]
    write_json(root / REPORT, report)
    return figures
