"""The regeneration report of ``build-shards --from-dets``: videos listed / downloaded / unavailable,
videos cut, crops expected / written, each by reason. Written to ``<root>/dets_report.json``.

Top-level keys: ``source``, ``videos`` and ``crops`` (the figures; ``videos.not_cut`` and
``crops.not_written`` count by status, e.g. ``unverified`` and ``mismatch`` from calibration),
``videos_not_cut`` and ``videos_with_failed_crops`` (per video: vname, status, reason, boxes,
written, failed by status), ``malformed_entries``, and -- only when videos were calibrated --
``calibration`` (per video: chosen scale and offset, agreement of the winner and the runner-ups,
the frames used; totals by outcome).

The ``calibration`` part (present only when ``--calibrate detector`` ran), for readers such as ``stats``::

    "calibration": {
      "settings": {detector, weights, device, frames, height, min_agreement, min_margin,
                   rescale, cut_unverified},
      "outcomes": {"verified": n, "unverified": n, "mismatch": n, "not_run": n},
      "rescaled": n,        # verified videos cut at a scale other than 1
      "shifted": n,         # verified videos cut at a frame offset other than 0
      "cut_unverified": n,  # unverified / mismatch videos cut anyway (--cut-unverified)
      "videos": [{
        "vname", "outcome", "why",      # verified | unverified | mismatch | not_run
        "scale", "offset", "agreement", # the winner (scale: boxes x scale; frame = frame_id - 1 + offset)
        "runner_up": {"scale", "offset", "agreement"},         # the best other scale
        "offset_runner_up": {"scale", "offset", "agreement"},  # the best other offset at the winner's scale
        "shift_votes": [k, n],  # frames (of n) where the best non-zero offset beat offset 0 by the margin
        "frames", "boxes", "frame_size", "detector",           # released frame ids scored, boxes on them
        "cut_with": {"scale", "offset"} | null                 # null: nothing cut; scale null: as stated
      }, ...]                                                  # one per downloaded video, in vname order
    }

``not_run``: a downloaded video with no usable box (nothing to calibrate, nothing to cut), or
whose stored calibration was damaged when its video can no longer be read.
Agreement: mean over the scored boxes of the best IoU with a detection (:mod:`.calibrate`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.atomic import write_json
from shards.release import calibrate
from shards.write.items import Task

REPORT = "dets_report.json"


CALIBRATION_OUTCOMES = ("verified", "unverified", "mismatch", "not_run")
CALIBRATION_KEYS = (
    "outcome",
    "why",
    "scale",
    "offset",
    "agreement",
    "runner_up",
    "offset_runner_up",
    "shift_votes",
)
CALIBRATION_KEYS += ("frames", "boxes", "frame_size", "detector")


def video_entry(context: dict[str, Any]) -> dict[str, Any]:
    """One downloaded video's calibration: the stored result (``not_run`` when there is none), measured
    again when the stored file was damaged or edited since (a rerun of a finished build)."""
    result = calibrate.cached(context)
    if result is None and calibrate.cache_path(context).exists():
        try:
            result = calibrate.calibrate(context)
        except OSError as e:
            why = f"the stored calibration is damaged and the video cannot be read: {type(e).__name__}: {e}"
            return {"vname": context["vname"], "outcome": "not_run", "why": why, "cut_with": None}
    if result is None:
        return {"vname": context["vname"], "outcome": "not_run", "why": "no usable box", "cut_with": None}
    entry = {"vname": context["vname"], **{k: result.get(k) for k in CALIBRATION_KEYS}}
    return entry | {"cut_with": calibrate.cut_with(context, result)}


def calibration_part(contexts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The report's ``calibration`` entry, or ``None`` when no video was calibrated."""
    calibrated = sorted((c for c in contexts if "calibration" in c), key=lambda c: c["vname"])
    if not calibrated:
        return None
    settings = {k: v for k, v in calibrated[0]["calibration"].items() if k not in ("boxes", "cache")}
    videos = [video_entry(c) for c in calibrated]
    counts = Counter(v["outcome"] for v in videos)
    verified = [v for v in videos if v["outcome"] == "verified"]
    return {
        "settings": settings,
        "outcomes": {k: counts.get(k, 0) for k in CALIBRATION_OUTCOMES},
        "rescaled": sum(v["scale"] != 1 for v in verified),
        "shifted": sum(v["offset"] != 0 for v in verified),
        "cut_unverified": sum(v["outcome"] != "verified" and v["cut_with"] is not None for v in videos),
        "videos": videos,
    }


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
