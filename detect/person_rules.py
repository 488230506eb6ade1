"""Which detected person boxes are valid training crops: the paper's §3.1 rules as one pure function.

A box is kept when (§3.1, "Person detection") its detection score is > 0.72, it is wider than 48
pixels, 1.5 < height/width < 5, and HRNet keypoints show the head and the upper body and at least
part of the lower body. Every threshold is strict: a value exactly on a boundary is rejected.
Comparisons are made in float32, the precision in which detectors give and ``detections/`` stores
boxes and scores, so a score stored as 0.72 is rejected like the exact value.

Example::

    >>> person_reason(10, 10, 60, 160, 0.9, None, PersonRules())
    'ok'
    >>> person_reason(10, 10, 58, 160, 0.9, None, PersonRules())
    'too_narrow'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# COCO keypoint order: 0 nose, 1-2 eyes, 3-4 ears, 5-6 shoulders, 7-8 elbows, 9-10 wrists,
# 11-12 hips, 13-14 knees, 15-16 ankles.
HEAD = (0, 1, 2, 3, 4)
UPPER_BODY = (5, 6)
LOWER_BODY = (11, 12, 13, 14)
NUM_KEYPOINTS = 17

BOX_REASONS = ("low_score", "too_narrow", "bad_aspect")


@dataclass(frozen=True)
class PersonRules:
    """Thresholds of the validity rules; defaults are the paper's (§3.1)."""

    min_score: float = 0.72  # detection score must be > this
    min_width: float = 48.0  # box width (px) must be > this
    min_aspect: float = 1.5  # height / width must be > this
    max_aspect: float = 5.0  # ... and < this
    keypoint_threshold: float = 0.3  # a keypoint is visible when its confidence is > this


def box_reason(x1: float, y1: float, x2: float, y2: float, score: float, rules: PersonRules) -> str:
    """The first box rule (score, width, aspect) that fails, or ``"ok"``."""
    f32 = np.float32
    width, height = f32(x2) - f32(x1), f32(y2) - f32(y1)
    if not f32(score) > f32(rules.min_score):
        return "low_score"
    if not width > f32(rules.min_width):
        return "too_narrow"
    if not f32(rules.min_aspect) < height / width < f32(rules.max_aspect):
        return "bad_aspect"
    return "ok"


def keypoint_reason(keypoints: Sequence[float] | np.ndarray, threshold: float) -> str:
    """The first body-part rule that fails on COCO keypoints (17 x (x, y, conf)), or ``"ok"``."""
    conf = np.asarray(keypoints, dtype=np.float32).reshape(NUM_KEYPOINTS, 3)[:, 2]
    visible = conf > np.float32(threshold)
    if not visible[list(HEAD)].any():
        return "no_head"
    if not visible[list(UPPER_BODY)].any():
        return "no_upper_body"
    if not visible[list(LOWER_BODY)].any():
        return "no_lower_body"
    return "ok"


def person_reason(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    score: float,
    keypoints: Sequence[float] | np.ndarray | None,
    rules: PersonRules,
) -> str:
    """Why a box is not a valid person crop (one of ``common.manifests.boxes.STATUSES``), ``"ok"`` when it is.

    ``keypoints`` is None when keypoints were skipped (``--keypoints none``): only the box rules
    apply then. Box rules are checked first, so a box failing one never needs keypoints.
    """
    reason = box_reason(x1, y1, x2, y2, score, rules)
    if reason != "ok" or keypoints is None:
        return reason
    return keypoint_reason(keypoints, rules.keypoint_threshold)
