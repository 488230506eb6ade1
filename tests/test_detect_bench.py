"""The decode and detection benchmarks in smoke mode: they run, check exactness, write JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRINTED = {"video_fps_per_core", "video_fps_wall", "ratio", "exact"}  # bench/decode.py's table, per method


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
    # exact: the same frame numbers, pixel for pixel, as the baseline's decode of every frame
    assert methods["read_frames (pyav gop + nonref skip)"]["exact"]
    assert methods["opencv grab"]["exact"] and methods["pyav decode all"]["exact"]
    assert all(set(m) >= PRINTED for m in methods.values())  # every figure the table shows
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
    assert set(rows) >= {"hog", "yolov5n", "yolov5n + hrnet_w32"}
    # Counts, not rates: the baseline decoded the 2 real frames, every model row ran the same 10
    # frames in its 5 batches, and boxes/s is reported exactly for the rows that run HRNet.
    assert rows["decode (read_frames, 1 core)"]["frames"] == saved["frames"]
    timed = [r for name, r in rows.items() if not name.startswith("decode")]
    assert all(r["batches"] == 5 and r["frames"] == 10 for r in timed)
    assert {name for name, r in rows.items() if "boxes_per_s" in r} == {n for n in rows if "hrnet" in n}
    assert "yolov5n + hrnet_w32" in capsys.readouterr().out
