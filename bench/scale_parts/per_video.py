"""Per-video CPU costs of the dataset stages on the sample footage, in CPU seconds per minute of video.

The whole job on paper (docs/scale.md) carries these to LUPerson's footage. Each clip goes through
what a detect worker and a build-shards worker do with it, in this process, one thread, timed in
CPU seconds (``time.process_time``):

* decode: ``read_frames`` of every ``--step``-th frame (the packet index, then only the packets
  those frames need), which detect does and build-shards does again to cut;
* detect: OpenCV's HOG (``HogDetector``, the offline stand-in for YOLOv5) on those frames at the
  clip's own size;
* keypoints: BlazePose (the offline stand-in for HRNet) on every box scoring >= ``--min-score``
  (detect's ``hog_min_score``), per box;
* cut: each of those boxes cut from its frame and encoded as JPEG q95 (build-shards' ``cut``), per crop.

Clips: the sample ``.mp4`` clips at their own sizes, and ``street-crossing.mp4`` (eye-level city
street, the closest to LUPerson's footage) re-encoded to 1280x720 H.264 at ~2 Mbit/s with a
keyframe every 2 s and every 5 s: the crawl downloads at most 720p (``collect/settings.py``) and
YouTube's keyframe spacing is a few seconds. Each figure is the median of ``--rounds`` rounds.

    python -m bench.scale_parts.per_video                 # all clips, 3 rounds (about a minute)
    python -m bench.scale_parts.per_video --smoke         # one clip, one round, no re-encode
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from bench.scale_parts.context import DATA
from bench.scale_parts.measure import REPO
from common.atomic import write_json
from common.detectors.blazepose import BlazePoseKeypoints
from common.detectors.hog import HogDetector
from common.media.frames import read_frames
from common.media.images import encode_jpeg
from common.table import aligned
from shards.sources.detections import crop_box

CLIPS = ("street-crossing.mp4", "one-by-one-person-detection.mp4", "concourse-walkers.mp4", "pedestrians.mp4")
REENCODED = {"street-crossing-720p-gop2s.mp4": 2.0, "street-crossing-720p-gop5s.mp4": 5.0}
POSE_MODEL = DATA / "models" / "pose_landmark_full.tflite"
QUALITY = 95  # build-shards' JPEG quality
RESULTS = REPO / "bench" / "results"


def reencode(src: Path, dst: Path, gop_s: float, height: int = 720, bitrate: int = 2_000_000) -> Path:
    """``src`` scaled to ``height`` (even width, same aspect), H.264 yuv420p at ``bitrate`` bit/s
    with a keyframe every ``gop_s`` seconds and x264's default B-frames."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        video = inp.streams.video[0]
        rate = video.guessed_rate or video.average_rate  # 25, not 1705/68: libx264 refuses odd rates
        width = round(video.codec_context.width * height / video.codec_context.height / 2) * 2
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = width, height, "yuv420p", bitrate
        keyint = max(1, round(float(rate) * gop_s))
        stream.options = {"preset": "medium", "threads": "1", "x264-params": f"keyint={keyint}:scenecut=0"}
        for i, frame in enumerate(inp.decode(video)):
            scaled = frame.reformat(width=width, height=height, format="yuv420p")
            scaled.pts, scaled.time_base = i, Fraction(1) / rate  # constant rate: one tick a frame
            scaled.pict_type = av.video.frame.PictureType.NONE  # not the source's keyframes
            out.mux(stream.encode(scaled))
        out.mux(stream.encode(None))
    return dst


def cpu_timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and the CPU seconds of this process it took."""
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def clip_shape(path: Path) -> dict[str, float]:
    """Frames (decoded, exact), fps, width, height and minutes of a clip."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        frames = sum(1 for _ in container.decode(stream))
        fps = float(stream.average_rate)
        width, height = stream.codec_context.width, stream.codec_context.height
    return {"frames": frames, "fps": fps, "width": width, "height": height, "minutes": frames / fps / 60}


def one_round(
    path: Path, frames: int, step: int, hog: HogDetector, pose: BlazePoseKeypoints, min_score: float
):
    """CPU seconds of each step on one clip, and what each step saw (sampled frames, boxes, crop bytes)."""
    decoded, decode_s = cpu_timed(lambda: [f for _, f in read_frames(path, range(0, frames, step))])
    found, detect_s = cpu_timed(lambda: hog(decoded))
    kept = [(frame, boxes[boxes[:, 4] >= min_score]) for frame, boxes in zip(decoded, found, strict=True)]
    kept = [(frame, boxes) for frame, boxes in kept if len(boxes)]
    _, pose_s = cpu_timed(lambda: pose(kept))

    def cut_all() -> list[bytes]:
        crops = []
        for frame, boxes in kept:
            h, w = frame.shape[:2]
            for box in boxes:
                x1, y1, x2, y2 = crop_box([float(v) for v in box[:4]], w, h)
                crops.append(encode_jpeg(frame[y1:y2, x1:x2], QUALITY))
        return crops

    crops, cut_s = cpu_timed(cut_all)
    seen = {
        "sampled": len(decoded),
        "boxes": sum(len(b) for _, b in kept),
        "crop_bytes": sum(map(len, crops)),
    }
    return {"decode_s": decode_s, "detect_s": detect_s, "keypoints_s": pose_s, "cut_s": cut_s}, seen


