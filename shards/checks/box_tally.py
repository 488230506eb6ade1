"""Boxes per detection status in every video, from one pass over ``detections/``: what ``stats.json``
(boxes per status, detectors) and ``report.html`` (counts per video, the examples) both need.

Each box file is read once, through ``common.manifests.boxes`` (its statuses checked), with three
small columns and no keypoints, and reduced at once to one row of counts: memory is a few integers
per video whatever the number of boxes (the report had kept every box of every video, 1.9M rows
at 46k demo-sized videos, and read every file twice). The examples are then drawn from the counts
(:func:`pick`) and only the files holding them are read again.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np

from common.manifests import boxes

COLUMNS = ["status", "valid", "detector"]


@dataclasses.dataclass(frozen=True)
class BoxTally:
    """``counts[i, j]``: boxes of status ``boxes.STATUSES[j]`` in ``files[i]`` (video ``video_ids[i]``)."""

    files: list[Path]
    counts: np.ndarray  # files x STATUSES, int64
    valid: int
    detectors: list[str]

    @property
    def video_ids(self) -> list[str]:
        return [p.stem for p in self.files]  # a box file is named by its video id

    def by_status(self) -> dict[str, int]:
        """Boxes per status over every file, the statuses present only, in ``STATUSES`` order."""
        totals = self.counts.sum(axis=0)
        return {s: int(n) for s, n in zip(boxes.STATUSES, totals, strict=True) if n}


def tally(root: Path) -> BoxTally:
    """Count the boxes of every ``boxes.files(root)``; a damaged file or a status outside
    ``boxes.STATUSES`` is ``boxes.read``'s one-line ``UsageError`` naming it."""
    files = boxes.files(Path(root))
    column = {s: j for j, s in enumerate(boxes.STATUSES)}
    counts = np.zeros((len(files), len(boxes.STATUSES)), np.int64)
    valid, detectors = 0, set()
    for i, path in enumerate(files):
        table = boxes.read(path, COLUMNS)
        for status, n in Counter(table["status"].tolist()).items():
            counts[i, column[status]] = n
        valid += int(table["valid"].sum())
        detectors.update(d for d in table["detector"].dropna().unique().tolist())
    return BoxTally(files, counts, valid, sorted(map(str, detectors)))


def pick(counts: np.ndarray, per_status: int, seed: int) -> list[tuple[str, int, int]]:
    """Up to ``per_status`` boxes of each status drawn uniformly without replacement from all boxes
    of that status (seeded, the same on every run): ``(status, file index, n)``, the box being the
    ``n``-th of that status in its file; grouped by status in ``STATUSES`` order, then by position.

    >>> pick(np.array([[2, 0], [3, 1]]), 9, 0)
    [('ok', 0, 0), ('ok', 0, 1), ('ok', 1, 0), ('ok', 1, 1), ('ok', 1, 2), ('low_score', 1, 0)]
    """
    chosen = []
    for j, status in enumerate(boxes.STATUSES[: counts.shape[1]]):
        column = counts[:, j]
        total = int(column.sum())
        if not total:
            continue
        rng = np.random.default_rng([seed, j])
        drawn = np.sort(rng.choice(total, size=min(per_status, total), replace=False))
        ends = np.cumsum(column)  # the boxes of file i are positions ends[i] - column[i] .. ends[i] - 1
        files = np.searchsorted(ends, drawn, side="right")
        chosen += [
            (status, int(f), int(d - (ends[f] - column[f]))) for f, d in zip(files, drawn, strict=True)
        ]
    return chosen
