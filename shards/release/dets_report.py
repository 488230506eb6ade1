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

from collections import Counter
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


def video_outcome(context: dict[str, Any], rows) -> dict[str, Any]:
    """One video of the detections: status (``ok`` when at least one crop was written), crops, reason."""
    ok = rows[rows["status"] == "ok"]
    bad = rows[rows["status"] != "ok"]
    outcome = {
        "vname": context["vname"],
        "boxes": context["boxes"],
        "written": len(ok),
        "failed": _counts(bad["status"]),
        "rescaled": bool(ok["reason"].str.startswith("boxes rescaled").any()),
        "malformed_entries": len(context["malformed"]),
    }
    if context["status"] != "ok":
        return outcome | {"status": context["status"], "reason": context["reason"]}
    if len(ok):
        return outcome | {"status": "ok", "reason": ""}
    if bad.empty:
        return outcome | {"status": "no_boxes", "reason": "the detections list no box for this video"}
    top = bad["status"].value_counts().index[0]
    return outcome | {"status": str(top), "reason": str(bad.loc[bad["status"] == top, "reason"].iloc[0])}


def write_report(root: Path, source: str, tasks: list[Task], samples) -> dict[str, Any]:
    """Write ``dets_report.json``; return its figures (without the per-video lists)."""
    contexts = list({id(t.context): t.context for t in tasks}.values())
    dets = samples[samples["source"] == "dets"]
    by_vname = dict(tuple(dets.groupby("source_id")))
    empty = dets.iloc[0:0]
    outcomes = [video_outcome(c, by_vname.get(c["vname"], empty)) for c in contexts]
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
            "expected": len(dets),
            "written": int((dets["status"] == "ok").sum()),
            "not_written": _counts(dets.loc[dets["status"] != "ok", "status"]) or 0,
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
