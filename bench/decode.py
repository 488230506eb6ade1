#!/usr/bin/env python
"""Frame sampling speed: which decoder gets every 100th frame fastest, and exactly?

Every method decodes with one thread and returns the frames 0, step, 2*step, ...; each is checked
pixel for pixel against the baseline, OpenCV reading every frame, run in the same process.
Speed is video frames per second per core: frames of the clip / CPU seconds of this process
(and wall seconds alongside), the best of ``--repeats`` runs. torchcodec gets a row when it
imports (it is not a dependency); the table's first line says whether it does.

    python bench/decode.py                  # all sample clips, step 100
    python bench/decode.py --smoke          # one short clip, one run (seconds)
    python bench/decode.py --videos a.mp4 b.webm --step 50
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__" and __spec__ is None:  # run by path: run as a module (see bench/__init__.py)
    from bench import run_as_module

    run_as_module("bench.decode")

from common.atomic import write_json
from common.data import data_root
from common.media.frames import read_frames, read_frames_opencv, read_frames_pyav

RESULTS = REPO / "bench" / "results"
VIDEOS = data_root()[0] / "videos"
Frames = Iterator[tuple[int, np.ndarray]]


def _capture(path: Path):
    import cv2

    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])


def opencv_read_all(path: Path, wanted: list[int]) -> Frames:
    """Baseline: ``read()`` (decode + BGR conversion) every frame, keep the wanted ones."""
    cap, keep, i = _capture(path), set(wanted), 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i in keep:
            yield i, frame
        i += 1
    cap.release()


def opencv_seek(path: Path, wanted: list[int]) -> Frames:
    """``CAP_PROP_POS_FRAMES`` to each wanted frame, then ``read()``."""
    import cv2

    cap = _capture(path)
    for i in wanted:
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, frame = cap.read()
        if ok:
            yield i, frame
    cap.release()


def pyav_decode_all(path: Path, wanted: list[int]) -> Frames:
    """PyAV decoding every frame in order, converting only the wanted ones."""
    import av

    keep = set(wanted)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for i, frame in enumerate(container.decode(stream)):
            if i in keep:
                yield i, frame.to_ndarray(format="bgr24")
            if i >= wanted[-1]:
                break


def pyav_gop(path: Path, wanted: list[int]) -> Frames:
    """Planned PyAV decoding, GOP skipping only (every frame of a needed GOP decoded)."""
    return read_frames_pyav(path, wanted, skip_nonref=False)


def torchcodec_exact(path: Path, wanted: list[int]) -> Frames:
    """torchcodec ``get_frames_at`` with exact seeking (RGB tensors turned into BGR arrays)."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=1)
    wanted = [i for i in wanted if i < len(decoder)]
    batch = decoder.get_frames_at(indices=wanted)
    for i, chw in zip(wanted, batch.data, strict=True):
        yield i, np.ascontiguousarray(chw.permute(1, 2, 0).numpy()[:, :, ::-1])


METHODS: dict[str, Callable[[Path, list[int]], Frames]] = {
    "opencv read every frame (baseline)": opencv_read_all,
    "opencv grab": read_frames_opencv,
    "opencv seek": opencv_seek,
    "pyav decode all": pyav_decode_all,
    "pyav gop skip": pyav_gop,
    "read_frames (pyav gop + nonref skip)": read_frames,
}


def torchcodec_status() -> str:
    """``installed <version>``, ``not installed``, or why it does not import (its FFmpeg libraries)."""
    try:
        import torchcodec
    except ModuleNotFoundError:
        return "not installed"
    except Exception as e:  # installed, but its FFmpeg libraries are missing or do not match
        return f"not importable ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    return f"installed {getattr(torchcodec, '__version__', '')}".strip()


def available_methods() -> dict[str, Callable[[Path, list[int]], Frames]]:
    """``METHODS``, plus a torchcodec row when it imports (it is not a dependency of the project)."""
    methods = dict(METHODS)
    if torchcodec_status().startswith("installed"):
        methods["torchcodec exact seek"] = torchcodec_exact
    return methods


