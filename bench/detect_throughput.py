#!/usr/bin/env python
"""Detection throughput: sampled frames per second of detector + keypoints, vs. decoding them.

Frames are the real sampled frames (every ``--step``-th) of the sample clips. Models have the
architectures of the real run with random weights (no downloads here; speed does not depend on
the weights): YOLOv5 built from ``yolov5<size>u.yaml`` and saved as a ``.pt`` file, HRNet-W32
saved as an mmpose checkpoint, both loaded through the stage's adapters. Random YOLO weights
find nobody, so HRNet gets ``--persons`` person-shaped boxes per frame. The baseline, run in the
same process, is decoding the same frames with ``read_frames`` on one core: the ratio says how
many decoding cores one detector process keeps busy.

Each row is timed on ``--min-batches`` (5) full batches or more after a warm-up batch: the
sampled frames, repeated in order when there are fewer. Boxes/s counts the boxes given to HRNet.

    python bench/detect_throughput.py                      # GPU when present: YOLOv5x + HRNet-W32, batch 32
    python bench/detect_throughput.py --pose-fp16 --no-hog # also HRNet under fp16 autocast; no CPU HOG row
    python bench/detect_throughput.py --smoke              # CPU, 2 frames x 5 batches of 2, YOLOv5n (seconds)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__" and __spec__ is None:  # run by path: run as a module (see bench/__init__.py)
    from bench import run_as_module

    run_as_module("bench.detect_throughput")

from common.atomic import write_json
from common.data import data_root
from common.detectors.hog import HogDetector
from common.detectors.yolo import YoloDetector, resolve_device
from common.media.frames import (
    count_frames,
    read_frames,
)
from detect.pose import HRNetKeypoints

RESULTS = REPO / "bench" / "results"
VIDEOS = data_root()[0] / "videos"
CLIPS = ("street-crossing.mp4", "one-by-one-person-detection.mp4", "concourse-walkers.mp4")


def sampled_frames(videos: list[Path], step: int, limit: int | None) -> tuple[list[np.ndarray], float]:
    """The sampled frames (at most ``limit`` per clip) and the CPU seconds decoding them took."""
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

    from detect.hrnet import HRNetW32Pose, to_mmpose_state_dict

    yolo_path = tmp / f"yolov5{yolo_size}u_random.pt"
    YOLO(f"yolov5{yolo_size}u.yaml").save(str(yolo_path))
    pose_path = tmp / "hrnet_w32_random.pth"
    torch.save({"state_dict": to_mmpose_state_dict(HRNetW32Pose())}, pose_path)
    return {
        "hog": HogDetector(),
        "yolo": YoloDetector(str(yolo_path), device=device),
        "hrnet": HRNetKeypoints(str(pose_path), device=device, batch_size=64, flip_test=flip),
    }


def timed_frames(frames: list[np.ndarray], batch: int, min_batches: int) -> list[np.ndarray]:
    """The real frames, repeated in order, filling ``max(min_batches, ceil(len / batch))`` full batches.

    A clip sampled every 100th frame gives a few dozen frames: about one batch, too few to time.
    """
    n_batches = max(min_batches, -(-len(frames) // batch))
    return [frames[i % len(frames)] for i in range(n_batches * batch)]


class Fp16Pose:
    """The keypoint model under fp16 autocast (the stage itself runs HRNet in fp32)."""

    def __init__(self, pose) -> None:
        self.pose = pose

    def __call__(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        import torch

        with torch.autocast("cuda", dtype=torch.float16):
            return self.pose(items)


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


def measured_rows(
    models: dict[str, Any], args: argparse.Namespace, device: str
) -> list[tuple[str, Any, Any]]:
    """(row name, detector, keypoint model) of every timed row."""
    yolo, pose = f"yolov5{args.yolo_size}", f"hrnet_w32 ({args.persons} persons/frame)"
    rows = [] if args.no_hog else [("hog", models["hog"], None)]
    rows += [(yolo, models["yolo"], None), (pose, None, models["hrnet"])]
    if args.pose_fp16 and device.startswith("cuda"):
        rows.append(
            (f"hrnet_w32 fp16 autocast ({args.persons} persons/frame)", None, Fp16Pose(models["hrnet"]))
        )
    rows.append((f"{yolo} + hrnet_w32", models["yolo"], models["hrnet"]))
    return rows


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", nargs="+", default=None, help="clips (default: three sample clips)")
    p.add_argument("--step", type=int, default=100, help="sample every N-th frame")
    p.add_argument("--batch", type=int, default=32, help="frames per detector batch")
    p.add_argument("--min-batches", type=int, default=5, help="full batches timed per row, after warm-up")
    p.add_argument("--persons", type=int, default=8, help="boxes per frame given to the keypoint model")
    p.add_argument("--yolo-size", default="x", choices=["n", "s", "m", "l", "x"], help="YOLOv5 size")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    p.add_argument("--no-flip", action="store_true", help="HRNet without the flip test")
    p.add_argument("--no-hog", action="store_true", help="skip the HOG row (CPU only, slow)")
    p.add_argument("--pose-fp16", action="store_true", help="also time HRNet under fp16 autocast (GPU)")
    p.add_argument("--out", default=None, help="JSON (default bench/results/detect[_smoke].json)")
    p.add_argument("--smoke", action="store_true", help="CPU, 2 frames, YOLOv5n, 1 person per frame")
    args = p.parse_args(argv)
    args.limit = None
    if args.smoke:
        args.device, args.yolo_size, args.batch, args.persons, args.limit = "cpu", "n", 2, 1, 2
    return args


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every row's wall seconds and frames/s on ``args.min_batches`` (or more) full batches."""
    device = resolve_device(args.device)
    clips = CLIPS[: 1 if args.smoke else 3]
    videos = [Path(v) for v in args.videos] if args.videos else [VIDEOS / c for c in clips]
    frames, decode_cpu = sampled_frames(videos, args.step, args.limit)
    timed = timed_frames(frames, args.batch, args.min_batches)
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp), args.yolo_size, device, not args.no_flip)
        rows: dict[str, Any] = {
            "decode (read_frames, 1 core)": {"seconds": decode_cpu, "frames": len(frames)}
        }
        run(models["yolo"], models["hrnet"], timed[: args.batch], args.batch, args.persons, device)  # warm-up
        for name, det, pose in measured_rows(models, args, device):
            if isinstance(pose, Fp16Pose):  # its own kernels: warm them up too
                run(None, pose, timed[: args.batch], args.batch, args.persons, device)
            seconds = run(det, pose, timed, args.batch, args.persons, device)
            rows[name] = {"seconds": seconds, "frames": len(timed), "batches": len(timed) // args.batch}
            if pose is not None:
                rows[name]["boxes_per_s"] = len(timed) * args.persons / max(seconds, 1e-9)
    base = len(frames) / max(decode_cpu, 1e-9)
    for row in rows.values():
        row["sampled_frames_per_s"] = row["frames"] / max(row["seconds"], 1e-9)
        row["ratio"] = row["sampled_frames_per_s"] / base
    results = {
        "device": device,
        "frames": len(frames),
        "timed_frames": len(timed),
        "step": args.step,
        "batch": args.batch,
        "persons_per_frame": args.persons,
        "flip_test": not args.no_flip,
        "rows": rows,
    }
    if device.startswith("cuda"):
        import torch

        results["gpu"] = torch.cuda.get_device_name(device)
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{results['frames']} sampled frames, {results['timed_frames']} timed per row, on "
        f"{results.get('gpu', results['device'])}, batch {results['batch']}"
    )
    print(f"{'stage':48s} {'frames/s':>9s} {'boxes/s':>9s} {'x decode':>9s}")
    for name, row in results["rows"].items():
        boxes = f"{row['boxes_per_s']:9.1f}" if "boxes_per_s" in row else f"{'':9s}"
        print(f"{name:48s} {row['sampled_frames_per_s']:9.1f} {boxes} {row['ratio']:9.3f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    results = measure(args)
    print_table(results)
    out = Path(args.out or RESULTS / f"detect{'_smoke' if args.smoke else ''}.json")
    write_json(out, results)
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
