#!/usr/bin/env python
"""Shard throughput: samples/s written by build-shards, samples/s read + decoded per core.

Write: ``build-shards --from-images`` (JPEG kept byte-for-byte) against a baseline that decodes
and re-encodes every crop at quality 95 into the same tar writer, both in one process.
Read: pre-training's own loader (``pretrain.data.make_loader``: tar reader, shuffle buffer,
decode, resize to 256x128, batches of 64) over the crops in shards (in a random order, so that
shards drawn with replacement hold the same mix of crops as the files) against a torch
``DataLoader`` over the same crops as separate files (shuffled, the same decode + resize and
batches), one process with one thread (``--workers 0``: per core); the two alternate for
``--rounds`` rounds and each row is the median round (the machine is shared).
Decode (``--decode-device``, ``measure_decode``): one loader worker's decode + resize against
one batched ``torchvision.io.decode_jpeg`` call on the device + the batched resize (``gpu_decode``).
Export: ``export-lmdb`` (the shards -> the official LUPerson LMDB + keys.pkl) against the release's
``LUP/convert_lmdb.py`` loop (read each loose file, ``txn.put``, one commit per folder).
Engines (``--engines``): build-shards as Ray tasks (a local Ray with ``--build-workers`` CPUs,
started before the clock) against the local process pool with as many workers, on the crops and,
with ``--workspace WS`` (video_filter.parquet + detections/ from filter and detect), on videos; the
cost per image / per video is wall seconds x workers / items.
Every baseline runs in the same process, right before the measured method.

    python bench/shard_throughput.py                       # the 14,834 crops of ../shared/data/unlabeled
    python bench/shard_throughput.py --smoke               # 300 crops, 2 rounds, decode on the CPU (seconds)
    python bench/shard_throughput.py --workers 0 2 --rounds 5 --decode-device cuda
    python bench/shard_throughput.py --engines --workspace WS --limit 3000   # local pool vs Ray
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__" and __spec__ is None:  # run by path: run as a module (see bench/__init__.py)
    from bench import run_as_module

    run_as_module("bench.shard_throughput")

from bench.shard_read import decode_rows, measure_decode, mixed_shards, read_rows, row, timed
from common.atomic import write_json
from common.data import data_root
from common.manifests import video_filter
from common.media.images import decode_bgr, encode_jpeg
from common.ray_cluster import ray_init
from shards.build import build_shards
from shards.release.export_lmdb import export_lmdb
from shards.release.lmdb_keys import format_key
from shards.settings import ExportLmdbSettings, ShardSettings
from shards.sources.images import list_images
from shards.write.tarshard import ShardWriter, shard_name

__all__ = ["measure_decode", "main"]

RESULTS = REPO / "bench" / "results"
UNLABELED = data_root()[0] / "unlabeled"


def subset(source: Path, n: int | None, dest: Path) -> Path:
    """``source`` itself, or a copy of its first ``n`` images (sorted) under ``dest``."""
    if n is None:
        return source
    paths = list_images(source).images
    for rel in paths[:n]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / rel, dest / rel)
    return dest


def write_reencode(folder: Path, out: Path, max_samples: int) -> int:
    """Baseline writer: decode + re-encode (q95) every crop, same tar writer, one process."""
    paths = list_images(folder).images
    out.mkdir(parents=True)
    writer, number = None, 0
    for rel in paths:
        jpg = encode_jpeg(decode_bgr((folder / rel).read_bytes()), 95)
        files = {"jpg": jpg, "json": json.dumps({"path": rel}).encode()}
        key = rel.replace("/", "_").rsplit(".", 1)[0]
        if writer is not None and not writer.fits(key, files):
            writer.close()
            writer, number = None, number + 1
        if writer is None:
            writer = ShardWriter(out / shard_name(number), max_samples, 1 << 40)
        writer.add(key, files)
    if writer is not None:
        writer.close()
    return len(paths)


def convert_lmdb_loop(folder: Path, out: Path) -> int:
    """Baseline export, the release's way: every loose file read and put, one commit per folder."""
    import lmdb

    paths = list_images(folder).images
    env = lmdb.open(str(out), map_size=1 << 34)
    txn, previous = env.begin(write=True), None
    for m, rel in enumerate(paths):
        parent = rel.rpartition("/")[0]
        if previous is not None and parent != previous:
            txn.commit()
            txn = env.begin(write=True)
        previous = parent
        txn.put(format_key(0, 0, 0, m).encode("ascii"), (folder / rel).read_bytes())
    txn.commit()
    env.close()
    return len(paths)


def timed_build(cfg: ShardSettings, root: Path) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    summary = build_shards(cfg, root)
    return summary, time.perf_counter() - start


