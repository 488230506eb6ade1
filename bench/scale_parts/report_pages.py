"""Part ``report`` of ``bench/scale.py``: ``stats`` and its ``report.html`` at LUPerson's 46,260 videos.

The workspace is built as issue 23's figures were: the demo chain (crawl, filter, detect with HOG
and BlazePose every 10th frame, build-shards; ``configs/demo.yaml``) runs once on the sample
footage into a template root: its videos, box files, crops and shard are **real pixels**. Each size
then gets a root whose per-video files are **copies** of the template's under N distinct video ids
(video ``i`` is template video ``i mod 6``, in one of 100 cities): rows of ``videos.parquet``,
``video_filter.parquet``, ``detections.parquet`` and ``shards/samples.parquet``, and one box
file per kept copy (the template's boxes under the new id). The video files and the shard are
the template's, linked, and the copies' crops keep the template's keys (the tar holds only
those): the example boxes and the example grid are drawn from real frames and crops.

Rows: ``stats`` (``python pipeline.py stats --root ...``) per size, and ``report.html`` loaded in
headless Chromium (:mod:`bench.scale_parts.page_load`): seconds = the page's ``loadEventEnd``,
peak = the browser's whole process tree, bytes = the page's size. Without a ``chromium`` on the
PATH (CI) the load row is left out and the stats row's note says so. A smoke run uses two videos,
HOG without keypoints every 50th frame, and a few ids.

    python bench/scale.py --parts report --fractions 0.01 0.1 1.0
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from bench.scale_parts.context import Context
from bench.scale_parts.measure import Measurement, run_measured
from bench.scale_parts.page_load import browser
from common.atomic import write_parquet
from common.manifests import boxes, detections, samples, video_filter, videos
from common.manifests.shard_index import INDEX_NAME

DEMO_CONFIG = "configs/demo.yaml"
SMOKE_VIDEOS = ("street-crossing.mp4", "people-detection.gif")  # one kept with boxes, one too short
CITIES = 100  # LUPerson's


def build_template(ctx: Context, root: Path) -> Path:
    """The demo chain on the sample footage into ``root`` (real pixels); raises when a stage fails."""
    if (root / "shards" / INDEX_NAME).is_file():
        return root
    footage = sorted((ctx.data / "videos").iterdir())
    if ctx.smoke:
        footage = [p for p in footage if p.name in SMOKE_VIDEOS]
    root.mkdir(parents=True, exist_ok=True)
    urls = root.parent / "template_urls.txt"
    urls.write_text("".join(f"{p.resolve()}\n" for p in footage))
    detect = ["detect", "--pose-weights", str(ctx.data / "models" / "pose_landmark_full.tflite")]
    if ctx.smoke:
        detect = ["detect", "--keypoints", "none", "--frame-step", "50"]
    for stage in (["crawl", "--urls", str(urls)], ["filter"], detect, ["build-shards"]):
        command = ["python", "pipeline.py", *stage, "--root", str(root), "--config", DEMO_CONFIG]
        done = run_measured(f"template {stage[0]}", 0, "videos", command, root, timeout_s=ctx.timeout_s)
        if done.rc != 0:
            log = root.parent / f"{root.name}.logs" / f"template_{stage[0]}-0.log"
            raise RuntimeError(f"template: {stage[0]} failed (exit {done.rc}); see {log}")
    return root


def copy_ids(template_ids: list[str], n: int):
    """``n`` copies: new id, the template video it copies (cycling), and a city."""
    import pandas as pd

    return pd.DataFrame(
        {
            "video_id": [f"{template_ids[i % len(template_ids)]}-{i:06d}" for i in range(n)],
            "template": [template_ids[i % len(template_ids)] for i in range(n)],
            "city": [f"city{i % CITIES:02d}" for i in range(n)],
        }
    )


def copied_rows(table, copies):
    """``table``'s rows (``video_id`` keyed) once per copy of their video, under the copy's id and city."""
    rows = copies.merge(table.rename(columns={"video_id": "template"}), on="template", suffixes=("", "_old"))
    rows = rows.drop(columns=[c for c in rows.columns if c.endswith("_old")])
    return rows.reset_index(drop=True)


def replicate(template: Path, root: Path, n: int) -> dict[str, int]:
    """A root of ``n`` video ids whose per-video files are copies of ``template``'s (module doc);
    returns what it wrote."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    (root / "videos").symlink_to((template / "videos").resolve(), target_is_directory=True)
    crawled = videos.read_frame(template / videos.MANIFEST)
    copies = copy_ids(sorted(crawled["video_id"]), n)
    write_parquet(root / videos.MANIFEST, copied_rows(crawled, copies).reindex(columns=crawled.columns))
    video_filter.write(root, copied_rows(video_filter.read(template), copies))
    detected = copied_rows(detections.read(template), copies)
    detections.write(root, detected)
    made = 0
    for tid, group in detected.groupby("template"):
        source = boxes.path_of(template, tid)
        table, meta = pq.read_table(source), pq.read_schema(source).metadata
        for vid in group["video_id"]:
            path = boxes.path_of(root, vid)
            path.parent.mkdir(parents=True, exist_ok=True)
            ids = pa.array([vid] * table.num_rows, pa.string())
            pq.write_table(table.set_column(0, "video_id", ids).replace_schema_metadata(meta), path)
            made += 1
    shards = root / "shards"
    shards.mkdir()
    shutil.copy(template / "shards" / INDEX_NAME, shards / INDEX_NAME)
    for tar in (template / "shards").glob("*.tar"):
        (shards / tar.name).symlink_to(tar.resolve())
    crops = copied_rows(samples.read(template / "shards"), copies)  # keys kept: the tar's
    samples.write(shards, crops.reindex(columns=list(samples.DEFAULTS)))
    return {"videos": n, "box_files": made, "samples": len(crops)}


