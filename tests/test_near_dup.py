"""The near-duplicate check (``filter.near_dup``) against the definition, every pair compared.

The reference is ``bench.near_dup.every_pair`` (also the benchmark's baseline), itself checked on
chains and ties made by hand: every test asks for the same match on every row, on random
signatures with planted near copies, on one clip copied thousands of times and on the real sample
videos' pHashes; the stage's ``mark_near_duplicates`` for the same status and reason on every row.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import filter.hamming_index
import filter.near_dup
from bench.near_dup import every_pair, main, synthetic_signatures
from filter.hamming_index import HammingIndex
from filter.near_dup import NearDuplicates, max_total, near_duplicates
from filter.probe import Probe, probe_video
from filter.settings import FilterSettings
from filter.videos import mark_near_duplicates

K = FilterSettings().static_frames


def stage_input(signatures: np.ndarray, mixed: bool = False) -> tuple[list[dict], dict[str, Probe]]:
    """Rows and probes as ``filter_rows`` hands them to ``mark_near_duplicates``; the ids sort in
    row order, so plan order is row order. ``mixed``: some rows already dropped by an earlier rule
    and some probes with too few hashes, which the check must leave out."""
    rows = [{"video_id": f"v{i:06d}", "status": "ok", "reason": ""} for i in range(len(signatures))]
    probes = {f"v{i:06d}": Probe(hashes=[f"{int(h):016x}" for h in sig]) for i, sig in enumerate(signatures)}
    if mixed:
        for i in range(0, len(rows), 17):
            rows[i].update(status="static", reason="max frame difference 0.1")
        for i in range(5, len(rows), 23):
            probes[rows[i]["video_id"]].hashes = probes[rows[i]["video_id"]].hashes[:-1]
    return rows, probes


def decisions(signatures: np.ndarray, distance: float, mixed: bool = False) -> list[tuple[str, str]]:
    """(status, reason) of every row after the stage's ``mark_near_duplicates``."""
    rows, probes = stage_input(signatures, mixed)
    mark_near_duplicates(rows, probes, FilterSettings(near_duplicate_distance=distance))
    return [(r["status"], r["reason"]) for r in rows]


def expected_decisions(signatures: np.ndarray, distance: float, mixed: bool = False) -> list[tuple[str, str]]:
    """What ``decisions`` must give: rows of another status and probes short of K hashes left as
    they are, the others decided by ``every_pair`` in row order."""
    rows, probes = stage_input(signatures, mixed)
    taking = [i for i, r in enumerate(rows) if r["status"] == "ok" and len(probes[r["video_id"]].hashes) == K]
    for i, match in zip(taking, every_pair(signatures[taking], distance), strict=True):
        if match is not None:
            like = rows[taking[match[0]]]["video_id"]
            rows[i].update(status="near_duplicate", reason=f"like {like} (distance {match[1]:.1f})")
    return [(r["status"], r["reason"]) for r in rows]


@pytest.mark.parametrize("distance", [0, 1, 6, 10, 15, 16, 20, 64])
def test_same_rows_as_every_pair_on_planted_duplicates(distance):
    """Thresholds on both sides of the index's all-pairs fallback (16 and up), rows of other reasons."""
    signatures = synthetic_signatures(1500, K, 0.3, np.random.default_rng(distance))
    expected = expected_decisions(signatures, distance, mixed=True)
    assert decisions(signatures, distance, mixed=True) == expected
    reasons = [r for r, _ in expected]
    assert reasons.count("near_duplicate") > 0 and reasons.count("ok") > 0 and "static" in reasons


@pytest.mark.parametrize("batch", [1, 2, 7, 100, 5000])
def test_batch_size_changes_nothing(batch):
    signatures = synthetic_signatures(1200, K, 0.3, np.random.default_rng(1))
    result = near_duplicates(signatures, 6, batch)
    assert sum(m is not None for m in result) > 0
    assert result == every_pair(signatures, 6)  # the same rows, and the very floats of mean_distances


def same_mask(*bits: int) -> list[int]:
    """A signature whose K hashes are all the mask of ``bits``: its mean distances are whole bits."""
    return [sum(1 << b for b in bits)] * K


@pytest.mark.parametrize("batch", [1, 2, 3, 512])
def test_chains_and_ties_by_hand(batch):
    rng = np.random.default_rng(0)
    signatures = np.array(
        [
            same_mask(),  # 0 A: kept
            same_mask(0, 1),  # 1 B: 2 from A
            same_mask(*range(8)),  # 2 C: 8 from A, 6 from B, but B is dropped: kept
            same_mask(8, 9, 10, 11),  # 3 D: 4 from A, 12 from C
            same_mask(0, 1, 2, 3),  # 4 E: 4 from A and 4 from C: the earlier wins
            same_mask(0, 1, 2, 3, 4),  # 5 F: 5 from A, 3 from C: the closer wins
            rng.integers(0, 2**63, K).tolist(),  # 6 G: far from all
            same_mask(0, 1),  # 7 H: B again: 0 from the dropped B, 2 from A
        ],
        dtype=np.uint64,
    )
    expected = [None, (0, 2.0), None, (0, 4.0), (0, 4.0), (2, 3.0), None, (0, 2.0)]
    assert near_duplicates(signatures, 6, batch) == expected
    assert every_pair(signatures, 6) == expected  # the reference itself