def time_method(
    fn, path: Path, wanted: list[int], repeats: int
) -> tuple[float, float, dict[int, np.ndarray]]:
    """Best (CPU seconds, wall seconds) over ``repeats`` runs, and the frames of the last run."""
    best_cpu, best_wall, frames = float("inf"), float("inf"), {}
    for _ in range(repeats):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        frames = dict(fn(path, wanted))
        best_cpu = min(best_cpu, time.process_time() - cpu0)
        best_wall = min(best_wall, time.perf_counter() - wall0)
    return best_cpu, best_wall, frames


def bench_video(path: Path, step: int, repeats: int) -> dict[str, Any]:
    """Every method on one clip: per-core frames/s, ratio to the baseline, exactness."""
    import cv2

    cv2.setNumThreads(1)
    cap = _capture(path)
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    wanted = list(range(0, n, step))
    rows: dict[str, Any] = {}
    reference: dict[int, np.ndarray] = {}
    for name, fn in available_methods().items():
        cpu, wall, frames = time_method(fn, path, wanted, repeats)
        if not reference:
            reference = frames
        exact = sorted(frames) == wanted and all(np.array_equal(frames[i], reference[i]) for i in wanted)
        rows[name] = {
            "video_fps_per_core": n / max(cpu, 1e-9),
            "video_fps_wall": n / max(wall, 1e-9),
            "sampled_frames_per_core": len(wanted) / max(cpu, 1e-9),
            "exact": bool(exact),
        }
    base = rows["opencv read every frame (baseline)"]["video_fps_per_core"]
    for row in rows.values():
        row["ratio"] = row["video_fps_per_core"] / base
    return {"frames": n, "sampled": len(wanted), "methods": rows}


def totals(videos: dict[str, Any]) -> dict[str, Any]:
    """All clips together: total frames / total CPU seconds of each method."""
    frames = sum(r["frames"] for r in videos.values())
    rows: dict[str, Any] = {}
    for name in next(iter(videos.values()))["methods"]:
        cpu = sum(r["frames"] / r["methods"][name]["video_fps_per_core"] for r in videos.values())
        wall = sum(r["frames"] / r["methods"][name]["video_fps_wall"] for r in videos.values())
        exact = all(r["methods"][name]["exact"] for r in videos.values())
        rows[name] = {"video_fps_per_core": frames / cpu, "video_fps_wall": frames / wall, "exact": exact}
    base = rows["opencv read every frame (baseline)"]["video_fps_per_core"]
    for row in rows.values():
        row["ratio"] = row["video_fps_per_core"] / base
    return {"frames": frames, "methods": rows}


def print_table(results: dict[str, Any]) -> None:
    print(f"torchcodec: {results['torchcodec']}")
    header = f"{'video':34s} {'method':38s} {'fps/core':>9s} {'fps wall':>9s} {'x base':>7s}  exact"
    print(header)
    print("-" * len(header))
    for video, r in {**results["videos"], "all clips": results["total"]}.items():
        for name, row in r["methods"].items():
            print(
                f"{video[:34]:34s} {name:38s} {row['video_fps_per_core']:9.0f} {row['video_fps_wall']:9.0f}"
                f" {row['ratio']:7.2f}  {row['exact']}"
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", nargs="+", default=None, help="clips (default: ../shared/data/videos/*)")
    p.add_argument("--step", type=int, default=100, help="sample every N-th frame")
    p.add_argument("--repeats", type=int, default=3, help="runs per method; the best is kept")
    p.add_argument("--out", default=None, help="JSON (default bench/results/decode[_smoke].json)")
    p.add_argument("--smoke", action="store_true", help="one short clip, one run")
    args = p.parse_args(argv)
    if args.videos:
        videos = [Path(v) for v in args.videos]
    elif args.smoke:
        videos = [VIDEOS / "concourse-walkers.mp4"]
    else:
        videos = sorted(v for v in VIDEOS.iterdir() if v.suffix.lower() in (".mp4", ".webm", ".mkv", ".gif"))
    repeats = 1 if args.smoke else args.repeats
    results: dict[str, Any] = {"step": args.step, "repeats": repeats, "threads": 1}
    results.update(torchcodec=torchcodec_status(), videos={})
    for video in videos:
        results["videos"][video.name] = bench_video(video, args.step, repeats)
    results["total"] = totals(results["videos"])
    print_table(results)
    out = Path(args.out or RESULTS / f"decode{'_smoke' if args.smoke else ''}.json")
    write_json(out, results)
    print(f"wrote {out}")
    return json.loads(out.read_text())


if __name__ == "__main__":
    main()
