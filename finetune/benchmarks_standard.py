"""Parsers of the four target datasets of the paper (§5.1) in their standard released layouts.

| dataset | folder (``data_dir`` or one of its sub-folders) | train | query | gallery |
|---|---|---|---|---|
| Market-1501 | ``Market-1501-v15.09.15/`` | 12,936 img / 751 ids | 3,368 | 15,913 |
| DukeMTMC-reID | ``DukeMTMC-reID/`` | 16,522 img / 702 ids | 2,228 | 17,661 |
| MSMT17 | ``MSMT17_V1/`` or ``MSMT17_V2/`` (list files) | 32,621 img / 1,041 ids | 11,659 | 82,161 |
| CUHK03-NP labeled | ``cuhk03-np/labeled/`` | 7,368 img / 767 ids | 1,400 | 5,328 |

Market-style file names ``<pid>_c<cam>...`` are parsed as fast-reid does: identity -1 (junk
boxes) is dropped, identity 0 (distractors) stays in the gallery.
"""

from __future__ import annotations

import re
from pathlib import Path

from common.errors import UsageError
from finetune.records import ReIDSplit, Sample, list_images, require_dir

MARKET_NAME = re.compile(r"([-\d]+)_c(\d+)")
MARKET_PARTS = ("bounding_box_train", "query", "bounding_box_test")


def find_root(data_dir: Path, candidates: tuple[str, ...], marker: str, what: str) -> Path:
    """``data_dir`` itself or the first candidate sub-folder that holds ``marker``."""
    require_dir(data_dir, what)
    for folder in (data_dir, *(data_dir / c for c in candidates)):
        if (folder / marker).exists():
            return folder
    raise UsageError(f"{what}: no '{marker}' in {data_dir} (nor in {', '.join(candidates)})")


def parse_market_folder(folder: Path, what: str) -> list[Sample]:
    """Samples of one folder of Market-style names; junk (identity -1) dropped."""
    samples = []
    for path in list_images(folder, what):
        m = MARKET_NAME.match(path.name)
        if m is None:
            raise UsageError(f"{what}: file name {path.name} is not <pid>_c<cam>...")
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid == -1:
            continue
        samples.append(Sample(path, pid, cam))
    return samples


def market_style(data_dir: Path, name: str, candidates: tuple[str, ...]) -> ReIDSplit:
    """Any dataset released as bounding_box_train / query / bounding_box_test."""
    root = find_root(data_dir, candidates, MARKET_PARTS[0], name)
    train, query, gallery = (parse_market_folder(root / part, name) for part in MARKET_PARTS)
    return ReIDSplit(name, train, query, gallery, protocol="official split")


def market1501(data_dir: Path) -> ReIDSplit:
    return market_style(data_dir, "market1501", ("Market-1501-v15.09.15", "Market-1501", "market1501"))


def dukemtmc(data_dir: Path) -> ReIDSplit:
    return market_style(data_dir, "dukemtmc", ("DukeMTMC-reID", "dukemtmc-reid"))


def cuhk03_np(data_dir: Path) -> ReIDSplit:
    """CUHK03-NP (Zhong et al. 2017), labeled subset: 767 training / 700 test identities."""
    candidates = ("labeled", "cuhk03-np/labeled", "cuhk03_np/labeled")
    split = market_style(data_dir, "cuhk03", candidates)
    return ReIDSplit(split.name, split.train, split.query, split.gallery, "CUHK03-NP labeled 767/700")


def msmt17(data_dir: Path) -> ReIDSplit:
    """MSMT17 from its list files; train = list_train + list_val, as fast-reid does."""
    root = find_root(data_dir, ("MSMT17_V1", "MSMT17_V2", "MSMT17"), "list_query.txt", "msmt17")
    train_dir = next((root / d for d in ("train", "mask_train_v2") if (root / d).is_dir()), None)
    test_dir = next((root / d for d in ("test", "mask_test_v2") if (root / d).is_dir()), None)
    if train_dir is None or test_dir is None:
        raise UsageError(f"msmt17: {root} lacks train/ and test/ (or mask_train_v2/, mask_test_v2/)")
    train = _msmt_list(root / "list_train.txt", train_dir) + _msmt_list(root / "list_val.txt", train_dir)
    query = _msmt_list(root / "list_query.txt", test_dir)
    gallery = _msmt_list(root / "list_gallery.txt", test_dir)
    return ReIDSplit("msmt17", train, query, gallery, protocol="official split")


def _msmt_list(list_file: Path, image_dir: Path) -> list[Sample]:
    """Lines ``<pid>/<pid>_<idx>_<cam>_<...>.jpg <pid>``; the camera is the third field."""
    if not list_file.is_file():
        raise UsageError(f"msmt17: list file {list_file} does not exist")
    samples = []
    for n, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rel, pid = line.split()
            cam = int(Path(rel).name.split("_")[2])
            samples.append(Sample(image_dir / rel, int(pid), cam))
        except (ValueError, IndexError):
            raise UsageError(f"msmt17: {list_file}:{n} is not '<path> <pid>'") from None
    return samples
