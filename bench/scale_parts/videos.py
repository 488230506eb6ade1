"""Part ``videos`` of ``bench/scale.py``: crawl and filter at LUPerson's ~73,000 searched videos.

At each size N (``ctx.size("searched", f)``: 73,000 x f), against a loopback server standing in
for YouTube (``bench/scale_parts/loopback.py``: search answers and downloads of small real clips,
``bench/scale_parts/video_clips.py``), each row one real command:

- ``crawl search``: ``crawl --cities`` over 100 cities (crawl's three queries each) with
  ``--per-city N/100 --search-only``: N pending rows. The one command that runs through
  ``python -m bench.scale_parts.loopback`` (YouTube's search cannot be pointed elsewhere); the
  search answers travel over loopback HTTP through yt-dlp, one request per query.
- ``crawl download``: ``crawl --from-vnames`` on that N-row manifest, listing 1 in ``SAMPLE_EVERY``
  of the videos: real yt-dlp downloads over loopback (a YoutubeDL costs ~0.1-0.2 s of CPU per
  video, so all 73,000 would take hours); the manifest is rewritten at its full N rows.
- ``crawl resume``: another such list, its first run SIGKILLed once half its videos reached the
  server (downloads then stall half-sent, so the kill lands mid-download); the row is the rerun.
- ``crawl rerun``: the same command once more, nothing to do (no request reaches the server).
- ``crawl local``: ``crawl --urls`` of N local files (hard links to the clips under N ids) into a
  second workspace: every file copied and probed (real pixels).
- ``filter`` and ``filter rerun`` on that workspace: N videos probed on real pixels, decided, and
  the near-duplicate check over all of them; the rerun reads the cached probes. The N files are
  copies of ``CLIPS`` clips (+ a static and a short one), so the check keeps the distinct ones
  (140 of the 200) and drops every other copy as a near duplicate (the note counts each status);
  ``bench/near_dup.py`` times it on 50,000 distinct signatures.

A smoke run (the test suite's) takes the largest fraction only, with four clips.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from bench.scale_parts.context import Context
from bench.scale_parts.loopback import Catalog, LoopbackServer
from bench.scale_parts.measure import REPO, Measurement, run_measured
from bench.scale_parts.video_clips import make_clips
from common.fanout import fanned_path

SAMPLE_EVERY = 40  # 1 video in 40 downloaded over loopback, in each of two lists
CLIPS, SMOKE_CLIPS = 200, 4
CITIES = 100
CRAWL_WORKERS, FILTER_WORKERS = 4, 2  # crawl's and filter's defaults
UNIT = "videos"
HOLD_S = 1.0  # between the first download held half-sent and the kill


def catalog_for(n: int) -> Catalog:
    """N searched videos as ``CITIES`` cities of N/``CITIES`` each (below 800, 8 or more a city)."""
    cities = min(CITIES, max(1, n // 8))
    return Catalog(cities=cities, per_city=max(1, round(n / cities)))


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def run(ctx: Context) -> list[Measurement]:
    """Every stage at every fraction (the largest only in a smoke run); see the module docstring."""
    clips = make_clips(ctx.folder("video-clips"), ctx.data / "videos", SMOKE_CLIPS if ctx.smoke else CLIPS)
    rows: list[Measurement] = []
    for fraction in ctx.fractions[-1:] if ctx.smoke else ctx.fractions:
        catalog = catalog_for(ctx.size("searched", fraction))
        rows += crawl_rows(ctx, catalog, clips)
        rows += filter_rows(ctx, catalog.cities * catalog.per_city, clips)
    return rows


def samples(root: Path, every: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Two disjoint lists of (video id, city) from the manifest: rows 0, every, ... and every/2, ..."""
    df = pd.read_parquet(root / "videos.parquet", columns=["video_id", "city"])
    pairs = list(zip(df["video_id"], df["city"], strict=True))
    half = max(1, every // 2)
    return pairs[::every], pairs[half::every] or pairs[-1:]


def write_vnames(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"bench+{city}+{vid}\n" for vid, city in pairs))
    return path


