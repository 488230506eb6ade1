#!/usr/bin/env python
"""Calibration cost per video beside the cutting cost, for ``build-shards --from-dets``.

For each clip, released-format detections are made the way LUPerson sampled: OpenCV's HOG at the
clip's size on every ``--step``-th frame (1, 1 + step, ...; at least 5 frames), boxes scoring
>= 1.0. Then, in this process, one worker's view:

* cut: ``import_dets.run`` of the video's task without calibration (decode the released frames
  with the exact-seek reader, cut every box, JPEG q95) -- what every video costs anyway;
* calibrate: ``calibrate.measure`` (decode the calibration frames at offsets -2..+2, detect
  in one batch, score every geometry, decide), split into its decode and the rest (detection and
  scoring, measured as the difference).

Each figure is the median of ``--rounds`` rounds (the machine is shared); the clip is unchanged,
so every calibration must come out ``verified`` at scale 1, offset 0 (checked, reported).

    python bench/calibrate.py                          # the sample clips, 3 rounds
    python bench/calibrate.py --smoke                  # one clip, one round, small frames (seconds)
    python bench/calibrate.py --detector yolo --weights yolov5xu.pt --device cuda
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__" and __spec__ is None:  # run by path: run as a module (see bench/__init__.py)
    from bench import run_as_module

    run_as_module("bench.calibrate")

import numpy as np

from common.atomic import write_json
from common.data import data_root
from common.detectors.build import build_detector
from common.media.frames import count_frames, read_frames
from shards.release import calibrate, import_dets
from shards.release.calibrate import OFFSETS
from shards.settings import Calibration
from shards.write.faces import Encoding

RESULTS = REPO / "bench" / "results"
VIDEOS = data_root()[0] / "videos"
CLIPS = ("street-crossing.mp4", "one-by-one-person-detection.mp4", "concourse-walkers.mp4", "pedestrians.mp4")


def released(video: Path, step: int) -> dict[int, list]:
    """Release-format detections: HOG boxes scoring >= 1.0 on frames 1, 1 + step, ... (>= 5 frames)."""
    n = count_frames(video)
    step = max(1, min(step, n // 5))
    ids = list(range(1, n + 1, step))
    frames = dict(read_frames(video, [f - 1 for f in ids]))
    found = build_detector("hog")([frames[f - 1] for f in ids if f - 1 in frames])
    dets = {}
    for f, boxes in zip([f for f in ids if f - 1 in frames], found, strict=True):
        kept = boxes[boxes[:, 4] >= 1.0]
        dets[f] = [(i, {"bbox": b[:4].astype(np.float32), "score": float(b[4])}) for i, b in enumerate(kept)]
    return dets


def workspace(base: Path, clips: list[Path], step: int) -> tuple[Path, str]:
    """``videos.parquet`` (as crawl --from-vnames writes it) and ``dets.pkl`` for the clips."""
    import pandas as pd

    root = base / "root"
    root.mkdir(parents=True)
    names = {f"xx+bench+{clip.stem}": clip for clip in clips}
    rows = [(v.split("+")[2], v, str(p), "ok", "") for v, p in names.items()]
    pd.DataFrame(rows, columns=["video_id", "vname", "path", "status", "reason"]).to_parquet(
        root / "videos.parquet", index=False
    )
    with open(base / "dets.pkl", "wb") as f:
        pickle.dump({v: released(p, step) for v, p in names.items()}, f)
    return root, str(base / "dets.pkl")


def timed(fn, rounds: int) -> tuple[float, Any]:
    """Median wall seconds of ``fn()`` over ``rounds``, and its last result."""
    times, out = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bench_video(plain: Any, calibrated: Any, rounds: int) -> dict[str, Any]:
    """The figures of one video: its task without and with calibration."""
    ctx = calibrated.context
    cut_s, results = timed(lambda: import_dets.run(plain, Encoding(95)), rounds)
    wanted = sorted({f - 1 + o for f, _ in ctx["calibration"]["boxes"] for o in OFFSETS})
    decode_s, _ = timed(lambda: list(read_frames(ctx["path"], wanted)), rounds)
    calibrate_s, result = timed(lambda: calibrate.measure(ctx), rounds)
    return {
        "boxes": len(plain.items),
        "released_frames": len({i.payload["frame_id"] for i in plain.items}),
        "crops": sum(r.files is not None for r in results),
        "cut_s": round(cut_s, 4),
        "calibration_frames_decoded": len(wanted),
        "calibrate_s": round(calibrate_s, 4),
        "calibrate_decode_s": round(decode_s, 4),
        "calibrate_detect_and_score_s": round(calibrate_s - decode_s, 4),
        "calibrate_over_cut": round(calibrate_s / cut_s, 2) if cut_s else None,
        "outcome": result["outcome"],
        "why": result.get("why", ""),
        "scale": result.get("scale"),
        "offset": result.get("offset"),
        "agreement": result.get("agreement"),
        "runner_up_agreement": (result.get("runner_up") or {}).get("agreement"),
    }


def print_table(results: dict[str, Any]) -> None:
    print(f"calibration: {json.dumps(results['calibration'])}")
    print(f"{'video':34s} {'boxes':>5s} {'cut s':>7s} {'calib s':>8s} {'decode':>7s} {'ratio':>6s}  outcome")
    for name, r in results["videos"].items():
        print(
            f"{name:34s} {r['boxes']:5d} {r['cut_s']:7.3f} {r['calibrate_s']:8.3f} {r['calibrate_decode_s']:7.3f} "
            f"{r['calibrate_over_cut']:6.2f}  {r['outcome']} scale {r['scale']} offset {r['offset']} "
            f"agreement {r['agreement']} (runner-up {r['runner_up_agreement']})"
        )
    print("total: " + " ".join(f"{k}={v}" for k, v in results["total"].items()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", nargs="+", default=None, help="clips (default: the sample .mp4 clips)")
    p.add_argument("--step", type=int, default=100, help="released frames: every N-th (LUPerson: 100)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per figure; the median is kept")
    p.add_argument("--detector", default="hog", choices=["hog", "yolo"])
    p.add_argument("--weights", default="yolov5xu.pt")
    p.add_argument("--device", default="auto")
    p.add_argument("--frames", type=int, default=Calibration.frames)
    p.add_argument("--height", type=int, default=Calibration.height)
    p.add_argument("--out", default=None, help="JSON (default bench/results/calibrate[_smoke].json)")
    p.add_argument("--smoke", action="store_true", help="one clip, one round, 2 frames at 360 px")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.frames, args.height = 1, 2, 360
    clips = (
        [Path(v) for v in args.videos]
        if args.videos
        else [VIDEOS / c for c in CLIPS[: 1 if args.smoke else None]]
    )
    cal = Calibration(args.detector, args.weights, args.device, args.frames, args.height)
    results: dict[str, Any] = {"rounds": args.rounds, "step": args.step, "calibration": asdict(cal)}
    with tempfile.TemporaryDirectory() as tmp:
        root, dets = workspace(Path(tmp), clips, args.step)
        plain, _ = import_dets.plan(dets, root, None)
        calibrated, _ = import_dets.plan(dets, root, None, cal)
        results["videos"] = {
            Path(a.context["path"]).name: bench_video(a, b, args.rounds)
            for a, b in zip(plain, calibrated, strict=True)
            if a.items
        }
    videos = results["videos"].values()
    cut, calib = sum(v["cut_s"] for v in videos), sum(v["calibrate_s"] for v in videos)
    results["total"] = {
        "videos": len(videos),
        "cut_s_per_video": round(cut / len(videos), 4),
        "calibrate_s_per_video": round(calib / len(videos), 4),
        "calibrate_over_cut": round(calib / cut, 2),
        "verified_at_scale_1_offset_0": sum(
            (v["outcome"], v["scale"], v["offset"]) == ("verified", 1.0, 0) for v in videos
        ),
    }
    print_table(results)
    out = Path(args.out or RESULTS / f"calibrate{'_smoke' if args.smoke else ''}.json")
    write_json(out, results)
    print(f"wrote {out}")
    return json.loads(out.read_text())


if __name__ == "__main__":
    main()