def engine_rows(folder: Path, workspace: Path | None, tmp: Path, workers: int, max_samples: int) -> list:
    """build-shards on the local pool (baseline) and as Ray tasks, on crops and on videos."""
    ray_init(None, workers)  # start-up (~5 s) is paid once per cluster, not per build: not timed
    rows = []
    for engine in ("local", "ray"):
        cfg = ShardSettings(from_images=str(folder), max_samples=max_samples, workers=workers, engine=engine)
        summary, s = timed_build(cfg, tmp / f"images_{engine}")
        n = summary["samples"]
        name = f"engines: --from-images, {'Ray tasks' if engine == 'ray' else 'local pool'}, {workers} CPUs"
        cost = {"worker_ms_per_image": round(1000 * s * workers / n, 2)}
        rows.append(
            row(name + (" (baseline)" if engine == "local" else ""), n, s, rows[0] if rows else None, **cost)
        )
    if workspace is None:
        return rows
    first = len(rows)
    for engine in ("local", "ray"):
        root = tmp / f"videos_{engine}"
        root.mkdir()
        videos = video_filter.read(workspace)
        videos["path"] = [str((workspace / path).resolve()) for path in videos["path"]]
        video_filter.write(root, videos)
        shutil.copytree(workspace / "detections", root / "detections")
        cfg = ShardSettings(max_samples=max_samples, workers=workers, engine=engine)
        summary, s = timed_build(cfg, root)
        videos = summary["videos_with_detections"]
        name = f"engines: {videos} videos' detections, {'Ray tasks' if engine == 'ray' else 'local pool'}, {workers} CPUs"
        cost = {"videos": videos, "worker_s_per_video": round(s * workers / videos, 3)}
        cost["worker_ms_per_crop"] = round(1000 * s * workers / max(summary["samples"], 1), 2)
        baseline = rows[first] if engine == "ray" else None
        rows.append(
            row(name + (" (baseline)" if engine == "local" else ""), summary["samples"], s, baseline, **cost)
        )
    return rows


def warm_up() -> None:
    """Import what the measured code imports, so that no row pays for it; one thread per process."""
    import cv2
    import lmdb  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import torch.utils.data
    import tqdm  # noqa: F401
    import webdataset  # noqa: F401

    import pretrain.data  # noqa: F401
    import pretrain.views  # noqa: F401

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    warm_up()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        folder = subset(Path(args.images), args.limit, tmp / "crops")
        n, s = timed(write_reencode, folder, tmp / "baseline", args.max_samples)
        base = row("write: decode + re-encode q95, 1 process (baseline)", n, s, None)
        rows.append(base)
        for workers in sorted({1, args.build_workers}):
            cfg = ShardSettings(from_images=str(folder), max_samples=args.max_samples, workers=workers)
            start = time.perf_counter()
            summary = build_shards(cfg, tmp / f"ws{workers}")
            name = f"write: build-shards --from-images, workers={workers}"
            rows.append(row(name, summary["samples"], time.perf_counter() - start, base))
        n, s = timed(convert_lmdb_loop, folder, tmp / "baseline_lmdb")
        base = row("export: LUP/convert_lmdb.py loop over loose files (baseline)", n, s, None)
        summary, s = timed(export_lmdb, ExportLmdbSettings(output=str(tmp / "lup_lmdb")), tmp / "ws1")
        rows += [base, row("export: export-lmdb from the shards", summary["images"], s, base)]
        files = [folder / rel for rel in list_images(folder)[0]]
        shards = mixed_shards(files, tmp / "mixed", args.max_samples)
        for workers in args.workers:
            rows += read_rows(files, shards, workers, args.rounds)
        if args.decode_device:
            rows += decode_rows(str(tmp / "ws1" / "shards"), args.decode_device, args.decode_seconds)
        if args.engines:
            workspace = Path(args.workspace).resolve() if args.workspace else None
            rows += engine_rows(folder, workspace, tmp, args.build_workers, args.max_samples)
    return {"images": str(args.images), "limit": args.limit, "max_samples": args.max_samples, "rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = [f"{'method':<62} {'samples':>8} {'seconds':>8} {'samples/s':>10} {'vs baseline':>12}  cost"]
    for r in result["rows"]:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        cost = "  ".join(f"{k}={v}" for k, v in r.items() if k.startswith(("worker_", "round_")))
        lines.append(
            f"{r['name']:<62} {r['samples']:>8,} {r['seconds']:>8.2f} {r['samples_per_s']:>10,.0f} {ratio:>12}  {cost}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--images", default=str(UNLABELED), help="folder tree of crops")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--max-samples", type=int, default=1000, help="samples per shard")
    p.add_argument("--build-workers", type=int, default=2, help="build-shards worker processes")
    p.add_argument("--workers", type=int, nargs="+", default=[0], help="loader workers (0: per core)")
    p.add_argument("--rounds", type=int, default=3, help="alternating loose/shard read rounds (median)")
    p.add_argument(
        "--decode-device", default=None, help="also time measure_decode on this device (cuda, cpu)"
    )
    p.add_argument("--decode-seconds", type=float, default=5.0, help="seconds each decode is timed")
    p.add_argument("--engines", action="store_true", help="also build-shards as Ray tasks vs the local pool")
    p.add_argument("--workspace", default=None, help="with --engines: a workspace with detections to cut")
    p.add_argument("--smoke", action="store_true", help="300 crops, 2 rounds, decode on the CPU for 0.2 s")
    p.add_argument("--out", default=str(RESULTS / "shards.json"), help="JSON result file")
    args = p.parse_args(argv)
    if args.smoke:
        args.limit, args.max_samples, args.workers, args.build_workers = 300, 50, [0], 1
        args.rounds, args.decode_device, args.decode_seconds = 2, "cpu", 0.2
    result = run(args)
    print(table(result))
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
