#!/usr/bin/env python
"""Every stage at LUPerson's full size: time, peak memory, files and bytes, and how each grows.

Builds well-formed workspaces at fractions of LUPerson (4,180,243 crops, 46,260 videos with
persons, about 73,000 searched) and runs the real commands on them as a user would
(``python pipeline.py ...``), measuring each (``bench/scale_parts/measure.py``). Parts
(``--parts``): ``crops`` (build-shards --from-images / --from-lmdb, verify-shards, stats,
export-lmdb, pretrain's start, tracklet tables), ``videos`` (crawl and filter at 73k videos
against a loopback server), ``detections`` (detect's per-video files and summary, --from-dets
planning, calibration cache and dets_report at 46k), ``report`` (stats and report.html at 46k
videos), ``ray`` (the Ray engine with 46k tasks against the local pool), ``stream`` (the streaming
build's plan, records and tables at 73k rows, 1 in 40 videos processed). Each stage gets a
log-log fit of time against size (an exponent above 1.15 is a defect) and a linear fit of peak
memory, projected to 4.18M and 10M crops. Prints one table; writes ``bench/results/scale.json``
and ``bench/results/scale.md`` (docs/scale.md quotes them).

    python bench/scale.py --parts crops --fractions 0.01 0.1 1.0 --work /tmp/scale
    python bench/scale.py --parts videos detections report ray --fractions 0.01 0.1 1.0
    python bench/scale.py --smoke --out /tmp/s.json --md /tmp/s.md   # every part, tiny, seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__" and __spec__ is None:  # run by path: run as a module (see bench/__init__.py)
    from bench import run_as_module

    run_as_module("bench.scale")

from bench.scale_parts.context import Context
from bench.scale_parts.measure import SKIPPED, Measurement
from bench.scale_parts.report import markdown, printed
from common.atomic import write_json, write_text
from common.log import setup_logging

PARTS = {
    "crops": "bench.scale_parts.crops",
    "videos": "bench.scale_parts.videos",
    "detections": "bench.scale_parts.detections",
    "report": "bench.scale_parts.report_pages",
    "ray": "bench.scale_parts.ray_tasks",
    "stream": "bench.scale_parts.stream",
}
RESULTS = REPO / "bench" / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    p.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.1], help="of LUPerson's size")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the workspaces under --work")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="one command at one size at most")
    p.add_argument("--smoke", action="store_true", help="every part at tiny sizes (the test suite's run)")
    p.add_argument("--out", type=Path, default=None, help="JSON (default bench/results/scale[_smoke].json)")
    p.add_argument("--md", type=Path, default=None, help="tables (default bench/results/scale[_smoke].md)")
    args = p.parse_args(argv)
    if any(not 0 < f <= 1 for f in args.fractions):
        p.error("--fractions: each in (0, 1]")
    return args


def merged(path: Path, rows: list[Measurement], parts: list[str]) -> list[dict]:
    """The rows of an earlier run of other parts kept beside this run's (one file for every part)."""
    ours = [dataclasses.asdict(r) for r in rows]
    if not path.is_file():
        return ours
    earlier = json.loads(path.read_text()).get("rows", [])
    return [r for r in earlier if r.get("part") not in parts] + ours


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    setup_logging(False)
    suffix = "_smoke" if args.smoke else ""
    out = args.out or RESULTS / f"scale{suffix}.json"
    md = args.md or RESULTS / f"scale{suffix}.md"
    work = args.work or Path(tempfile.mkdtemp(prefix="luperson-scale-"))
    ctx = Context(
        work=work, fractions=tuple(sorted(args.fractions)), smoke=args.smoke, timeout_s=args.timeout_s
    )
    rows: list[Measurement] = []
    try:
        for part in args.parts:
            start = time.monotonic()
            for row in importlib.import_module(PARTS[part]).run(ctx):
                row.note = (row.note + f" part={part}").strip()
                rows.append(row)
            print(f"{part}: {time.monotonic() - start:.0f} s", file=sys.stderr)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    table = [dict(r, part=r["note"].rpartition("part=")[2]) for r in merged(out, rows, args.parts)]
    write_json(out, {"rows": table, "fractions": list(ctx.fractions), "smoke": args.smoke})
    write_text(md, markdown(table))
    print(printed(table))
    return 0 if all(r["rc"] in (0, SKIPPED) for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
