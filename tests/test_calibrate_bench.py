"""bench/calibrate.py --smoke: it runs as a script, calibrates the unchanged clip to scale 1,
offset 0, and writes the calibration and cutting cost per video."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_calibrate_bench_smoke(tmp_path, videos_dir):
    out = tmp_path / "calibrate.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "calibrate.py"), "--smoke", "--out", str(out)],
        cwd=tmp_path,  # run by path from another folder: bench/__init__.py's run_as_module
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.read_text())
    assert result["rounds"] == 1 and result["calibration"]["frames"] == 2
    clip = result["videos"]["street-crossing.mp4"]
    assert (clip["outcome"], clip["scale"], clip["offset"]) == ("verified", 1.0, 0)
    assert clip["crops"] == clip["boxes"] > 0 and clip["released_frames"] >= 2
    assert clip["calibration_frames_decoded"] <= 2 * 5  # only the frames it needs
    assert clip["cut_s"] > 0 and clip["calibrate_s"] > clip["calibrate_decode_s"] > 0
    assert clip["calibrate_over_cut"] == pytest.approx(clip["calibrate_s"] / clip["cut_s"], rel=0.02)
    assert result["total"]["verified_at_scale_1_offset_0"] == 1
    assert "street-crossing.mp4" in run.stdout and f"wrote {out}" in run.stdout
