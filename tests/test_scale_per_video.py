"""bench/scale_parts/per_video.py: per-video CPU costs on the sample footage (docs/scale.md's inputs)."""

from __future__ import annotations

import json

import av
import cv2

from bench.scale_parts import per_video


def test_smoke_run_sees_the_clip_as_it_is(tmp_path, videos_dir):
    """street-crossing: 671 frames at 30 fps, every 100th sampled (7), HOG's confident walkers cut
    into JPEGs that decode; every step's cost carried per video-minute for the table."""
    out = tmp_path / "pv.json"
    results = per_video.main(["--smoke", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    clip = results["clips"]["street-crossing.mp4"]
    assert (clip["frames"], clip["width"], clip["height"], round(clip["fps"])) == (671, 640, 360, 30)
    assert clip["sampled"] == len(range(0, 671, 100)) and abs(clip["minutes"] - 671 / 30 / 60) < 1e-6
    assert clip["boxes"] > 0 and clip["bytes_per_crop"] > 1000
    assert set(clip["per_minute"]) == {"decode", "detect", "keypoints", "cut"}  # the table's columns


def test_reencode_has_the_asked_height_and_keyframe_spacing(tmp_path, videos_dir):
    """The 720p stand-ins for LUPerson's footage: the asked size, a keyframe exactly every gop_s
    seconds (not the source's keyframes), every frame kept, and OpenCV reads them."""
    src = videos_dir / "concourse-walkers.mp4"  # 340 decodable frames, 25 fps, only 2 keyframes
    dst = per_video.reencode(src, tmp_path / "c.mp4", gop_s=2.0, height=180)
    with av.open(str(dst)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 180)
    assert len(packets) == 340
    assert [i for i, p in enumerate(packets) if p.is_keyframe] == list(range(0, 340, 50))
    cap = cv2.VideoCapture(str(dst))
    ok, frame = cap.read()
    assert ok and frame.shape == (180, 320, 3)
