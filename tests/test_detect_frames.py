"""read_frames returns exactly the frames a plain OpenCV read-every-frame loop returns."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from reference import opencv_frames

from common.media.frame_index import StreamIndex, decode_plan, index_video
from common.media.frames import count_frames, read_frames
from detect.sampling import sample_indices

CLIPS = [
    "concourse-walkers.mp4",  # keyframes at 0 and 250 only, B-frames, an edit list trims the last frame
    "one-by-one-person-detection.mp4",  # a keyframe every 10 frames
    "pedestrians.mp4",  # 1080p
    "street-crossing.mp4",
    "people-detection.gif",
    "person-bicycle-car-detection.gif",
]


def assert_same(path: Path, wanted, reference: list[np.ndarray]) -> None:
    got = list(read_frames(path, wanted))
    assert [i for i, _ in got] == sorted(i for i in set(wanted) if 0 <= i < len(reference))
    for i, frame in got:
        assert np.array_equal(frame, reference[i]), f"{path.name} frame {i} differs"


@pytest.mark.parametrize("clip", CLIPS)
def test_sample_clips_exact(videos_dir, clip):
    path = videos_dir / clip
    reference = opencv_frames(path)
    rng = np.random.default_rng(len(reference))
    assert count_frames(path) == len(reference)
    assert_same(path, sample_indices(len(reference), 100), reference)
    assert_same(path, rng.choice(len(reference), size=min(12, len(reference)), replace=False), reference)
    assert_same(path, [len(reference) - 1, len(reference), len(reference) + 50], reference)


def test_every_frame_of_long_gop_clip(videos_dir):
    path = videos_dir / "concourse-walkers.mp4"
    reference = opencv_frames(path)
    assert_same(path, range(len(reference)), reference)
    index = index_video(path)
    assert len(index.pts) == 341 and index.n_frames == len(reference) == 340  # one frame trimmed


def test_one_by_one_sampled_every_100th(videos_dir):
    frames = [
        i for i, _ in read_frames(videos_dir / "one-by-one-person-detection.mp4", sample_indices(1394, 100))
    ]
    assert frames == list(range(0, 1301, 100))


def encode(path: Path, frames: list[np.ndarray], options: dict[str, str], rotation: int = 0) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options=options)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def street_frames(videos_dir):
    return dict(read_frames(videos_dir / "street-crossing.mp4", range(0, 60)))


def test_open_gop_b_pyramid(tmp_path, street_frames):
    x264 = "open-gop=1:keyint=12:min-keyint=12:bframes=3:b-pyramid=normal:scenecut=0"
    path = encode(
        tmp_path / "open_gop.mp4", list(street_frames.values()), {"x264-params": x264, "preset": "fast"}
    )
    reference = opencv_frames(path)
    assert len(reference) == 60
    assert_same(path, range(0, 60, 7), reference)
    assert_same(path, [11, 12, 13, 35, 36], reference)  # frames around keyframes


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_display_rotation_like_opencv(tmp_path, street_frames, rotation):
    frames = [street_frames[i] for i in range(8)]
    path = encode(tmp_path / f"rot{rotation}.mp4", frames, {"preset": "ultrafast"}, rotation)
    reference = opencv_frames(path)
    assert reference[0].shape[:2] == ((640, 360) if rotation in (90, -90) else (360, 640))
    assert_same(path, [0, 3, 7], reference)


def test_unreadable_file_raises(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(OSError):
        list(read_frames(bad, [0]))
    with pytest.raises(OSError):
        index_video(bad)


def make_index(pts: list[int], keys: list[int]) -> StreamIndex:
    n = len(pts)
    keyframe = np.zeros(n, dtype=bool)
    keyframe[keys] = True
    return StreamIndex(
        pts=np.asarray(pts, dtype=np.int64),
        keyframe=keyframe,
        discard=np.zeros(n, dtype=bool),
        declared_frames=n,
        width=2,
        height=2,
        fps=1.0,
        codec="test",
    )


def test_plan_decodes_from_the_gop_start():
    # decode order I0 P3 B1 B2 | I4 P7 B5 B6 (pts = frame number)
    index = make_index([0, 3, 1, 2, 4, 7, 5, 6], keys=[0, 4])
    needed, targets = decode_plan(index, [2, 6, 20])
    assert targets == {2: 2, 6: 6}  # frame 20 does not exist
    assert needed.tolist() == [True, True, True, True, True, True, True, True]
    needed, _ = decode_plan(index, [5])
    assert needed.tolist() == [False, False, False, False, True, True, True, False]
    needed, _ = decode_plan(index, [0])
    assert needed.tolist() == [True] + [False] * 7


def test_plan_leading_picture_starts_one_gop_earlier():
    # open GOP: B4 and B5 are decoded after I6 but shown before it; they may reference P3
    index = make_index([0, 3, 1, 2, 6, 4, 5, 9, 7, 8], keys=[0, 4])
    needed, _ = decode_plan(index, [5])
    assert needed.tolist() == [True] * 7 + [False] * 3
    needed, _ = decode_plan(index, [9])
    assert needed.tolist() == [False] * 4 + [True] * 4 + [False] * 2
