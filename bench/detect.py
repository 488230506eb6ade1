#!/usr/bin/env python
"""Detection throughput: sampled frames per second of detector + keypoints, vs. decoding them.

Frames are the real sampled frames (every ``--step``-th) of the sample clips. Models have the
architectures of the real run with random weights (no downloads here; speed does not depend on
the weights): YOLOv5 built from ``yolov5<size>u.yaml`` and saved as a ``.pt`` file, HRNet-W32
saved as an mmpose checkpoint, both loaded through the stage's adapters. Random YOLO weights
find nobody, so HRNet gets ``--persons`` person-shaped boxes per frame. The baseline, run in the
same process, is decoding the same frames with ``read_frames`` on one core: the ratio says how
many decoding cores one detector process keeps busy.

    python bench/detect.py                      # GPU when present: YOLOv5x + HRNet-W32, batch 32
    python bench/detect.py --smoke              # CPU, 2 frames, YOLOv5n (seconds)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common.atomic import write_json  # noqa: E402
from detect.frames import read_frames  # noqa: E402

RESULTS = REPO / "bench" / "results"
VIDEOS = REPO.parent / "shared" / "data" / "videos"
CLIPS = ("street-crossing.mp4", "one-by-one-person-detection.mp4", "concourse-walkers.mp4")


def sampled_frames(videos: list[Path], step: int, limit: int | None) -> tuple[list[np.ndarray], float]:
    """The sampled frames (at most ``limit`` per clip) and the CPU seconds decoding them took."""
    from detect.frames import count_frames

    jobs = [(video, list(range(0, count_frames(video), step))[:limit]) for video in videos]
    frames: list[np.ndarray] = []
    start = time.process_time()
    for video, indices in jobs:
        frames += [f for _, f in read_frames(video, indices)]
    return frames, time.process_time() - start


def person_boxes(frame: np.ndarray, count: int) -> np.ndarray:
    """``count`` person-shaped (1:2.5) boxes tiled across the frame, score 0.9."""
    h, w = frame.shape[:2]
    bw = w / max(count, 1)
    bh = min(h, 2.5 * bw)
    return np.array([[i * bw, 0, (i + 1) * bw, bh, 0.9] for i in range(count)], dtype=np.float32)


def build_models(tmp: Path, yolo_size: str, device: str, flip: bool) -> dict[str, Any]:
    import torch
    from ultralytics import YOLO

    from detect.hog import HogDetector
    from detect.hrnet import HRNetW32Pose, to_mmpose_state_dict
    from detect.pose import HRNetKeypoints
    from detect.yolo import YoloDetector

    yolo_path = tmp / f"yolov5{yolo_size}u_random.pt"
    YOLO(f"yolov5{yolo_size}u.yaml").save(str(yolo_path))
    pose_path = tmp / "hrnet_w32_random.pth"
    torch.save({"state_dict": to_mmpose_state_dict(HRNetW32Pose())}, pose_path)
    return {
        "hog": HogDetector(),
        "yolo": YoloDetector(str(yolo_path), device=device),
        "hrnet": HRNetKeypoints(str(pose_path), device=device, batch_size=64, flip_test=flip),
    }


def run(detector, pose, frames: list[np.ndarray], batch: int, persons: int, device: str) -> float:
    """Wall seconds to detect (and estimate keypoints on ``persons`` boxes per frame) for all frames."""
    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    sync()
    start = time.perf_counter()
    for i in range(0, len(frames), batch):
        chunk = frames[i : i + batch]
        if detector is not None:
            detector(chunk)
        if pose is not None:
            pose([(f, person_boxes(f, persons)) for f in chunk])
    sync()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", nargs="+", default=None, help="clips (default: three sample clips)")
    p.add_argument("--step", type=int, default=100, help="sample every N-th frame")
    p.add_argument("--batch", type=int, default=32, help="frames per detector batch")
    p.add_argument("--persons", type=int, default=8, help="boxes per frame given to the keypoint model")
    p.add_argument("--yolo-size", default="x", choices=["n", "s", "m", "l", "x"], help="YOLOv5 size")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    p.add_argument("--no-flip", action="store_true", help="HRNet without the flip test")
    p.add_argument("--out", default=None, help="JSON (default bench/results/detect[_smoke].json)")
    p.add_argument("--smoke", action="store_true", help="CPU, 2 frames, YOLOv5n, 1 person per frame")
    args = p.parse_args(argv)
    from detect.yolo import resolve_device

    limit = None
    if args.smoke:
        args.device, args.yolo_size, args.batch, args.persons, limit = "cpu", "n", 2, 1, 2
    device = resolve_device(args.device)
    videos = (
        [Path(v) for v in args.videos]
        if args.videos
        else [VIDEOS / c for c in CLIPS[: 1 if args.smoke else 3]]
    )
    frames, decode_cpu = sampled_frames(videos, args.step, limit)
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp), args.yolo_size, device, not args.no_flip)
        run(
            models["yolo"], models["hrnet"], frames[: min(2, len(frames))], args.batch, args.persons, device
        )  # warm-up
        rows: dict[str, Any] = {"decode (read_frames, 1 core)": {"seconds": decode_cpu}}
        for name, det, pose in [
            ("hog", models["hog"], None),
            (f"yolov5{args.yolo_size}", models["yolo"], None),
            (f"hrnet_w32 ({args.persons} persons/frame)", None, models["hrnet"]),
            (f"yolov5{args.yolo_size} + hrnet_w32", models["yolo"], models["hrnet"]),
        ]:
            rows[name] = {"seconds": run(det, pose, frames, args.batch, args.persons, device)}
    base = len(frames) / max(decode_cpu, 1e-9)
    for row in rows.values():
        row["sampled_frames_per_s"] = len(frames) / max(row["seconds"], 1e-9)
        row["ratio"] = row["sampled_frames_per_s"] / base
    results = {
        "device": device,
        "frames": len(frames),
        "step": args.step,
        "batch": args.batch,
        "persons_per_frame": args.persons,
        "flip_test": not args.no_flip,
        "rows": rows,
    }
    if device.startswith("cuda"):
        import torch

        results["gpu"] = torch.cuda.get_device_name(device)
    print(f"{len(frames)} sampled frames on {results.get('gpu', device)}, batch {args.batch}")
    print(f"{'stage':40s} {'frames/s':>9s} {'x decode':>9s}")
    for name, row in rows.items():
        print(f"{name:40s} {row['sampled_frames_per_s']:9.1f} {row['ratio']:9.3f}")
    out = Path(args.out or RESULTS / f"detect{'_smoke' if args.smoke else ''}.json")
    write_json(out, results)
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
