"""The decode and detection benchmarks in smoke mode: they run, check exactness, write JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module
    spec.loader.exec_module(module)
    return module


def test_decode_bench_smoke(tmp_path, videos_dir, capsys):
    out = tmp_path / "decode.json"
    load("decode").main(["--smoke", "--out", str(out)])
    saved = json.loads(out.read_text())
    clip = saved["videos"]["concourse-walkers.mp4"]
    assert clip["frames"] == 340 and clip["sampled"] == 4
    methods = clip["methods"]
    assert methods["opencv read every frame (baseline)"]["ratio"] == 1.0
    assert methods["read_frames (pyav gop + nonref skip)"]["exact"]
    assert methods["opencv grab"]["exact"] and methods["pyav decode all"]["exact"]
    assert all(m["video_fps_per_core"] > 0 for m in methods.values())
    printed = capsys.readouterr().out
    assert "read_frames (pyav gop + nonref skip)" in printed
    assert f"torchcodec: {saved['torchcodec']}" in printed
    has_row = "torchcodec exact seek" in methods
    assert has_row == saved["torchcodec"].startswith("installed")  # the row exactly when it imports
    if importlib.util.find_spec("torchcodec") is None:
        assert saved["torchcodec"] == "not installed" and not has_row


def test_detect_bench_smoke(tmp_path, videos_dir, capsys):
    out = tmp_path / "detect.json"
    load("detect_throughput").main(["--smoke", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["device"] == "cpu" and saved["frames"] == 2
    assert saved["batch"] == 2 and saved["timed_frames"] == 10  # 2 real frames fill 5 full batches
    rows = saved["rows"]
    assert rows["decode (read_frames, 1 core)"]["ratio"] == 1.0
    assert set(rows) >= {"hog", "yolov5n", "yolov5n + hrnet_w32"}
    timed = [r for name, r in rows.items() if not name.startswith("decode")]
    assert all(r["batches"] >= 5 and r["frames"] == 10 for r in timed)
    assert all(r["sampled_frames_per_s"] > 0 for r in rows.values())
    pose = rows["yolov5n + hrnet_w32"]
    assert pose["boxes_per_s"] == pytest.approx(pose["sampled_frames_per_s"] * saved["persons_per_frame"])
    assert "yolov5n + hrnet_w32" in capsys.readouterr().out
