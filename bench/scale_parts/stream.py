"""Part ``stream`` of ``bench/scale.py``: the streaming build's plan at LUPerson's ~73,000 searched videos.

At each size N (``ctx.size("searched", f)``), against the loopback stand-in for YouTube
(``bench/scale_parts/loopback.py``, the ``videos`` part's): ``crawl --cities ... --search-only``
writes N pending rows; then every row but 1 in ``SAMPLE_EVERY`` is marked as a video crawl gave
up on (``unavailable``: the stream does not fetch those, but plans, fingerprints and records
around all N rows), so that N/``SAMPLE_EVERY`` real videos are downloaded over loopback, probed,
filtered, detected (HOG, every 100th frame, no keypoints), cut and deleted, 2 on disk at most.
Rows:

- ``stream``: the whole build, its note the videos processed and the statuses;
- ``stream rerun``: the same command again, nothing to fetch: what a rerun costs at N rows
  (every record read, the plan checked, the tables written again).

The time per processed video against the staged commands is ``bench/stream_throughput.py``'s
(real footage, both flows in one process); this part shows how the plan, the records and the
tables grow with the manifest. A smoke run takes the largest fraction only, with four clips.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from bench.scale_parts.context import Context
from bench.scale_parts.loopback import LoopbackServer
from bench.scale_parts.measure import Measurement, run_measured
from bench.scale_parts.video_clips import make_clips
from bench.scale_parts.videos import SMOKE_CLIPS, catalog_for
from common.manifests import videos as manifest

SAMPLE_EVERY = 40  # as the videos part: 1 video in 40 downloaded over loopback
CLIPS = 200
UNIT = "videos"
CONFIG = """
crawl: {workers: 2}
detect: {detector: hog, keypoints: none, batch_size: 8}
shards: {max_samples: 1000}
"""


def run(ctx: Context) -> list[Measurement]:
    clips = make_clips(ctx.folder("video-clips"), ctx.data / "videos", SMOKE_CLIPS if ctx.smoke else CLIPS)
    rows: list[Measurement] = []
    for fraction in ctx.fractions[-1:] if ctx.smoke else ctx.fractions:
        rows += stream_rows(ctx, ctx.size("searched", fraction), clips)
    return rows


def sample_only(root: Path, every: int) -> int:
    """Mark every row but 1 in ``every`` as given up on by crawl; the rows left to fetch."""
    rows = manifest.load(root)
    for k, row in enumerate(rows):
        if k % every:
            row.update(status="unavailable", reason="bench: not in the sample")
    manifest.save(root, rows)
    return len(rows[::every])


def stream_rows(ctx: Context, n: int, clips: list[Path]) -> list[Measurement]:
    catalog = catalog_for(n)
    n = catalog.cities * catalog.per_city
    root = ctx.work / f"stream-{n}"
    shutil.rmtree(root, ignore_errors=True)
    cities = ctx.work / f"stream-{n}.cities.txt"
    cities.write_text("".join(catalog.city(c) + "\n" for c in range(catalog.cities)))
    config = ctx.work / f"stream-{n}.yaml"
    config.write_text(CONFIG)
    out = []
    with LoopbackServer(catalog, clips) as server:
        search = ["python", "-m", "bench.scale_parts.loopback", server.base, "crawl", "--cities", str(cities)]
        search += ["--per-city", str(catalog.per_city), "--search-only", "--root", str(root)]
        setup = run_measured("stream search", n, UNIT, search, root, timeout_s=ctx.timeout_s)
        if setup.rc != 0:
            return [setup]
        fetched = sample_only(root, min(SAMPLE_EVERY, max(2, n // 2)))
        command = ["python", "pipeline.py", "stream", "--root", str(root), "--config", str(config)]
        command += ["--max-videos-on-disk", "2", "--workers", "2"]
        for stage in ("stream", "stream rerun"):
            requests = server.requests
            row = run_measured(stage, n, UNIT, command, root, timeout_s=ctx.timeout_s)
            if row.rc == 0:
                left = sum(1 for _ in (root / "videos").rglob("*.mp4"))
                row.note = (
                    f"{fetched} of {n} rows to fetch, {server.requests - requests} video requests over "
                    f"loopback, {left} raw videos left; filter {filter_statuses(root)}"
                )
            out.append(row)
    return out


def filter_statuses(root: Path) -> dict[str, int]:
    import pandas as pd

    decided = pd.read_parquet(root / "video_filter.parquet", columns=["status"])["status"]
    return dict(sorted(Counter(decided).items()))
