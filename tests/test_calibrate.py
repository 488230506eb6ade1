"""Calibration's scoring and decision (shards/release/calibrate.py) on constructed boxes, the frame
choice and the settings; on real footage: ``test_calibrate_footage.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import SettingsError
from shards.release import calibrate
from shards.release.dets_input import Box
from shards.settings import Calibration, ShardSettings

RNG = np.random.default_rng(0)


def people(n: int, width: int = 1280, height: int = 720) -> np.ndarray:
    """``n`` person-shaped boxes inside a ``width`` x ``height`` frame."""
    h = RNG.uniform(0.2, 0.5, n) * height
    w = h / RNG.uniform(2, 3, n)
    x1, y1 = RNG.uniform(0, width - w), RNG.uniform(0, height - h)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1)


def scene(scale: float, offset: int, n_frames: int = 4, step: float = 40.0):
    """Released boxes at 1280x720 on frame ids 11, 21, ...; detections on a video ``scale`` times
    the size whose frame ``f - 1 + offset`` shows them; people move ``step`` px a frame."""
    boxes, dets = {}, {}
    for k in range(n_frames):
        f = 11 + 10 * k
        boxes[f] = people(3)
        for o in calibrate.OFFSETS:
            moved = boxes[f] + [step * (o - offset), 0, step * (o - offset), 0]
            dets[f - 1 + o] = np.clip(moved * scale, 0, None) + RNG.normal(0, 1, (3, 4))
    return boxes, dets


def test_scale_candidates_map_the_usual_heights_onto_the_video():
    scales = calibrate.scale_candidates((640, 360))
    assert 1.0 in scales and 0.5 in scales and round(360 / 1080, 6) in scales and 2.5 in scales
    # 16:9: the width ladder adds nothing (640/426 is 360/240's twin, kept as 1.5)
    assert scales == sorted(scales, reverse=True) and len(scales) == len(calibrate.HEIGHTS)
    assert 1.5 in scales and round(640 / 426, 6) not in scales
    assert round(500 / 1000, 6) in calibrate.scale_candidates((888, 500), stated=(1776, 1000))
    assert 1.0 in calibrate.scale_candidates((768, 432))  # not a usual height: scale 1 is still a candidate


@pytest.mark.parametrize(
    "size, release",
    [
        ((1920, 804), (1280, 536)),
        ((640, 268), (1920, 804)),
        ((720, 1280), (1080, 1920)),
        ((360, 640), (720, 1280)),
    ],
)
def test_scale_candidates_know_wide_and_portrait_renditions(size, release):
    """YouTube fits a video in a 16:9 box of its ladder: a film's long side is on the width ladder
    (1280x536 is its "720p"), a portrait video's short side on the height ladder."""
    scales = calibrate.scale_candidates(size)
    assert round(size[0] / release[0], 6) in scales
    assert all(not calibrate.twins(a, b) for a in scales for b in scales if a != b)


def test_a_stated_size_gives_its_scale_and_is_the_only_one_allowed():
    scales = calibrate.scale_candidates((1000, 419), stated=(1600, 670))  # neither side on a ladder
    stated = round(419 / 670, 6)  # by height; 1000/1600 is its twin
    assert stated in scales and round(1000 / 1600, 6) not in scales
    assert calibrate.allowed_scales(scales, (1000, 419), (1600, 670), rescale=True) == [stated]
    assert stated not in calibrate.scale_candidates((1000, 419))
    assert calibrate.allowed_scales(scales, (1000, 419), None, rescale=False) == [1.0]
    assert calibrate.allowed_scales(scales, (1000, 419), None, rescale=True) == scales


def test_best_iou():
    boxes = np.array([[0, 0, 10, 10], [100, 100, 110, 120]], float)
    dets = np.array([[0, 0, 10, 20, 0.9], [5, 0, 15, 10, 0.5]], float)
    assert calibrate.best_iou(boxes, dets).tolist() == [0.5, 0.0]
    assert calibrate.best_iou(boxes, np.zeros((0, 5))).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("scale, offset", [(1.0, 0), (0.5, 0), (0.5, -1), (1 / 3, 2), (1.5, 1)])
def test_the_true_geometry_wins(scale, offset):
    boxes, dets = scene(scale, offset)
    size = (round(1280 * scale), round(720 * scale))
    scales = calibrate.scale_candidates(size)
    table = calibrate.score_table(boxes, dets, scales, size)
    decision = calibrate.decide(table, scales, 0.4, 0.1, boxes=12)
    assert decision["outcome"] == "verified", decision
    assert (decision["scale"], decision["offset"]) == (round(scale, 6), offset)
    assert decision["agreement"] > 0.8 and decision["runner_up"]["agreement"] < 0.5


def test_scales_whose_boxes_leave_the_frame_are_not_scored():
    boxes, dets = scene(0.5, 0)
    table = calibrate.score_table(boxes, dets, [2.0, 1.0, 0.5], (640, 360), extent=[0, 0, 1280, 720])
    assert table[2.0, 0] is None and table[1.0, 0] is None and table[0.5, 0] > 0.8


