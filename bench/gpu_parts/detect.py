"""Part ``detect``: ``bench/detect_throughput.py`` on real sampled frames: YOLOv5x (from its yaml) + HRNet-W32.

YOLO runs as the stage runs it (fp16 on the GPU); HRNet both as the stage runs it (fp32) and
under fp16 autocast. Weights are random: the compute is the real models', nobody is detected.
"""

from __future__ import annotations

from typing import Any

from bench import detect_throughput as bench_detect
from bench.gpu_parts.context import Context


def run(ctx: Context, record: dict[str, Any]) -> None:
    """Frames/s of every row, and boxes/s of the rows with HRNet."""
    clips = bench_detect.CLIPS[:1] if ctx.smoke else bench_detect.CLIPS
    argv = ["--smoke", "--no-hog"] if ctx.smoke else ["--no-hog", "--pose-fp16", "--device", "cuda:0"]
    args = bench_detect.parse([*argv, "--videos", *(str(ctx.data / "videos" / c) for c in clips)])
    if ctx.smoke:  # 5 batches of one frame, no flip test: the rows' shape in seconds
        args.batch, args.no_flip = 1, True
    results = bench_detect.measure(args)
    record["raw"] = results
    what = f"{results['timed_frames']} frames ({results['frames']} real), batch {results['batch']}"
    for name, row in results["rows"].items():
        if name.startswith("decode"):
            continue
        record["rows"].append(
            {"name": f"{name}, {what}", "value": row["sampled_frames_per_s"], "unit": "frames/s"}
        )
        if "boxes_per_s" in row:
            record["rows"].append({"name": f"{name}, boxes", "value": row["boxes_per_s"], "unit": "boxes/s"})
