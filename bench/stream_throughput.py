#!/usr/bin/env python
"""The streaming build against the staged commands: videos per core-hour and raw video on disk.

Both build the same dataset from the same clips (``bench/scale_parts/stream_clips.py``: real
street footage, 20 kept by filter and 2 near duplicates) served by an HTTP server on 127.0.0.1
and fetched by yt-dlp, in the same process, one after the other: the baseline is the staged flow
(``crawl --urls``, then ``build-shards``, which chains filter and detect), the method is
``crawl --urls --search-only`` then ``stream --max-videos-on-disk N``. Each row gives wall time,
CPU time (user + system of every child process), videos per core-hour (videos / CPU hours),
the most raw video files and bytes seen on disk at once (sampled every 5 ms) and whether the
shards are byte-identical. The full job's peak raw disk is projected from the measured peak
files at 150 MB a video (10 minutes at 2 Mbit/s, the figure ``docs/scale.md`` assumes) over
73,000 searched videos.

    python bench/stream_throughput.py                       # the 22 clips, 2 videos on disk
    python bench/stream_throughput.py --max-videos-on-disk 4 --workers 2
    python bench/stream_throughput.py --smoke               # 4 clips (seconds; the test suite runs it)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__" and __spec__ is None:  # run by path: run as a module (see bench/__init__.py)
    from bench import run_as_module

    run_as_module("bench.stream_throughput")

from bench.scale_parts.loopback import QuietFiles
from bench.scale_parts.stream_clips import WINDOWS, make_clips
from common.data import data_root
from common.fanout import fanned_files
from common.table import aligned

DATA = data_root()[0]
CONFIG = """
crawl: {workers: 2}
filter: {workers: 2}
detect: {detector: hog, keypoints: none, frame_step: 10, batch_size: 8, workers: 2}
shards: {max_samples: 12, workers: 2}
"""
VIDEO_MB, SEARCHED = 150, 73_000  # docs/scale.md's assumption for the projection


class RawDisk:
    """The most raw video files (partial downloads included) and bytes under ``videos/`` at once,
    sampled every 5 ms in a thread; ``looks``: how many samples were taken."""

    def __init__(self, videos: Path) -> None:
        self.videos, self.files, self.bytes, self.looks = videos, 0, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self) -> None:
        while not self.stop.is_set():
            sizes = []
            for path in fanned_files(self.videos):
                with contextlib.suppress(FileNotFoundError):
                    sizes.append(path.stat().st_size)
            self.files, self.bytes = max(self.files, len(sizes)), max(self.bytes, sum(sizes))
            self.looks += 1
            time.sleep(0.005)

    def __enter__(self) -> RawDisk:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def pipeline(root: Path, config: Path, *args: str) -> None:
    command = [
        sys.executable,
        "pipeline.py",
        args[0],
        "--root",
        str(root),
        "--config",
        str(config),
        *args[1:],
    ]
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")


def measured(name: str, root: Path, steps: list[tuple[str, ...]], config: Path, n: int) -> dict[str, Any]:
    """Run ``steps`` (pipeline commands) on ``root``; the row of the table."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with RawDisk(root / "videos") as disk:
        for step in steps:
            pipeline(root, config, *step)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "mode": name,
        "videos": n,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "videos_per_core_hour": round(n / (cpu / 3600), 1),
        "peak_raw_files": disk.files,
        "peak_raw_mb": round(disk.bytes / 2**20, 1),
    }


def same_shards(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in (a / "shards").glob("lup-*.tar"))
    if not names or names != sorted(p.name for p in (b / "shards").glob("lup-*.tar")):
        return False
    return all((a / "shards" / n).read_bytes() == (b / "shards" / n).read_bytes() for n in names)


def bench(clips: list[Path], work: Path, max_on_disk: int, workers: int) -> dict[str, Any]:
    """Staged (the baseline), then streaming, over ``clips`` served on 127.0.0.1."""
    handler = functools.partial(QuietFiles, directory=clips[0].parent)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        urls = work / "urls.txt"
        urls.write_text("".join(f"http://127.0.0.1:{server.server_address[1]}/{c.name}\n" for c in clips))
        config = work / "config.yaml"
        config.write_text(CONFIG)
        staged = measured(
            "staged", work / "staged", [("crawl", "--urls", str(urls)), ("build-shards",)], config, len(clips)
        )
        flags = ("--max-videos-on-disk", str(max_on_disk), "--workers", str(workers))
        streamed = measured(
            f"stream --max-videos-on-disk {max_on_disk}",
            work / "stream",
            [("crawl", "--urls", str(urls), "--search-only"), ("stream", *flags)],
            config,
            len(clips),
        )
    finally:
        server.shutdown()
        server.server_close()
    streamed["identical_shards"] = same_shards(work / "staged", work / "stream")
    ratio = streamed["videos_per_core_hour"] / staged["videos_per_core_hour"]
    full_staged = SEARCHED * VIDEO_MB / 1e6  # TB: every searched video is on disk before the first cut
    full_stream = streamed["peak_raw_files"] * VIDEO_MB / 1e3  # GB
    return {
        "rows": [staged, streamed],
        "stream_vs_staged_per_core_hour": round(ratio, 3),
        "full_job_peak_raw": {"staged_tb": round(full_staged, 2), "stream_gb": round(full_stream, 2)},
    }


def table(result: dict[str, Any]) -> str:
    keys = ["mode", "videos", "wall_s", "cpu_s", "videos_per_core_hour", "peak_raw_files", "peak_raw_mb"]
    rows = [keys + ["identical_shards"]]
    rows += [[str(r[k]) for k in keys] + [str(r.get("identical_shards", "-"))] for r in result["rows"]]
    full = result["full_job_peak_raw"]
    return (
        aligned(rows, right=range(1, 7))
        + f"\nstream / staged, videos per core-hour: {result['stream_vs_staged_per_core_hour']:.2f}x"
        + f"\nfull job, peak raw video on disk at {VIDEO_MB} MB a video: staged {full['staged_tb']} TB"
        + f" ({SEARCHED:,} videos), stream {full['stream_gb']} GB"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-videos-on-disk", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="4 clips (the test suite's run)")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as tmp:
        work = Path(tmp)
        clips = make_clips(work / "clips", DATA / "videos", 4 if args.smoke else len(WINDOWS))
        result = bench(clips, work, args.max_videos_on_disk, args.workers)
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