def page_row(ctx: Context, root: Path, n: int, stats_note: str) -> tuple[Measurement | None, str]:
    """``report.html`` loaded in headless Chromium, or ``None`` and why not."""
    page = root / "report.html"
    size = page.stat().st_size
    note = f"report.html {size:,} B"
    if browser() is None:
        return None, note + "; chromium not installed: no load time"
    out = root.parent / f"{root.name}.load.json"
    command = ["python", "-m", "bench.scale_parts.page_load", str(page), "--out", str(out)]
    done = run_measured("report.html load", n, "videos", command, root, timeout_s=ctx.timeout_s)
    if done.rc != 0:
        return done, note + f"; page_load failed (exit {done.rc})"
    timing = json.loads(out.read_text())
    files = sum(1 for _ in (root / "report_files").iterdir()) + 1
    row = dataclasses.replace(
        done,
        seconds=round(timing["load_event_end_ms"] / 1000, 3),
        files=files,
        bytes=size,
        note=(
            f"seconds: loadEventEnd in headless Chromium; bytes: report.html; files: page + report_files; "
            f"{timing['nodes']:,} DOM nodes, command {done.seconds:.1f} s; {stats_note}"
        ),
    )
    return row, note + f", loads in {row.seconds:.2f} s"


def run(ctx: Context) -> list[Measurement]:
    """``stats`` at each fraction's number of videos, and its page in Chromium (module doc)."""
    base = ctx.folder("report")
    template = build_template(ctx, base / "template")
    rows = []
    for fraction in ctx.fractions:
        n = ctx.size("videos", fraction)
        root = base / f"videos-{n}"
        if root.exists():
            shutil.rmtree(root)
        wrote = replicate(template, root, n)
        chain = (
            "2 videos, HOG every 50th frame" if ctx.smoke else "6 videos, HOG + BlazePose every 10th frame"
        )
        note = (
            f"real pixels: the demo chain's template ({chain}); copies under {n:,} ids: "
            f"{wrote['box_files']:,} box files, {wrote['samples']:,} samples rows (the template's crops)"
        )
        command = ["python", "pipeline.py", "stats", "--root", str(root)]
        measured = run_measured("stats", n, "videos", command, root, timeout_s=ctx.timeout_s, note=note)
        rows.append(measured)
        if measured.rc == 0:
            load, page_note = page_row(ctx, root, n, note)
            measured.note += "; " + page_note
            rows += [load] if load is not None else []
    return rows
