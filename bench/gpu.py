#!/usr/bin/env python
"""Every GPU figure of the project in one command, sized for one lent H200 (~10 minutes).

Parts (``--parts``; default: those that fit the 10 minutes; see ``bench/gpu_parts/parts.py``):
``shards`` (build-shards on the unlabeled crops, which the others stream), ``pretrain``
(bench/pretrain_throughput.py at batch 256 and 512, with peak memory), ``detect`` (bench/detect_throughput.py:
YOLOv5x + HRNet-W32), ``features`` (evaluate's feature extraction), ``decode`` (GPU JPEG decoding
vs CPU workers), ``transfer`` (bench/transfer.py, GPU-sized); not by default: ``ablations``
(Tables 2-4), ``data-scale`` (Table 7) and ``tracklets`` (issue 17: instance vs tracklet
positives). Each part starts only when its budget fits what is
left, and is stopped at it; it prints its elapsed time. The run prints one table and writes
``bench/results/gpu.json`` and ``docs/performance.md``.

    python bench/gpu.py                                  # the default parts on the GPU
    python bench/gpu.py --parts ablations data-scale     # the longer experiments
    python bench/gpu.py --parts tracklets                # instance vs tracklet positives
    python bench/gpu.py --smoke --out /tmp/g.json --md /tmp/g.md   # every part on the CPU, seconds
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__" and __spec__ is None:  # run by path: run as a module (see bench/__init__.py)
    from bench import run_as_module

    run_as_module("bench.gpu")

from bench.gpu_parts.budget import Clock, run_part, skipped
from bench.gpu_parts.context import Context
from bench.gpu_parts.parts import DEFAULT_TOTAL_S, PARTS, STARTUP_S
from bench.gpu_parts.report import markdown, printed
from common.atomic import write_json, write_text
from common.data import data_root
from common.log import setup_logging

RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs"
DATA = data_root()[0]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", choices=list(PARTS), default=None, help="default: the 10-minute set")
    p.add_argument(
        "--budget-s", type=float, default=None, help="whole run (default 600; more for long parts)"
    )
    p.add_argument("--smoke", action="store_true", help="every part on the CPU at tiny sizes (seconds)")
    p.add_argument("--out", type=Path, default=None, help="JSON (default bench/results/gpu[_smoke].json)")
    p.add_argument(
        "--md", type=Path, default=None, help="markdown (default docs/performance.md; smoke: beside --out)"
    )
    p.add_argument(
        "--work", type=Path, default=None, help="keep workspaces here (default: a deleted temp folder)"
    )
    p.add_argument("--data", type=Path, default=DATA, help="folder with unlabeled/, reid/, videos/")
    p.add_argument(
        "--part-budget", nargs="+", default=[], metavar="PART=SECONDS", help="override parts' budgets"
    )
    p.add_argument("--pretrain-batches", type=int, nargs="+", default=[256, 512], help="part pretrain")
    g = p.add_argument_group("transfer, ablations, data-scale (bench/transfer.py's sizes)")
    g.add_argument("--arch", default="resnet50")
    g.add_argument("--height", type=int, default=128)
    g.add_argument("--width", type=int, default=64)
    g.add_argument("--pretrain-epochs", type=int, default=10)
    g.add_argument("--pretrain-warmup", type=int, default=1, help="warm-up epochs of those")
    g.add_argument("--finetune-epochs", type=int, default=6)
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    g.add_argument("--datasets", nargs="+", default=["viper", "prid", "grid", "cuhk03"])
    g.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5, 1.0], help="data-scale shares")
    args = p.parse_args(argv)
    default_parts = args.parts is None
    chosen = args.parts or [name for name, part in PARTS.items() if part.default]
    if any(PARTS[name].needs_shards for name in chosen) and "shards" not in chosen:
        chosen.insert(0, "shards")
    args.parts = [name for name in PARTS if name in chosen]  # dependency order
    args.budgets = part_budgets(p, args.part_budget)
    if args.budget_s is None:
        asked = STARTUP_S + sum(args.budgets[name] for name in args.parts)
        args.budget_s = DEFAULT_TOTAL_S if default_parts else max(DEFAULT_TOTAL_S, asked)
    suffix = "_smoke" if args.smoke else ""
    args.out = args.out or RESULTS / f"gpu{suffix}.json"
    args.md = args.md or (args.out.with_suffix(".md") if args.smoke else DOCS / "performance.md")
    return args


def part_budgets(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, float]:
    """Every part's budget in seconds: its estimate, or ``PART=SECONDS`` from the command line."""
    budgets = {name: part.budget_s for name, part in PARTS.items()}
    for pair in pairs:
        name, _, seconds = pair.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if name not in PARTS or value <= 0:
            parser.error(f"--part-budget: expected PART=SECONDS with a known part, got {pair!r}")
        budgets[name] = value
    return budgets


def no_gpu() -> str | None:
    """One line when no CUDA GPU is visible, else None."""
    import torch

    if torch.cuda.is_available():
        return None
    why = "torch.cuda.is_available() is False"
    return f"bench/gpu.py: no GPU is visible ({why}); --smoke runs every part on the CPU"


def commit() -> str:
    """The repository's commit, ``+dirty`` when the tree has changes; ``unknown`` outside git."""

    def git(*words: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(REPO), *words], capture_output=True, text=True)

    try:
        head, status = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain")
    except OSError:
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def describe(args: argparse.Namespace, argv: list[str], device: str) -> dict[str, Any]:
    """The run's header: command, device, versions, date."""
    import torch

    return {
        "command": " ".join(["python bench/gpu.py", *argv]),
        "smoke": args.smoke,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (smoke run)",
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "budget_s": args.budget_s,
    }


def run_all(args: argparse.Namespace, work: Path, clock: Clock, report: dict[str, Any]) -> None:
    """Every chosen part in order, each under its budget; records land in ``report["parts"]``."""
    ctx = Context(work=work, device=report["device"], smoke=args.smoke, data=args.data, options=args)
    for i, name in enumerate(args.parts):
        part, later = PARTS[name], sum(args.budgets[n] for n in args.parts[i + 1 :])
        if part.needs_shards and ctx.shards_root is None:
            record = skipped(
                name, args.budgets[name], "it streams the shards, and the shards part did not finish"
            )
        else:
            record = run_part(name, part.function(), ctx, args.budgets[name], part.elastic, clock, later)
        report["parts"][name] = record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    start = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    clock = Clock(args.budget_s, start)
    line = None if args.smoke else no_gpu()
    if line:
        print(line, file=sys.stderr)
        raise SystemExit(2)
    setup_logging()
    report = describe(args, argv, "cpu" if args.smoke else "cuda")
    report["parts"], report["startup_s"] = {}, round(clock.elapsed(), 1)
    print(
        f"[gpu.py] parts {' '.join(args.parts)}; budget {args.budget_s:.0f} s; "
        f"start-up (imports, CUDA) took {report['startup_s']:.1f} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        work = args.work or Path(tmp)
        report["work"] = str(work)
        run_all(args, work, clock, report)
    report["seconds"] = round(clock.elapsed(), 1)
    print(printed(report))
    write_json(args.out, report)
    write_text(args.md, markdown(report))
    print(f"wrote {args.out} and {args.md}")
    return report


if __name__ == "__main__":
    main()
