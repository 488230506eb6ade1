"""Unit tests at every boundary of the person validity rules and the video filter decisions."""

from __future__ import annotations

import numpy as np
import pytest

from detect.person_rules import HEAD, LOWER_BODY, UPPER_BODY, PersonRules, person_reason
from filter.probe import Probe, probe_positions
from filter.settings import FilterSettings
from filter.videos import decide
from filter.vr import is_equirectangular, title_keyword, vr_signal

RULES = PersonRules()


def keypoints(visible: set[int], conf: float = 0.9, hidden: float = 0.1) -> np.ndarray:
    """17 x (x, y, conf) with ``conf`` on the ``visible`` joints and ``hidden`` elsewhere."""
    kps = np.zeros((17, 3), dtype=np.float32)
    kps[:, 2] = hidden
    kps[list(visible), 2] = conf
    return kps.ravel()


ALL = set(range(17))


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.72, "low_score"),
        (np.float32(0.72), "low_score"),  # as a detector gives it and detections/ stores it
        (np.nextafter(np.float32(0.72), np.float32(1)), "ok"),
        (0.7199, "low_score"),
        (0.0, "low_score"),
    ],
)
def test_score_boundary(score, expected):
    assert person_reason(0, 0, 60, 150, score, None, RULES) == expected


@pytest.mark.parametrize(("width", "expected"), [(48.0, "too_narrow"), (48.001, "ok"), (47.9, "too_narrow")])
def test_width_boundary(width, expected):
    # height 2.5 x width keeps the aspect rule satisfied on both sides
    assert person_reason(10, 20, 10 + width, 20 + 2.5 * width, 0.9, None, RULES) == expected


@pytest.mark.parametrize(
    ("height", "expected"),
    [
        (90.0, "bad_aspect"),
        (90.01, "ok"),
        (299.99, "ok"),
        (300.0, "bad_aspect"),
        (50.0, "bad_aspect"),
        (400.0, "bad_aspect"),
    ],
)
def test_aspect_boundaries(height, expected):
    # width 60: aspect exactly 1.5 at height 90 and exactly 5 at height 300
    assert person_reason(0, 0, 60, height, 0.9, None, RULES) == expected


def test_box_rules_come_first_and_in_order():
    assert person_reason(0, 0, 40, 40, 0.5, keypoints(set()), RULES) == "low_score"
    assert person_reason(0, 0, 40, 40, 0.9, keypoints(set()), RULES) == "too_narrow"
    assert person_reason(0, 0, 60, 60, 0.9, keypoints(set()), RULES) == "bad_aspect"
    assert person_reason(0, 0, 60, 150, 0.9, keypoints(set()), RULES) == "no_head"


@pytest.mark.parametrize("head", HEAD)
@pytest.mark.parametrize("upper", UPPER_BODY)
@pytest.mark.parametrize("lower", LOWER_BODY)
def test_any_one_joint_of_each_part_suffices(head, upper, lower):
    assert person_reason(0, 0, 60, 150, 0.9, keypoints({head, upper, lower}), RULES) == "ok"


@pytest.mark.parametrize(
    ("missing", "reason"),
    [(set(HEAD), "no_head"), (set(UPPER_BODY), "no_upper_body"), (set(LOWER_BODY), "no_lower_body")],
)
def test_each_body_part_rule(missing, reason):
    assert person_reason(0, 0, 60, 150, 0.9, keypoints(ALL - missing), RULES) == reason


def test_ankles_and_arms_do_not_count_as_lower_body_or_head():
    visible = ALL - set(LOWER_BODY)  # ankles 15, 16 and wrists stay visible
    assert person_reason(0, 0, 60, 150, 0.9, keypoints(visible), RULES) == "no_lower_body"


@pytest.mark.parametrize(("conf", "expected"), [(0.3, "no_head"), (0.30001, "ok"), (0.2, "no_head")])
def test_keypoint_visibility_boundary(conf, expected):
    kps = keypoints(ALL - set(HEAD))
    kps.reshape(17, 3)[0, 2] = conf  # the nose alone decides the head rule
    assert person_reason(0, 0, 60, 150, 0.9, kps, RULES) == expected


def test_keypoints_none_skips_body_rules():
    assert person_reason(0, 0, 60, 150, 0.9, None, RULES) == "ok"
    assert person_reason(0, 0, 60, 150, 0.9, keypoints(set()), RULES) == "no_head"


# --- video filter decisions -------------------------------------------------------------------

CFG = FilterSettings()


def probe(**kw) -> Probe:
    base = dict(n_frames=500, fps=25.0, width=640, height=360, static_diff=10.0, hashes=["0"] * 5)
    base.update(kw)
    return Probe(**base)


@pytest.mark.parametrize(("n", "expected"), [(99, "too_short"), (100, "ok"), (0, "too_short")])
def test_min_frames_boundary(n, expected):
    assert decide(probe(n_frames=n), None, CFG)[0] == expected


@pytest.mark.parametrize(
    ("diff", "expected"), [(1.0, "static"), (1.0001, "ok"), (0.0, "static"), (0.99, "static")]
)
def test_static_tolerance_boundary(diff, expected):
    assert CFG.static_tolerance == 1.0
    assert decide(probe(static_diff=diff), None, CFG)[0] == expected


def test_decision_order():
    assert decide(probe(error="truncated", n_frames=10), "360 walk", CFG)[0] == "unreadable"
    assert decide(probe(n_frames=10, static_diff=0.0), "360 walk", CFG)[0] == "too_short"
    assert decide(probe(static_diff=0.0), "360 walk", CFG) == ("vr", "title:360")
    assert decide(probe(static_diff=0.0, vr_metadata="spherical"), None, CFG) == ("vr", "metadata:spherical")


@pytest.mark.parametrize(
    ("title", "hit"),
    [
        ("Tokyo 360° walk", "360"),
        ("VR street tour", "vr"),
        ("Paris 4K 3D SBS", "3d sbs"),
        ("virtual reality Rome", "virtual reality"),
        ("1360p walk", None),
        ("Avril in Paris", None),
        ("NYC walk 4K", None),
        (None, None),
    ],
)
def test_vr_title_keywords(title, hit):
    assert title_keyword(title, CFG.vr_title_keywords) == hit


@pytest.mark.parametrize(
    ("w", "h", "vr"),
    [(3840, 1920, True), (5760, 2880, True), (1920, 1080, False), (1920, 1000, False), (0, 0, False)],
)
def test_vr_equirectangular_shape(w, h, vr):
    assert is_equirectangular(w, h) == vr
    assert (vr_signal(None, w, h, "walk", CFG.vr_title_keywords) == "aspect 2:1") == vr


@pytest.mark.parametrize(("n", "positions"), [(1394, [0, 348, 696, 1045, 1393]), (3, [0, 1, 2]), (1, [0])])
def test_probe_positions_evenly_spaced(n, positions):
    assert probe_positions(n, 5) == positions