def measure_clip(path: Path, step: int, rounds: int, min_score: float) -> dict[str, Any]:
    """One clip: the median CPU seconds of each step, per video-minute, per sampled frame, per box."""
    import cv2

    cv2.setNumThreads(1)
    shape = clip_shape(path)
    hog, pose = HogDetector(), BlazePoseKeypoints(str(POSE_MODEL), threads=1)
    runs = [one_round(path, int(shape["frames"]), step, hog, pose, min_score) for _ in range(rounds)]
    seen = runs[0][1]
    costs = {k: statistics.median(r[0][k] for r in runs) for k in runs[0][0]}
    boxes = max(seen["boxes"], 1)
    return {
        **shape,
        **seen,
        **costs,
        "per_minute": {k.removesuffix("_s"): v / shape["minutes"] for k, v in costs.items()},
        "decode_per_sampled_frame_s": costs["decode_s"] / max(seen["sampled"], 1),
        "detect_per_sampled_frame_s": costs["detect_s"] / max(seen["sampled"], 1),
        "keypoints_per_box_s": costs["keypoints_s"] / boxes if seen["boxes"] else None,
        "cut_per_crop_s": costs["cut_s"] / boxes if seen["boxes"] else None,
        "bytes_per_crop": seen["crop_bytes"] / boxes if seen["boxes"] else None,
    }


def table(clips: dict[str, dict[str, Any]]) -> str:
    """One row per clip: size, minutes, CPU s per video-minute of each step, per box and per crop."""
    head = ["clip", "size", "min", "sampled", "boxes", "decode s/min", "detect s/min", "kp s/min"]
    head += ["cut s/min", "decode ms/frame", "HOG ms/frame", "kp ms/box", "cut ms/crop", "kB/crop"]
    rows = [head]
    for name, c in clips.items():
        per = c["per_minute"]
        ms = [c["decode_per_sampled_frame_s"], c["detect_per_sampled_frame_s"]]
        ms += [c["keypoints_per_box_s"], c["cut_per_crop_s"]]
        rows.append(
            [name, f"{c['width']}x{c['height']}@{c['fps']:.0f}", f"{c['minutes']:.2f}", str(c["sampled"])]
            + [str(c["boxes"])]
            + [f"{per[k]:.2f}" for k in ("decode", "detect", "keypoints", "cut")]
            + ["-" if v is None else f"{v * 1e3:.1f}" for v in ms]
            + ["-" if c["bytes_per_crop"] is None else f"{c['bytes_per_crop'] / 1e3:.1f}"]
        )
    return aligned(rows, right=range(2, len(head)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--step", type=int, default=100, help="sample every N-th frame (the paper: 100)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per clip; the median is kept")
    p.add_argument("--min-score", type=float, default=1.0, help="HOG boxes given keypoints and cut")
    p.add_argument("--smoke", action="store_true", help="street-crossing only, one round, no re-encode")
    p.add_argument(
        "--out", type=Path, default=None, help="JSON (default bench/results/per_video[_smoke].json)"
    )
    args = p.parse_args(argv)
    if args.step < 1 or args.rounds < 1:
        p.error("--step and --rounds must be >= 1")
    rounds = 1 if args.smoke else args.rounds
    with tempfile.TemporaryDirectory(prefix="per-video-") as tmp:
        clips = {name: DATA / "videos" / name for name in CLIPS[: 1 if args.smoke else len(CLIPS)]}
        for name, gop_s in ({} if args.smoke else REENCODED).items():
            clips[name] = reencode(DATA / "videos" / CLIPS[0], Path(tmp) / name, gop_s)
        measured = {
            name: measure_clip(path, args.step, rounds, args.min_score) for name, path in clips.items()
        }
    results = {
        "step": args.step,
        "rounds": rounds,
        "threads": 1,
        "min_score": args.min_score,
        "clips": measured,
    }
    print(table(measured))
    out = args.out or RESULTS / f"per_video{'_smoke' if args.smoke else ''}.json"
    write_json(out, results)
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
