#!/usr/bin/env python
"""Near-duplicate check at crawl scale: ``filter.near_dup`` against the quadratic loop it replaced.

Synthetic signatures shaped like the filter's: ``static_frames`` (5) 64-bit pHashes per video,
uniformly random, plus ``--planted`` (3 %) near copies of other rows (0-10 bits flipped per hash,
chained: a copy of a copy), in random order. Both algorithms run as the stage runs them,
``mark_near_duplicates`` on rows and probes holding hex hashes, and must give every row the same
status and reason. Time: wall seconds of one call, the best of ``--repeats``; peak: tracemalloc's
peak during one more call (numpy's buffers included), on top of the rows and probes.

    python bench/near_dup.py            # both at 2,000 and 5,000 signatures, the new one at 50,000
    python bench/near_dup.py --smoke    # both at 300 and 600, one run (a second or two)
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import write_json
from filter.phash import mean_distances
from filter.probe import Probe
from filter.settings import FilterSettings
from filter.videos import mark_near_duplicates

RESULTS = Path(__file__).resolve().parent / "results"
Rows = list[dict[str, Any]]


def old_mark_near_duplicates(rows: Rows, probes: dict[str, Probe], cfg: FilterSettings) -> None:
    """``filter.videos.mark_near_duplicates`` before issue 14, verbatim but for today's column names
    and probes keyed by video id: every kept row compared with each later one, the kept matrix
    grown by ``np.vstack`` (the baseline, and the tests' reference; rows come in plan order)."""
    kept_ids: list[str] = []
    kept_hashes = np.zeros((0, cfg.static_frames), dtype=np.uint64)
    for row in rows:
        if row["status"] != "ok":
            continue
        signature = [int(h, 16) for h in probes[row["video_id"]].hashes]
        if len(signature) == cfg.static_frames and len(kept_ids):
            distances = mean_distances(signature, kept_hashes)
            j = int(np.argmin(distances))
            if distances[j] <= cfg.near_duplicate_distance:
                row.update(
                    status="near_duplicate", reason=f"like {kept_ids[j]} (distance {distances[j]:.1f})"
                )
                continue
        if len(signature) == cfg.static_frames:
            kept_ids.append(row["video_id"])
            kept_hashes = np.vstack([kept_hashes, np.asarray(signature, dtype=np.uint64)[None, :]])


def synthetic_signatures(n: int, k: int, planted: float, rng: np.random.Generator) -> np.ndarray:
    """(n, k) uint64: random hashes, ``planted`` of the rows near copies of an earlier row (copies
    included): a fifth of them exact, the rest with 0-10 bits of each hash flipped; then shuffled."""
    signatures = rng.integers(0, 2**64, size=(n, k), dtype=np.uint64, endpoint=False)
    n_copies = int(n * planted)
    for row in range(max(n - n_copies, 1), n):
        source = signatures[rng.integers(0, row)]
        flips = rng.integers(0, 11, size=k) * (rng.random() >= 0.2)  # per hash: means 0-10, threshold 6
        masks = [sum(1 << int(b) for b in rng.choice(64, size=f, replace=False)) for f in flips]
        signatures[row] = source ^ np.array(masks, dtype=np.uint64)
    return signatures[rng.permutation(n)]


def stage_input(signatures: np.ndarray) -> tuple[Rows, dict[str, Probe]]:
    """Rows and probes as ``filter_rows`` hands them to ``mark_near_duplicates``; the ids sort in
    row order, so plan order is row order."""
    rows = [{"video_id": f"v{i:06d}", "status": "ok", "reason": ""} for i in range(len(signatures))]
    probes = {f"v{i:06d}": Probe(hashes=[f"{int(h):016x}" for h in sig]) for i, sig in enumerate(signatures)}
    return rows, probes


def measure(mark: Callable, signatures: np.ndarray, cfg: FilterSettings, repeats: int) -> tuple[Rows, dict]:
    """The rows ``mark`` leaves, and its best wall time and tracemalloc peak on fresh copies."""
    times = []
    for _ in range(repeats):
        rows, probes = stage_input(signatures)
        start = time.perf_counter()
        mark(rows, probes, cfg)
        times.append(time.perf_counter() - start)
    fresh, probes = stage_input(signatures)
    tracemalloc.start()
    mark(fresh, probes, cfg)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    dropped = sum(r["status"] == "near_duplicate" for r in rows)
    return rows, {"seconds": round(min(times), 5), "peak_mib": round(peak / 2**20, 3), "dropped": dropped}


def bench(sizes_both: list[int], sizes_new: list[int], planted: float, repeats: int) -> list[dict]:
    """One row per (size, algorithm); ``agree`` and the old/new ratios on the sizes both ran."""
    cfg, rng, table = FilterSettings(), np.random.default_rng(0), []
    for n in sorted(set(sizes_both) | set(sizes_new)):
        signatures = synthetic_signatures(n, cfg.static_frames, planted, rng)
        new_rows, new = measure(mark_near_duplicates, signatures, cfg, repeats)
        table.append({"n": n, "algorithm": "multi-index (new)", **new})
        if n in sizes_both:
            old_rows, old = measure(old_mark_near_duplicates, signatures, cfg, repeats)
            table.append({"n": n, "algorithm": "quadratic (old)", **old, "agree": old_rows == new_rows})
            table[-2]["agree"] = table[-1]["agree"]
            table[-1]["time_ratio"] = float(f"{old['seconds'] / new['seconds']:.3g}")
            table[-1]["peak_ratio"] = float(f"{old['peak_mib'] / new['peak_mib']:.3g}")
    return table


def print_table(table: list[dict]) -> None:
    print(f"{'signatures':>10} {'algorithm':18} {'seconds':>9} {'peak MiB':>9} {'dropped':>8}  old/new")
    for r in table:
        ratio = f"{r['time_ratio']}x time, {r['peak_ratio']}x peak" if "time_ratio" in r else ""
        print(
            f"{r['n']:>10,} {r['algorithm']:18} {r['seconds']:9.3f} {r['peak_mib']:9.2f} {r['dropped']:>8}  {ratio}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--both", type=int, nargs="*", default=[2000, 5000], help="sizes both algorithms run")
    p.add_argument("--new", type=int, nargs="*", default=[50000], help="sizes only the new one runs")
    p.add_argument("--planted", type=float, default=0.03, help="share of rows that are near copies")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row; the best is kept")
    p.add_argument("--out", default=None, help="JSON (default bench/results/near_dup[_smoke].json)")
    p.add_argument("--smoke", action="store_true", help="300 and 600 signatures, both algorithms, one run")
    args = p.parse_args(argv)
    if args.smoke:
        args.both, args.new, args.repeats = [300, 600], [], 1
    table = bench(args.both, args.new, args.planted, args.repeats)
    print_table(table)
    result = {"planted": args.planted, "repeats": args.repeats, "rows": table}
    result["agree"] = all(r["agree"] for r in table if "agree" in r)
    out = Path(args.out or RESULTS / f"near_dup{'_smoke' if args.smoke else ''}.json")
    write_json(out, result)
    print(f"wrote {out}; old and new agree on every row: {result['agree']}")
    return json.loads(out.read_text())


if __name__ == "__main__":
    main()
