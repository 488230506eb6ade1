"""The paper's small-scale and few-shot training subsets (§5.3, Table 6).

* small-scale: a random share of the training identities, with all their images;
* few-shot: every identity, with a random share of its images (at least one), so that each
  identity keeps about the same share.

Both draw from ``numpy.random.default_rng(seed)`` and only ever touch the training part.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from finetune.records import Sample


def small_scale(train: list[Sample], id_share: float, seed: int) -> list[Sample]:
    """All images of ``round(id_share * ids)`` (at least 1) randomly chosen identities."""
    if id_share >= 1.0:
        return list(train)
    pids = sorted({s.pid for s in train})
    n_keep = max(1, round(id_share * len(pids)))
    keep = set(np.random.default_rng(seed).choice(pids, size=n_keep, replace=False).tolist())
    return [s for s in train if s.pid in keep]


def few_shot(train: list[Sample], image_share: float, seed: int) -> list[Sample]:
    """``round(image_share * n)`` (at least 1) random images of each identity with n images."""
    if image_share >= 1.0:
        return list(train)
    rng = np.random.default_rng(seed)
    by_pid: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(train):
        by_pid[s.pid].append(i)
    keep: set[int] = set()
    for pid in sorted(by_pid):
        idx = by_pid[pid]
        n_keep = max(1, round(image_share * len(idx)))
        keep.update(rng.choice(idx, size=n_keep, replace=False).tolist())
    return [s for i, s in enumerate(train) if i in keep]
