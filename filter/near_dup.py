"""Near-duplicate videos by their frame hashes, first kept wins, without comparing every pair.

A signature is a video's k 64-bit pHashes (``filter.phash``); two videos match when the mean
Hamming distance of their frame hashes (frame i with frame i) is <= ``max_distance``. Walking the
videos in order, one that matches an earlier *kept* video is dropped as a duplicate of the closest
(the earliest on a tie); one that matches only dropped videos is kept (A~B and B~C but not A~C:
A and C kept, B dropped). Comparing every pair decides that directly (``bench/near_dup.py``'s
``every_pair``: the benchmark's baseline and the tests' reference), in quadratic time.

Videos are decided in batches, in order. A batch is looked up in ``filter.hamming_index`` (the kept
videos of earlier batches) and compared pair by pair within itself; every candidate is measured
exactly, as ``filter.phash.mean_distances`` measures, then the batch is decided video by video and
its kept videos are added to the index. Only kept videos are indexed, so a thousand copies of one
clip cost a thousand lookups that each meet one video, not a million comparisons.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from filter.hamming_index import HammingIndex

BATCH = 512  # videos decided together; compared with one another pair by pair
CAP = 1 << 18  # candidate pairs measured at a time (~10 MB each for 5 hashes)
Match = tuple[int, float]  # (row of the kept video it duplicates, mean distance)
Pairs = Iterator[tuple[np.ndarray, np.ndarray]]


def max_total(max_distance: float, k: int) -> int:
    """The largest total of k Hamming distances whose mean is <= ``max_distance`` (-1: none is).

    The mean of integers is exact in float64, so ``bits / k <= max_distance`` iff ``bits <= max_total``.
    """
    if not max_distance >= 0:  # negative or NaN: no distance passes, as in the loop
        return -1
    total = int(min(max_distance * k, 64 * k))
    while total < 64 * k and (total + 1) / k <= max_distance:
        total += 1
    while total >= 0 and total / k > max_distance:
        total -= 1
    return total


def near_duplicates(signatures: np.ndarray, max_distance: float, batch: int = BATCH) -> list[Match | None]:
    """For each (n, k) uint64 signature in order: None (kept) or the kept row it duplicates.

    >>> sigs = np.array([[0, 0], [1, 3], [7, 7]], dtype=np.uint64)  # distances 1.5 and 3.0 to row 0
    >>> near_duplicates(sigs, 2)
    [None, (0, 1.5), None]
    """
    n, k = signatures.shape
    result: list[Match | None] = [None] * n
    total = max_total(max_distance, k)
    if n == 0 or total < 0:
        return result
    index = HammingIndex(signatures, total)
    columns = np.ascontiguousarray(signatures.T)  # k x n: frame f of every video
    kept = np.zeros(n, dtype=bool)
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        found = [
            *close_pairs(columns, index.candidates(rows, CAP), total),  # kept rows of earlier batches
            *close_within(columns, rows, total),
        ]
        decide_batch(rows, found, kept, result)
        index.add(rows[kept[rows]])
    return result


def close_within(columns: np.ndarray, rows: np.ndarray, max_bits: int) -> Iterator[tuple[np.ndarray, ...]]:
    """(earlier row, later row, mean distance) of the pairs of ``rows`` within ``max_bits`` in all,
    every pair compared. ``columns``: k x n, frame f of every signature."""
    bits = np.zeros((len(rows), len(rows)), dtype=np.int16)  # b x b
    for hashes in columns[:, rows]:  # frame by frame: b
        bits += np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    first, second = np.nonzero(np.triu(bits <= max_bits, 1))
    yield rows[first], rows[second], bits[first, second] / len(columns)


def close_pairs(columns: np.ndarray, pairs: Pairs, max_bits: int) -> Iterator[tuple[np.ndarray, ...]]:
    """(earlier row, later row, mean distance) of the candidate ``pairs`` within ``max_bits`` in all.

    The distance is ``bits / k``: the same float as ``filter.phash.mean_distances`` (a mean of
    small integers is exact), so the decisions and the printed distances are the loop's.
    """
    for first, second in pairs:
        bits = np.zeros(len(first), dtype=np.int16)  # pairs
        for hashes in columns:  # frame by frame
            bits += np.bitwise_count(hashes[first] ^ hashes[second])
        close = bits <= max_bits
        yield first[close], second[close], bits[close] / len(columns)


def decide_batch(
    rows: np.ndarray,
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    kept: np.ndarray,
    result: list[Match | None],
) -> None:
    """Decide ``rows`` in order from their matches with earlier rows (in place: ``kept``, ``result``).

    ``found``: (earlier row, later row, distance) arrays holding every match of a row of ``rows``
    with a kept row of an earlier batch or with any earlier row of this batch.
    """
    parts = list(zip(*found, strict=True)) or [[np.zeros(0, dtype=np.int64)]] * 3
    first, second, distance = (np.concatenate(p) for p in parts)
    order = np.lexsort((first, second))  # by later row, then earlier row
    first, second, distance = first[order].tolist(), second[order], distance[order].tolist()
    starts = np.searchsorted(second, rows, "left").tolist()
    ends = np.searchsorted(second, rows, "right").tolist()
    for row, a, b in zip(rows.tolist(), starts, ends, strict=True):
        best: Match | None = None
        for i, d in zip(first[a:b], distance[a:b], strict=True):
            if kept[i] and (best is None or d < best[1]):  # strict: the earliest closest, as argmin
                best = (i, d)
        result[row] = best
        kept[row] = best is None


class NearDuplicates:
    """``near_duplicates`` one video at a time, for a build that meets the videos in order.

    ``check(signature)`` gives what ``near_duplicates`` gives for the next row of the same
    sequence: None (kept: remembered for the rows after it) or ``(row, mean distance)`` of the
    closest kept row, the earliest on a tie. Each check compares the signature with every kept
    one (a vectorised pass: about 1 ms at 46,000 kept videos of 5 hashes).
    """

    def __init__(self, k: int, max_distance: float) -> None:
        self.k = k
        self.total = max_total(max_distance, k)
        self.kept = np.empty((64, k), dtype=np.uint64)  # the first ``n`` rows hold the kept signatures
        self.rows = np.empty(64, dtype=np.int64)  # the row number of each
        self.n = 0
        self.seen = 0  # rows checked so far

    def check(self, signature: np.ndarray) -> Match | None:
        row, self.seen = self.seen, self.seen + 1
        if self.n and self.total >= 0:
            bits = np.zeros(self.n, dtype=np.int16)
            for f in range(self.k):
                bits += np.bitwise_count(self.kept[: self.n, f] ^ signature[f])
            best = int(np.argmin(bits))  # the first of the closest: the earliest kept row
            if bits[best] <= self.total:
                return int(self.rows[best]), float(bits[best]) / self.k
        if self.n == len(self.kept):
            self.kept = np.concatenate([self.kept, np.empty_like(self.kept)])
            self.rows = np.concatenate([self.rows, np.empty_like(self.rows)])
        self.kept[self.n], self.rows[self.n] = signature, row
        self.n += 1
        return None
