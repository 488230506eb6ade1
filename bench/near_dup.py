#!/usr/bin/env python
"""Near-duplicate check at crawl scale: ``filter.near_dup`` against every pair compared.

Synthetic signatures shaped like the filter's: ``static_frames`` (5) 64-bit pHashes per video,
uniformly random, plus ``--planted`` (3 %) near copies of other rows (0-10 bits flipped per hash,
chained: a copy of a copy), in random order. Both methods take the signatures in plan order and
must give every row the same match (the kept row it duplicates and the mean distance, or none):
``near_duplicates``, the stage's (a multi-index over the kept videos, in batches), and
``every_pair``, the baseline and the tests' reference (the definition itself: each video compared
with every earlier one). Time: wall seconds of one call, the best of ``--repeats``; peak:
tracemalloc's peak during one more call (numpy's buffers included), on top of the signatures.

    python bench/near_dup.py            # both at 2,000 and 5,000 signatures, the index alone at 50,000
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
from filter.near_dup import Match, near_duplicates
from filter.phash import mean_distances
from filter.settings import FilterSettings

RESULTS = Path(__file__).resolve().parent / "results"
Matches = list[Match | None]


def every_pair(signatures: np.ndarray, max_distance: float) -> Matches:
    """What ``near_duplicates`` gives, by the definition: the (n, k) signatures in order, each
    compared with every earlier one (``filter.phash.mean_distances``: frame i with frame i); a row
    within ``max_distance`` of an earlier *kept* row duplicates the closest (the earliest on a
    tie), any other row is kept. n²/2 comparisons, nothing indexed or skipped."""
    kept = np.zeros(len(signatures), dtype=bool)
    result: Matches = []
    for row in range(len(signatures)):
        distances = mean_distances(signatures[row], signatures[:row])  # to every earlier row
        distances[~kept[:row]] = np.inf  # a dropped row duplicates nothing
        closest = int(np.argmin(distances)) if row else -1  # argmin: the first of the closest
        if closest >= 0 and distances[closest] <= max_distance:
            result.append((closest, float(distances[closest])))
        else:
            kept[row] = True
            result.append(None)
    return result


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


def measure(
    find: Callable[[np.ndarray, float], Matches], signatures: np.ndarray, distance: float, repeats: int
) -> tuple[Matches, dict]:
    """The matches ``find`` gives, and its best wall time and tracemalloc peak."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matches = find(signatures, distance)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    find(signatures, distance)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    dropped = sum(m is not None for m in matches)
    return matches, {"seconds": round(min(times), 5), "peak_mib": round(peak / 2**20, 3), "dropped": dropped}


def bench(sizes_both: list[int], sizes_new: list[int], planted: float, repeats: int) -> list[dict]:
    """One row per (size, method); ``agree`` and the baseline/index ratios on the sizes both ran."""
    cfg, rng, table = FilterSettings(), np.random.default_rng(0), []
    distance = cfg.near_duplicate_distance
    for n in sorted(set(sizes_both) | set(sizes_new)):
        signatures = synthetic_signatures(n, cfg.static_frames, planted, rng)
        found, new = measure(near_duplicates, signatures, distance, repeats)
        table.append({"n": n, "algorithm": "multi-index", **new})
        if n in sizes_both:
            expected, base = measure(every_pair, signatures, distance, repeats)
            table.append({"n": n, "algorithm": "every pair", **base, "agree": found == expected})
            table[-2]["agree"] = table[-1]["agree"]
            table[-1]["time_ratio"] = float(f"{base['seconds'] / new['seconds']:.3g}")
            table[-1]["peak_ratio"] = float(f"{base['peak_mib'] / new['peak_mib']:.3g}")
    return table


def print_table(table: list[dict]) -> None:
    print(
        f"{'signatures':>10} {'algorithm':12} {'seconds':>9} {'peak MiB':>9} {'dropped':>8}  every pair / index"
    )
    for r in table:
        ratio = f"{r['time_ratio']}x time, {r['peak_ratio']}x peak" if "time_ratio" in r else ""
        print(
            f"{r['n']:>10,} {r['algorithm']:12} {r['seconds']:9.3f} {r['peak_mib']:9.2f} {r['dropped']:>8}  {ratio}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--both", type=int, nargs="*", default=[2000, 5000], help="sizes both methods run")
    p.add_argument("--new", type=int, nargs="*", default=[50000], help="sizes only the multi-index runs")
    p.add_argument("--planted", type=float, default=0.03, help="share of rows that are near copies")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row; the best is kept")
    p.add_argument("--out", default=None, help="JSON (default bench/results/near_dup[_smoke].json)")
    p.add_argument("--smoke", action="store_true", help="300 and 600 signatures, both methods, one run")
    args = p.parse_args(argv)
    if args.smoke:
        args.both, args.new, args.repeats = [300, 600], [], 1
    table = bench(args.both, args.new, args.planted, args.repeats)
    print_table(table)
    result = {"planted": args.planted, "repeats": args.repeats, "rows": table}
    result["agree"] = all(r["agree"] for r in table if "agree" in r)
    out = Path(args.out or RESULTS / f"near_dup{'_smoke' if args.smoke else ''}.json")
    write_json(out, result)
    print(f"wrote {out}; both give every row the same match: {result['agree']}")
    return json.loads(out.read_text())


if __name__ == "__main__":
    main()