def test_one_clip_copied_thousands_of_times():
    """Only kept rows are indexed: 3,000 copies are 3,000 lookups meeting one row (and the same rows)."""
    rng = np.random.default_rng(2)
    signatures = np.repeat(rng.integers(0, 2**63, (1, K)).astype(np.uint64), 3000, axis=0)
    signatures[:, 0] ^= np.uint64(1) << rng.integers(0, 64, 3000).astype(np.uint64)
    result = near_duplicates(signatures, 6)
    assert result[0] is None and all(m is not None and m[0] == 0 for m in result[1:])
    assert result == every_pair(signatures, 6)


@pytest.mark.parametrize("max_bits", [0, 1, 2, 15, 30, 31, 45, 60])
def test_index_brings_up_every_pair_within_the_bound(max_bits):
    """Pigeonhole at its edge: each query differs from its row in exactly ``max_bits`` random bits."""
    rng = np.random.default_rng(max_bits)
    base = rng.integers(0, 2**63, (300, K)).astype(np.uint64)
    flips = np.zeros((300, K * 64), dtype=np.uint8)
    for row in flips:
        row[rng.choice(K * 64, max_bits, replace=False)] = 1
    queries = base ^ np.packbits(flips, axis=1).view(np.uint64)
    index = HammingIndex(np.concatenate([base, queries]), max_bits)
    index.add(np.arange(300))
    pairs = [p for d, q in index.candidates(np.arange(300, 600), 1 << 18) for p in zip(d, q, strict=True)]
    assert len(pairs) == len(set(pairs))  # each pair once
    assert {(i, i + 300) for i in range(300)} <= set(pairs)
    assert len(pairs) < 300 * 300 / 2  # and not all pairs (the index is at its weakest at 60)


def test_max_total_matches_the_float_comparison():
    assert [max_total(d, 5) for d in (0, 6, 6.2, 6.19, 63.9, 64, 1e9)] == [0, 30, 31, 30, 319, 320, 320]
    assert max_total(-1, 5) == max_total(math.nan, 5) == -1
    for d in np.linspace(0, 10, 101):
        assert all((t / 5 <= d) == (t <= max_total(d, 5)) for t in range(60))


@pytest.fixture(scope="module")
def real_signatures(videos_dir):
    """The sample videos' pHash signatures, as the filter computes them."""
    probes = [probe_video(p, K, 64) for p in sorted(videos_dir.iterdir())]
    return np.array([[int(h, 16) for h in p.hashes] for p in probes if len(p.hashes) == K], dtype=np.uint64)


@pytest.mark.parametrize("distance", [0, 3, 6, 10, 16, 24])
def test_same_rows_as_every_pair_on_real_hashes(real_signatures, distance):
    """600 rows, each a sample video's real signature with 0-12 bits per hash flipped, in random order."""
    rng = np.random.default_rng(distance)
    picks = real_signatures[rng.integers(0, len(real_signatures), 600)]  # 600 x K
    flips = [rng.choice(64, rng.integers(0, 13), replace=False) for _ in range(600 * K)]
    noise = np.array([sum(1 << int(b) for b in f) for f in flips], dtype=np.uint64).reshape(600, K)
    signatures = picks ^ noise
    expected = expected_decisions(signatures, distance, mixed=True)
    assert decisions(signatures, distance, mixed=True) == expected


def test_docstring_examples():
    for module in (filter.near_dup, filter.hamming_index):
        assert doctest.testmod(module).failed == 0


def test_bench_smoke(tmp_path):
    """``bench/near_dup.py --smoke`` in-process: both methods at two sizes, the same matches."""
    result = main(["--smoke", "--out", str(tmp_path / "near_dup.json")])
    table = result["rows"]
    assert [(r["n"], r["algorithm"]) for r in table] == [
        (300, "multi-index"),
        (300, "every pair"),
        (600, "multi-index"),
        (600, "every pair"),
    ]
    assert result["agree"] is True and all(r["agree"] for r in table)
    for new, base in (table[0:2], table[2:4]):
        # random hashes are ~32 bits apart: only planted copies within 6 bits are dropped
        assert 0 < new["dropped"] == base["dropped"] <= int(new["n"] * result["planted"])


@pytest.mark.parametrize("distance", [0, 3, 6, 16])
def test_one_at_a_time_decides_as_the_batch(distance):
    """The streaming build's ``NearDuplicates`` (one video at a time, in plan order) gives every
    row the batch walk's match, distance and tie-break, on planted copies and exact ties."""
    rng = np.random.default_rng(100 + distance)
    signatures = synthetic_signatures(900, K, 0.4, rng)
    signatures[300:310] = signatures[5]  # exact copies: ties broken by the earliest kept row
    walk = NearDuplicates(K, distance)
    one_by_one = [walk.check(sig) for sig in signatures]
    assert one_by_one == near_duplicates(signatures, distance)
    assert sum(m is not None for m in one_by_one) > 50


def test_near_duplicates_are_decided_in_plan_order_not_manifest_order():
    """Of two copies the one whose id sorts first is kept, whichever the manifest lists first."""
    sig = synthetic_signatures(1, K, 0.0, np.random.default_rng(3))[0]
    probes = {vid: Probe(hashes=[f"{int(h):016x}" for h in sig]) for vid in ("zz_copy", "aa_first")}
    rows = [{"video_id": vid, "status": "ok", "reason": ""} for vid in ("zz_copy", "aa_first")]
    mark_near_duplicates(rows, probes, FilterSettings())
    assert [(r["video_id"], r["status"]) for r in rows] == [("zz_copy", "near_duplicate"), ("aa_first", "ok")]
    assert rows[0]["reason"] == "like aa_first (distance 0.0)"
