"""Part ``detections`` of ``bench/scale.py``: detect and ``build-shards --from-dets`` at LUPerson's size.

Sizes: detect runs on the kept videos of filter (50,534 at full size), the regeneration on the
videos of the release (46,260). Inputs: :mod:`bench.scale_parts.detection_inputs` (one real clip
linked as every video). Stages, each a real command measured by ``run_measured``:

- ``detect``: HOG, keypoints none, on every video's two sampled frames: real pixels, at the
  fractions up to ``REAL_DETECT`` (a video costs ~0.1 s of wall time on 2 cores: 46k do not fit);
- ``detect resume``: the same root with every video done but one in ``RESUME_EVERY`` (their
  files deleted): those on real pixels, every finished file checked, the summary written. At
  every fraction; above ``REAL_DETECT`` the finished files are written by this benchmark through
  the stage's own writer from the rows detect wrote for the clip (the same bytes: the clip is the
  same), so the folder, the checks and the summary are measured at full size;
- ``dets.pkl load``: the restricted unpickler on the bundle, alone (``python -c``);
- ``build-shards --from-dets`` with ``--calibrate none``, then the same command on the finished
  build (``... rerun``: loads and plans again, reuses every shard, rewrites the tables and
  ``dets_report.json``): every fraction, real pixels for the downloaded tenth;
- the same two with calibration (HOG on real pixels, ``--calibrate-height 320``: the clip's own
  height) at the fractions up to ``REAL_CALIBRATE``: every downloaded video gets its
  ``calibration/<bucket>/<id>.json``, which the rerun reads for the report.

A smoke run measures detect and the first build once, on a handful of videos.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.scale_parts import detection_inputs as inputs
from bench.scale_parts.context import Context
from bench.scale_parts.measure import REPO, Measurement, run_measured
from common.manifests import boxes, video_filter

UNIT = "videos"
REAL_DETECT = 0.1  # detect on real pixels up to this fraction
REAL_CALIBRATE = 0.1  # calibration on real pixels up to this fraction
RESUME_EVERY = 100  # detect resume: one video in this many left to do
DETECT = ["--detector", "hog", "--keypoints", "none", "--workers", "2"]
CALIBRATE = ["--calibrate-detector", "hog", "--calibrate-height", str(inputs.ROWS[1] - inputs.ROWS[0])]
LOAD = "import sys; from shards.release import safe_pickle; safe_pickle.load(sys.argv[1])"


def pipeline(stage: str, root: Path, *args: str | Path) -> list[str]:
    return ["python", "pipeline.py", stage, "--root", str(root), *map(str, args)]


def template_rows(clip: Path, work: Path) -> Path:
    """The file detect writes for the clip (one video, not measured): what seeded files hold."""
    root = work / "template"
    if not boxes.files(root):
        inputs.detect_inputs(clip, work / "template-videos", root, 1)
        argv = [sys.executable, *pipeline("detect", root, *DETECT)[1:]]
        env = {**os.environ, "YOLO_OFFLINE": "1"}
        subprocess.run(argv, cwd=REPO, check=True, capture_output=True, env=env)
    (path,) = boxes.files(root)
    return path


def seed_detections(template: Path, root: Path) -> int:
    """Write the file of every kept video of ``root`` through the stage's writer, from the rows of
    ``template`` (the clip's real boxes) with the video's id; returns how many were written."""
    import pyarrow.parquet as pq

    table = pq.read_table(template)
    columns = table.to_pydict()
    meta = boxes.metadata(template)
    written = 0
    for vid in video_filter.kept(root)["video_id"]:
        path = boxes.path_of(root, vid)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            boxes.write(path, columns | {"video_id": [vid] * table.num_rows}, **meta)
            written += 1
    return written


def detect_stages(ctx: Context, fraction: float, clip: Path, template: Path | None) -> list[Measurement]:
    """``detect`` (real pixels, up to ``REAL_DETECT``) and ``detect resume`` on one root."""
    size = ctx.size("kept", fraction)
    base = ctx.folder(f"detect-{size}")
    root = base / "root"
    inputs.detect_inputs(clip, base, root, size)
    command = pipeline("detect", root, *DETECT)
    rows = []
    if fraction <= REAL_DETECT or template is None:
        rows.append(run_measured("detect", size, UNIT, command, root, timeout_s=ctx.timeout_s))
    else:
        seed_detections(template, root)
    if not ctx.smoke:
        for path in boxes.files(root)[::RESUME_EVERY]:
            path.unlink()
        rows.append(run_measured("detect resume", size, UNIT, command, root, timeout_s=ctx.timeout_s))
    shutil.rmtree(base, ignore_errors=True)
    return rows


def release_stages(ctx: Context, fraction: float, clip: Path) -> list[Measurement]:
    """The bundle's load, and the regeneration and its rerun, without and with calibration."""
    size = ctx.size("videos", fraction)
    base = ctx.folder(f"release-{size}")
    plain, calibrated = base / "root", base / "calibrated"
    with_calibration = fraction <= REAL_CALIBRATE and not ctx.smoke
    bundle = inputs.release_inputs(clip, base, [plain, calibrated] if with_calibration else [plain], size)
    rows: list[Measurement] = []
    if not ctx.smoke:  # a few videos load in less than one memory sample
        load = ["python", "-c", LOAD, str(bundle)]
        rows.append(run_measured("dets.pkl load", size, UNIT, load, base / "load", timeout_s=ctx.timeout_s))
    runs = [("build-shards --from-dets --calibrate none", plain, ["--calibrate", "none"])]
    if with_calibration:
        runs.append(("build-shards --from-dets (calibrated)", calibrated, CALIBRATE))
    for stage, root, flags in runs:
        build = pipeline("build-shards", root, "--from-dets", bundle, "--workers", "2", *flags)
        rows.append(run_measured(stage, size, UNIT, build, root, timeout_s=ctx.timeout_s))
        if not ctx.smoke and rows[-1].rc == 0:
            rows.append(run_measured(f"{stage} rerun", size, UNIT, build, root, timeout_s=ctx.timeout_s))
    shutil.rmtree(base, ignore_errors=True)
    return rows


def run(ctx: Context) -> list[Measurement]:
    """Every stage of the module doc at each fraction (smoke: the first fraction, once each)."""
    work = ctx.folder("detections")
    clip = inputs.cut_clip(ctx.data, work / "clip.mp4")
    fractions = ctx.fractions[:1] if ctx.smoke else ctx.fractions
    needs_template = not ctx.smoke and any(f > REAL_DETECT for f in fractions)
    template = template_rows(clip, work) if needs_template else None
    rows: list[Measurement] = []
    for fraction in fractions:
        rows += detect_stages(ctx, fraction, clip, template)
        rows += release_stages(ctx, fraction, clip)
    return rows
