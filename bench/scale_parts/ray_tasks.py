"""Part ``ray`` of ``bench/scale.py``: the task engine's own cost per task, the local pool against Ray.

The dataset stages run one task per video (46,260 at LUPerson's size, about 73,000 searched), so
what ``common.engine`` adds to each task, and whether any of it grows with the number of tasks,
is paid 46k times. Each row is one command, ``python -m bench.scale_parts.ray_tasks``, running a
trivial real task (the CRC-32 of a video id, checked against the same sum in the driver) over N
items with ``run_tasks`` (completion order: crawl, filter, detect) or ``ordered_map`` (item order:
build-shards), on ``--engine local`` (the spawned process pool) or ``ray`` (a local Ray the command
starts itself, ``--workers`` CPUs), so Ray's GCS, Raylet and workers are in the peak memory.

The command writes its own timings beside the workspace: ``start_s`` (Ray's start; 0 for the pool,
whose start is inside the loop), ``loop_s`` (first submission to last result) and ``us_per_task``
(``loop_s`` / N: the engine's overhead, as the task itself costs microseconds).

    python -m bench.scale_parts.ray_tasks --engine ray --api run_tasks --items 46260
    python bench/scale.py --parts ray --fractions 0.01 0.1 1.0

In a smoke run (the test suite's) only the local engine runs: Ray's start alone takes longer than
the whole smoke budget; ``tests/test_scale_ray.py`` runs the Ray command with a few items.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

from bench.scale_parts.context import Context
from bench.scale_parts.measure import Measurement, run_measured
from common import engine as engines
from common.atomic import write_json

APIS = ("run_tasks", "ordered_map")
WORKERS = 2  # the build machine's cores; a local Ray of this many CPUs


def checksum(video_id: str) -> int:
    """The task: a few microseconds of real work on one item (importable by pool and Ray workers)."""
    return zlib.crc32(video_id.encode())


def video_ids(n: int) -> list[str]:
    """``n`` ids shaped like YouTube's (11 characters)."""
    return [f"v{i:010d}" for i in range(n)]


def timed(engine: str, api: str, n: int, workers: int) -> dict[str, float | int | str]:
    """Run ``api`` over ``n`` ids on ``engine`` and time it; raises when a result is wrong."""
    items = video_ids(n)
    expected = [checksum(v) for v in items]
    start = time.monotonic()
    if engine == "ray":
        engines.ray_init(None, workers)
    started = time.monotonic()
    if api == "run_tasks":
        got = [-1] * n
        for i, result in engines.run_tasks(checksum, items, engine=engine, workers=workers, progress=False):
            got[i] = result
    else:
        got = list(engines.ordered_map(checksum, items, engine=engine, workers=workers))
    loop_s = time.monotonic() - started
    if got != expected:
        wrong = sum(a != b for a, b in zip(got, expected, strict=False)) + abs(len(got) - n)
        raise RuntimeError(f"{api} on {engine}: {wrong} of {n} results wrong or missing")
    return {
        "engine": engine,
        "api": api,
        "items": n,
        "workers": workers,
        "start_s": round(started - start, 3),
        "loop_s": round(loop_s, 3),
        "us_per_task": round(loop_s / n * 1e6, 1),
    }


def run(ctx: Context) -> list[Measurement]:
    """Every API on every engine at each fraction's number of videos (the local engine only in a smoke run)."""
    kinds = ("local",) if ctx.smoke else ("local", "ray")
    root = ctx.folder("ray")  # the commands write nothing here: files and bytes stay 0
    timings = ctx.folder("ray.timings")
    rows = []
    for fraction in ctx.fractions:
        n = ctx.size("videos", fraction)
        for engine in kinds:
            for api in APIS:
                out = timings / f"{engine}-{api}-{n}.json"
                command = ["python", "-m", "bench.scale_parts.ray_tasks", "--engine", engine, "--api", api]
                command += ["--items", str(n), "--workers", str(WORKERS), "--out", str(out)]
                row = run_measured(f"{api} {engine}", n, "tasks", command, root, timeout_s=ctx.timeout_s)
                if row.rc == 0:
                    t = json.loads(out.read_text())
                    row.note = f"start {t['start_s']:.1f} s, loop {t['loop_s']:.2f} s, {t['us_per_task']:.0f} us/task"
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=("local", "ray"), required=True)
    p.add_argument("--api", choices=APIS, default="run_tasks")
    p.add_argument("--items", type=int, required=True)
    p.add_argument("--workers", type=int, default=WORKERS)
    p.add_argument("--out", type=Path, default=None, help="timings JSON (default: stdout only)")
    args = p.parse_args(argv)
    if args.items < 1:
        p.error("--items must be >= 1")
    result = timed(args.engine, args.api, args.items, args.workers)
    print(json.dumps(result))
    if args.out is not None:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