def crawl_rows(ctx: Context, catalog: Catalog, clips: list[Path]) -> list[Measurement]:
    """``crawl search``, ``crawl download``, ``crawl resume`` (after a kill) and ``crawl rerun``."""
    n = catalog.cities * catalog.per_city
    root = fresh(ctx.work / f"crawl-{n}")
    every = min(SAMPLE_EVERY, max(2, n // 2))
    cities = ctx.work / f"crawl-{n}.cities.txt"
    cities.write_text("".join(catalog.city(c) + "\n" for c in range(catalog.cities)))
    out = []
    with LoopbackServer(catalog, clips) as server:
        search = ["python", "-m", "bench.scale_parts.loopback", server.base, "crawl", "--cities", str(cities)]
        search += ["--per-city", str(catalog.per_city), "--search-only", "--root", str(root)]
        note = f"{catalog.cities} cities x {catalog.per_city}; search over loopback, manifest only"
        out.append(run_measured("crawl search", n, UNIT, search, root, timeout_s=ctx.timeout_s, note=note))
        if out[-1].rc != 0:
            return out
        first, second = samples(root, every)

        def listed(pairs: list[tuple[str, str]], name: str) -> list[str]:
            vnames = write_vnames(ctx.work / f"crawl-{n}.{name}.txt", pairs)
            template = server.base + "/v/{id}.mp4"
            return ["python", "pipeline.py", "crawl", "--from-vnames", str(vnames), "--root", str(root)] + [
                "--vnames-url-template",
                template,
                "--workers",
                str(CRAWL_WORKERS),
            ]

        out.append(measured_fetch(ctx, server, "crawl download", n, listed(first, "first"), root))
        killed = kill_midway(listed(second, "second"), root, server, len(second) // 2, ctx.timeout_s)
        out.append(measured_fetch(ctx, server, "crawl resume", n, listed(second, "second"), root, killed))
        out.append(measured_fetch(ctx, server, "crawl rerun", n, listed(second, "second"), root))
    return out


def ok_count(root: Path) -> Counter:
    return Counter(pd.read_parquet(root / "videos.parquet", columns=["status"])["status"])


def measured_fetch(
    ctx: Context, server: LoopbackServer, stage: str, n: int, command: list[str], root: Path, before: str = ""
) -> Measurement:
    """One ``crawl --from-vnames`` over loopback, its note saying what reached the server."""
    requests, ok = server.requests, ok_count(root)["ok"]
    row = run_measured(stage, n, UNIT, command, root, timeout_s=ctx.timeout_s)
    if row.rc != 0:
        return row
    listed = len(Path(command[command.index("--from-vnames") + 1]).read_text().splitlines())
    statuses = ok_count(root)
    row.note = (
        f"{before}{listed} of the {n} rows listed, {statuses['ok'] - ok} became ok, "
        f"{server.requests - requests} video requests over loopback; manifest {dict(sorted(statuses.items()))}"
    )
    return row


def kill_midway(command: list[str], root: Path, server: LoopbackServer, after: int, timeout_s: float) -> str:
    """Run ``command`` and SIGKILL its session once ``after`` videos were served (two transfers
    each) and a download is held half-sent; returns what the kill left, for the rerun's note."""
    argv = [sys.executable, *command[1:]]
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    stalled, ok = server.stalled, ok_count(root)["ok"]
    files = sum(1 for _ in (root / "videos").rglob("*.mp4"))
    server.stall_at = server.transfers + 2 * after
    (root.parent / f"{root.name}.logs").mkdir(exist_ok=True)
    with open(root.parent / f"{root.name}.logs" / "crawl_killed.log", "wb") as log:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and server.stalled == stalled and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(HOLD_S)  # the held downloads write their first half to .part files
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
        server.stall_at = float("inf")
        server.stall.clear()
    parts = sum(1 for _ in (root / "videos").rglob("*.part"))
    files = sum(1 for _ in (root / "videos").rglob("*.mp4")) - files
    saved = ok_count(root)["ok"] - ok
    return f"first run killed (rc {rc}): {files} files done, {saved} ok in its manifest, {parts} .part left; rerun: "


def link_sources(folder: Path, ids: list[str], clips: list[Path]) -> Path:
    """``folder/<bucket>/<id>.mp4`` hard links to the clips (one per id) and their list, relative
    paths a line; returns the list."""
    lines = []
    for k, vid in enumerate(ids):
        link = fanned_path(folder, vid, f"{vid}.mp4")
        link.parent.mkdir(parents=True, exist_ok=True)
        os.link(clips[k % len(clips)], link)
        lines.append(link.relative_to(folder).as_posix())
    listing = folder / "urls.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def filter_rows(ctx: Context, n: int, clips: list[Path]) -> list[Measurement]:
    """``crawl local`` (N local files copied and probed), then ``filter`` and ``filter rerun``."""
    root = fresh(ctx.work / f"filter-{n}")
    catalog = catalog_for(n)
    ids = [catalog.video_id(c, j) for c in range(catalog.cities) for j in range(catalog.per_city)]
    urls = link_sources(fresh(ctx.work / f"filter-{n}.sources"), ids, clips)
    crawl = ["python", "pipeline.py", "crawl", "--urls", str(urls), "--root", str(root)]
    crawl += ["--workers", str(CRAWL_WORKERS)]
    note = f"{n} local files (hard links to {len(clips)} real clips) copied and probed"
    out = [run_measured("crawl local", n, UNIT, crawl, root, timeout_s=ctx.timeout_s, note=note)]
    command = ["python", "pipeline.py", "filter", "--root", str(root), "--workers", str(FILTER_WORKERS)]
    for stage, what in (("filter", "probed on real pixels"), ("filter rerun", "probes read from the cache")):
        row = run_measured(stage, n, UNIT, command, root, timeout_s=ctx.timeout_s)
        if row.rc != 0:
            out.append(row)
            continue
        decided = pd.read_parquet(root / "video_filter.parquet", columns=["status"])["status"]
        row.note = f"{n} videos {what}; {dict(sorted(Counter(decided).items()))}"
        out.append(row)
    return out
