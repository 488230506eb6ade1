"""The ``calibration`` part of ``dets_report.json`` (present only when ``--calibrate detector`` ran).

Keys (for readers such as ``stats``)::

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

from collections import Counter
from typing import Any

from shards.release import calibrate_video

OUTCOMES = ("verified", "unverified", "mismatch", "not_run")
KEYS = ("outcome", "why", "scale", "offset", "agreement", "runner_up", "offset_runner_up", "shift_votes")
KEYS += ("frames", "boxes", "frame_size", "detector")


def video_entry(context: dict[str, Any]) -> dict[str, Any]:
    """One downloaded video's calibration: the stored result (``not_run`` when there is none), measured
    again when the stored file was damaged or edited since (a rerun of a finished build)."""
    result = calibrate_video.cached(context)
    if result is None and calibrate_video.cache_path(context).exists():
        try:
            result = calibrate_video.calibrate(context)
        except OSError as e:
            why = f"the stored calibration is damaged and the video cannot be read: {type(e).__name__}: {e}"
            return {"vname": context["vname"], "outcome": "not_run", "why": why, "cut_with": None}
    if result is None:
        return {"vname": context["vname"], "outcome": "not_run", "why": "no usable box", "cut_with": None}
    entry = {"vname": context["vname"], **{k: result.get(k) for k in KEYS}}
    return entry | {"cut_with": calibrate_video.cut_with(context, result)}


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
        "outcomes": {k: counts.get(k, 0) for k in OUTCOMES},
        "rescaled": sum(v["scale"] != 1 for v in verified),
        "shifted": sum(v["offset"] != 0 for v in verified),
        "cut_unverified": sum(v["outcome"] != "verified" and v["cut_with"] is not None for v in videos),
        "videos": videos,
    }
