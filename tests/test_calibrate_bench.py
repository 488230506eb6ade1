"""bench/calibrate.py --smoke: it runs as a script, calibrates the unchanged clip to scale 1,
offset 0, and writes the calibration and cutting cost per video."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shards.release.calibrate import OFFSETS

REPO = Path(__file__).resolve().parent.parent
PRINTED = {  # what print_table shows of a video
    "boxes", "cut_s", "calibrate_s", "calibrate_decode_s", "calibrate_over_cut",
    "outcome", "scale", "offset", "agreement", "runner_up_agreement",
}  # fmt: skip


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
    assert clip["crops"] == clip["boxes"] > 0 and clip["released_frames"] >= 2  # every box cut
    # The same detector on the same frames finds the same boxes: a mismatched frame or scale
    # between the released detections and the calibration's would score far below 1.
    assert clip["agreement"] >= 0.9
    # the 2 calibration frames (far apart) at each offset: what calibration decodes, no frame twice
    assert clip["calibration_frames_decoded"] == 2 * len(OFFSETS)
    assert set(clip) >= PRINTED
    assert result["total"]["videos"] == 1 and result["total"]["verified_at_scale_1_offset_0"] == 1
    assert "street-crossing.mp4" in run.stdout and f"wrote {out}" in run.stdout
