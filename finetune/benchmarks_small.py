"""VIPeR, PRID2011, GRID and CUHK03 as bundled in ``../shared/data/reid`` (one flat folder each),
with fixed, seeded splits.

Protocol of VIPeR, PRID and GRID (the usual single-shot one):

* the identities seen by two cameras are shuffled with ``numpy.random.default_rng(split_seed)``;
  the first half (rounded down) trains, the rest is the test set;
* test query = each test identity's image from its lower-numbered camera (VIPeR camera 1,
  PRID camera a, GRID the first camera of the pair); gallery = its other image(s);
* every single-camera identity (PRID: 734, GRID: 775 unmatched) joins the gallery as a
  distractor and is never used for training.

| set | images | ids | two-camera ids | train ids | query | gallery |
|---|---|---|---|---|---|---|
| VIPeR | 1,264 | 632 | 632 | 316 | 316 | 316 |
| PRID | 385 + 749 | 934 | 200 | 100 | 100 | 834 |
| GRID | 1,275 | 1,025 | 250 | 125 | 125 | 900 |

The bundled CUHK03 holds 843 of the 1,467 labeled identities, so the official 767/700 split cannot
be used: ``round(843 * 767 / 1467) = 441`` shuffled identities train, the other 402 are test, and
as in CUHK03-NP one random image per camera of each test identity is a query, the rest gallery.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common.errors import UsageError
from finetune.records import ReIDSplit, Sample, list_images

PRID_CAMERAS = {"a": 0, "b": 1}


def parse_viper(path: Path) -> tuple[int, int]:
    """``IDX_ANGLE_CAM.png`` -> (IDX, CAM)."""
    idx, _angle, cam = path.stem.split("_")
    return int(idx), int(cam)


def parse_prid(path: Path) -> tuple[int, int]:
    """``ID_CAM.png`` with CAM a/b -> (ID, 0/1)."""
    pid, cam = path.stem.split("_")
    return int(pid), PRID_CAMERAS[cam]


def parse_grid(path: Path) -> tuple[int, int]:
    """``ID_CAM_FRAME_X_Y_W_H.jpeg`` -> (ID, CAM)."""
    pid, cam = path.stem.split("_")[:2]
    return int(pid), int(cam)


def parse_cuhk03(path: Path) -> tuple[int, int]:
    """``ID_CAM_K.jpg`` -> (ID, CAM)."""
    pid, cam, _k = path.stem.split("_")
    return int(pid), int(cam)


def read_flat(folder: Path, name: str, parse: Callable[[Path], tuple[int, int]]) -> list[Sample]:
    """Every image of ``folder`` as a Sample; ``UsageError`` on a name the pattern rejects."""
    samples = []
    for path in list_images(folder, name):
        try:
            pid, cam = parse(path)
        except (ValueError, KeyError):
            raise UsageError(f"{name}: file name {path.name} does not follow the {name} pattern") from None
        samples.append(Sample(path, pid, cam))
    return samples


def cross_camera_split(samples: list[Sample], name: str, split_seed: int) -> ReIDSplit:
    """Half of the two-camera identities train; the rest are queried from their first camera."""
    cams: dict[int, set[int]] = defaultdict(set)
    for s in samples:
        cams[s.pid].add(s.camid)
    paired = sorted(pid for pid, c in cams.items() if len(c) >= 2)
    if len(paired) < 2:
        raise UsageError(f"{name}: fewer than two identities are seen by two cameras")
    order = np.random.default_rng(split_seed).permutation(paired)
    train_ids = set(order[: len(paired) // 2].tolist())
    train, query, gallery = [], [], []
    for s in samples:
        if s.pid in train_ids:
            train.append(s)
        elif len(cams[s.pid]) >= 2 and s.camid == min(cams[s.pid]):
            query.append(s)
        else:
            gallery.append(s)
    protocol = (
        f"seed {split_seed}: {len(train_ids)} of {len(paired)} two-camera ids train; query = first camera, "
        f"gallery = other camera + {sum(len(c) == 1 for c in cams.values())} single-camera ids"
    )
    return ReIDSplit(name, train, query, gallery, protocol)


def viper(data_dir: Path, split_seed: int = 0) -> ReIDSplit:
    return cross_camera_split(read_flat(data_dir, "viper", parse_viper), "viper", split_seed)


def prid(data_dir: Path, split_seed: int = 0) -> ReIDSplit:
    return cross_camera_split(read_flat(data_dir, "prid", parse_prid), "prid", split_seed)


def grid(data_dir: Path, split_seed: int = 0) -> ReIDSplit:
    return cross_camera_split(read_flat(data_dir, "grid", parse_grid), "grid", split_seed)


def cuhk03_bundled(data_dir: Path, split_seed: int = 0) -> ReIDSplit:
    """The 843-identity CUHK03 folder: a seeded split in CUHK03-NP's 767:700 proportion."""
    samples = read_flat(data_dir, "cuhk03", parse_cuhk03)
    rng = np.random.default_rng(split_seed)
    pids = sorted({s.pid for s in samples})
    order = rng.permutation(pids)
    n_train = round(len(pids) * 767 / 1467)
    train_ids = set(order[:n_train].tolist())
    train = [s for s in samples if s.pid in train_ids]
    by_view: dict[tuple[int, int], list[Sample]] = defaultdict(list)
    for s in samples:
        if s.pid not in train_ids:
            by_view[(s.pid, s.camid)].append(s)
    query_paths = {views[rng.integers(len(views))].path for _, views in sorted(by_view.items())}
    test = [s for s in samples if s.pid not in train_ids]
    query = [s for s in test if s.path in query_paths]
    gallery = [s for s in test if s.path not in query_paths]
    protocol = f"seed {split_seed}: {n_train} of {len(pids)} ids train; one query per camera of each test id"
    return ReIDSplit("cuhk03", train, query, gallery, protocol)