def test_a_still_scene_keeps_offset_0():
    boxes, dets = scene(1.0, -1, step=0.5)  # people hardly move: neighbouring frames look alike
    table = calibrate.score_table(boxes, dets, [1.0, 0.5], (1280, 720))
    decision = calibrate.decide(table, [1.0, 0.5], 0.4, 0.1, boxes=12)
    assert decision["outcome"] == "verified" and decision["offset"] == 0
    assert decision["offset_runner_up"]["offset"] == -1  # the slightly better one, not taken


def test_one_noisy_frame_is_no_shift():
    boxes, dets = scene(1.0, 0, step=0.5)
    first = min(boxes)
    dets[first - 1] = dets[first - 1] + [60, 0, 60, 0]  # the detector missed on one frame at offset 0
    scales = [1.0, 0.5]
    frames = calibrate.frame_table(boxes, dets, scales, (1280, 720))
    table = calibrate.score_table(boxes, dets, scales, (1280, 720), frames=frames)
    assert table[1.0, 1] - table[1.0, 0] >= 0.1  # the mean alone would shift
    decision = calibrate.decide(table, scales, 0.4, 0.1, boxes=12, frames=frames)
    assert decision["outcome"] == "verified" and decision["offset"] == 0
    assert decision["shift_votes"] == [1, 4]
    moved, moved_dets = scene(1.0, 1)  # real motion: every frame agrees
    frames = calibrate.frame_table(moved, moved_dets, scales, (1280, 720))
    table = calibrate.score_table(moved, moved_dets, scales, (1280, 720), frames=frames)
    decision = calibrate.decide(table, scales, 0.4, 0.1, boxes=12, frames=frames)
    assert decision["offset"] == 1 and decision["shift_votes"] == [4, 4]


def test_low_agreement_a_close_runner_up_and_few_boxes_are_unverified():
    boxes, _ = scene(1.0, 0)
    other = {i: people(3) for i in range(8, 44)}  # another clip's people
    table = calibrate.score_table(boxes, other, [1.0, 0.5], (1280, 720))
    low = calibrate.decide(table, [1.0, 0.5], 0.4, 0.1, boxes=12)
    assert low["outcome"] == "unverified" and "agreement" in low["why"]
    close = {(1.0, o): 0.8 for o in calibrate.OFFSETS} | {(0.5, o): 0.75 for o in calibrate.OFFSETS}
    tie = calibrate.decide(close, [1.0, 0.5], 0.4, 0.1, boxes=12)
    assert tie["outcome"] == "unverified" and "leads scale 0.5 by 0.050" in tie["why"]
    few = calibrate.decide({k: 0.9 if k[0] == 1.0 else 0.1 for k in close}, [1.0, 0.5], 0.4, 0.1, boxes=2)
    assert few["outcome"] == "unverified" and "fewer than 3" in few["why"]


def test_a_clear_winner_that_is_not_allowed_is_a_mismatch():
    boxes, dets = scene(0.5, 0)
    table = calibrate.score_table(boxes, dets, [1.0, 0.5], (640, 360), extent=[0, 0, 600, 300])
    decision = calibrate.decide(table, [1.0], 0.4, 0.1, boxes=12)
    assert decision["outcome"] == "mismatch" and decision["scale"] == 0.5
    assert "only 1 is allowed" in decision["why"]


def test_calibration_frames_are_spread_and_leave_room_for_offsets():
    boxes = {f: [[0, 0, 1, 1]] for f in (1, 2, 3, 10, 20, 30, 40, 50, 60, 70)}
    assert calibrate.pick_frames(boxes, 3) == [3, 40, 70]
    assert calibrate.pick_frames(boxes, 20) == [3, 10, 20, 30, 40, 50, 60, 70]
    planned = Calibration(frames=2)
    usable = [Box(f, 0, b[0]) for f, b in boxes.items()] + [Box(5, 1, None), Box(6, 0, [5, 5, 5, 9])]
    context = calibrate.plan_context(planned, usable, Path("/ws"))
    assert (
        context["boxes"] == [[3, [[0, 0, 1, 1]]], [70, [[0, 0, 1, 1]]]]
        and context["cache"] == "/ws/calibration"
    )


def test_settings():
    assert ShardSettings(calibrate="none").calibrated() is None
    default = ShardSettings().calibrated()
    assert default == Calibration()  # the dataclass and the settings agree on defaults
    with pytest.raises(SettingsError, match="min_agreement"):
        Calibration(min_agreement=1.5)
    with pytest.raises(SettingsError, match="frames"):
        Calibration(frames=0)


def test_an_unreadable_video_is_video_unreadable_and_nothing_is_stored(tmp_path):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"not a video")
    boxes = [Box(f, 0, [10.0, 10.0, 50.0, 130.0]) for f in (11, 21, 31)]
    planned = calibrate.plan_context(Calibration(), boxes, tmp_path)
    context = {"vname": "a+b+broken", "video_id": "broken", "path": str(video), "size": None}
    context |= {"extent": [10.0, 10.0, 50.0, 130.0], "calibration": planned}
    result, refused = calibrate.for_cutting(context)
    assert result is None and refused[0] == "video_unreadable"
    assert not (tmp_path / "calibration").exists()
