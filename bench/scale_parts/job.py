"""LUPerson's whole job on paper: machines x hours and terabytes, from measured per-video costs.

Nothing here is timed: it multiplies what ``bench/scale_parts/per_video.py`` measured on the
sample footage (CPU seconds per minute of 720p street video: decode and sampling, detection,
keypoints; per crop: cutting and JPEG encoding; ``bench/results/per_video.json``) by LUPerson's
counts (the paper's §3 and Table 1) and by stated assumptions about the footage and the machines
(``ASSUMED``: the paper gives no video length or bit rate). The one GPU figure is quoted from
``../shared/DESIGN.md`` (one H100, MoCo v2 ResNet-50 at 256x128, synthetic input) and marked
``quoted`` until ``bench/gpu.py`` measures the project's own pre-training; YOLOv5 and HRNet have
no figure anywhere yet, so detection is costed with the CPU stand-ins this machine runs (OpenCV's
HOG, BlazePose), an upper bound for a node whose GPUs would take that work.

    python -m bench.scale_parts.job            # the table docs/scale.md quotes
    python -m bench.scale_parts.job --json     # the same figures as JSON
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.scale_parts.measure import REPO

PER_VIDEO = REPO / "bench" / "results" / "per_video.json"
CLIP = "street-crossing-720p-gop2s.mp4"  # eye-level city street at 720p, a keyframe every 2 s
PAPER = {"searched": 73_000, "kept": 50_534, "with_persons": 46_260, "crops": 4_180_243, "epochs": 200}
ASSUMED = {
    "minutes_per_video": 10.0,  # not in the paper; city walks on YouTube run from minutes to hours
    "mbit_per_s": 2.0,  # YouTube's 720p H.264 (crawl downloads at most 720p)
    "probe_frames": 5,  # filter decodes a few frames a video (the static check's five)
    "node_cores": 96,  # one 8-GPU node's CPU cores
    "node_gpus": 8,
    "node_gbit_per_s": 1.0,  # sustained download rate of one node
    "cluster_nodes": 10,
}
QUOTED_PAIRS_PER_S_PER_GPU = 3_973  # DESIGN.md: one H100, bf16 + channels_last, batch 256 (quoted)


def rows(per_video: dict[str, Any], assumed: dict[str, float] = ASSUMED) -> list[dict[str, Any]]:
    """One row per step: its work, CPU hours, GPU hours, terabytes, and hours on one node and on
    the cluster (CPU work spread over every core, GPU work over every GPU, downloads over every
    node's link)."""
    nodes = assumed["cluster_nodes"]
    link_tb_per_h = assumed["node_gbit_per_s"] * 1e9 / 8 * 3600 / 1e12
    steps = work(per_video, assumed)
    for step in steps:
        step.setdefault("cpu_h", 0.0)
        step.setdefault("gpu_h", 0.0)
        step.setdefault("tb", 0.0)
        downloading = step["step"].startswith("download")
        node_h = (
            step["tb"] / link_tb_per_h
            if downloading
            else step["cpu_h"] / assumed["node_cores"] + step["gpu_h"] / assumed["node_gpus"]
        )
        step["node_h"] = node_h
        step["cluster_h"] = node_h / nodes
    return steps


def work(per_video: dict[str, Any], assumed: dict[str, float]) -> list[dict[str, Any]]:
    """Each step's work and what it costs: CPU hours, GPU hours and terabytes, where it has them."""
    clip = per_video["clips"][CLIP]
    per_min = clip["per_minute"]
    minutes = assumed["minutes_per_video"]
    searched, kept, cut_videos = PAPER["searched"], PAPER["kept"], PAPER["with_persons"]
    video_bytes = minutes * 60 * assumed["mbit_per_s"] * 1e6 / 8
    steps: list[dict[str, Any]] = [
        {
            "step": "download (all searched)",
            "work": f"{searched:,} videos",
            "tb": searched * video_bytes / 1e12,
        },
        {
            "step": "filter probes",
            "work": f"{searched:,} videos x {assumed['probe_frames']:g} frames",
            "cpu_h": searched * assumed["probe_frames"] * clip["decode_per_sampled_frame_s"] / 3600,
        },
        *(
            {"step": step, "work": f"{videos:,} videos", "cpu_h": videos * minutes * per_min[cost] / 3600}
            for step, videos, cost in (
                ("detect: decode every 100th frame", kept, "decode"),
                ("detect: persons (HOG stand-in for YOLOv5)", kept, "detect"),
                ("detect: keypoints (BlazePose stand-in for HRNet)", kept, "keypoints"),
                ("build-shards: decode again", cut_videos, "decode"),
            )
        ),
        {
            "step": "build-shards: cut + JPEG",
            "work": f"{PAPER['crops']:,} crops",
            "cpu_h": PAPER["crops"] * clip["cut_per_crop_s"] / 3600,
            "tb": PAPER["crops"] * clip["bytes_per_crop"] / 1e12,
        },
        {
            "step": "pretrain (quoted GPU rate)",
            "work": f"{PAPER['epochs']} epochs x {PAPER['crops']:,} pairs",
            "gpu_h": PAPER["epochs"] * PAPER["crops"] / QUOTED_PAIRS_PER_S_PER_GPU / 3600,
        },
    ]
    return steps


def table(steps: list[dict[str, Any]], assumed: dict[str, float] = ASSUMED) -> str:
    """The steps as a markdown table with their totals."""
    nodes = assumed["cluster_nodes"]
    lines = [
        f"| step | work | CPU core-h | GPU-h | TB | one node, h | {nodes} nodes, h |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        lines.append(
            f"| {s['step']} | {s['work']} | {s['cpu_h']:,.1f} | {s['gpu_h']:,.1f} | {s['tb']:.3f} "
            f"| {s['node_h']:,.1f} | {s['cluster_h']:,.1f} |"
        )
    total = {k: sum(s[k] for s in steps) for k in ("cpu_h", "gpu_h", "tb", "node_h", "cluster_h")}
    lines.append(
        f"| **total** (steps one after another) | | {total['cpu_h']:,.1f} | {total['gpu_h']:,.1f} "
        f"| {total['tb']:.2f} | {total['node_h']:,.1f} | {total['cluster_h']:,.1f} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-video", type=Path, default=PER_VIDEO, help="per_video.py's JSON")
    p.add_argument("--json", action="store_true", help="the figures as JSON")
    args = p.parse_args(argv)
    steps = rows(json.loads(args.per_video.read_text()))
    print(
        json.dumps({"assumed": ASSUMED, "paper": PAPER, "steps": steps}, indent=1)
        if args.json
        else table(steps)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
