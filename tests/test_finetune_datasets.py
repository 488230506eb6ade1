"""Benchmark parsers and splits: counts on the shared sets, standard layouts on tiny fake trees."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from common.errors import UsageError
from finetune.datasets import load_split
from finetune.records import Sample
from finetune.subsets import few_shot, small_scale


def all_samples(split):
    return split.train + split.query + split.gallery


def cams_by_pid(samples):
    cams: dict[int, set[int]] = {}
    for s in samples:
        cams.setdefault(s.pid, set()).add(s.camid)
    return cams


def test_viper_counts_and_split(reid_dir):
    split = load_split("viper", reid_dir / "VIPeR", split_seed=0)
    samples = all_samples(split)
    assert len(samples) == 1264
    assert len({s.path for s in samples}) == 1264
    assert len({s.pid for s in samples}) == 632
    assert {s.camid for s in samples} == {1, 2}
    assert all(len(c) == 2 for c in cams_by_pid(samples).values())
    assert split.stats() == {
        "train_images": 632,
        "train_ids": 316,
        "query_images": 316,
        "query_ids": 316,
        "gallery_images": 316,
        "gallery_ids": 316,
    }
    assert {s.camid for s in split.query} == {1} and {s.camid for s in split.gallery} == {2}
    assert not {s.pid for s in split.train} & {s.pid for s in split.query + split.gallery}


def test_prid_counts_and_distractors(reid_dir):
    split = load_split("prid", reid_dir / "PRID", split_seed=0)
    samples = all_samples(split)
    per_cam = Counter(s.camid for s in samples)
    assert (per_cam[0], per_cam[1]) == (385, 749)
    cams = cams_by_pid(samples)
    assert sum(len(c) == 2 for c in cams.values()) == 200
    assert len(split.query) == 100 and {s.camid for s in split.query} == {0}
    assert len({s.pid for s in split.train}) == 100 and len(split.train) == 200
    # gallery: the 100 test ids in camera b + all 734 single-camera identities as distractors
    assert len(split.gallery) == 100 + 734
    q_ids = {s.pid for s in split.query}
    assert sum(s.pid in q_ids for s in split.gallery) == 100


def test_grid_counts_and_distractors(reid_dir):
    split = load_split("grid", reid_dir / "GRID", split_seed=0)
    samples = all_samples(split)
    assert len(samples) == 1275
    cams = cams_by_pid(samples)
    assert sum(len(c) == 2 for c in cams.values()) == 250
    assert len(cams) == 1025
    assert len(split.query) == 125 and len(split.gallery) == 125 + 775
    for q in split.query:  # the query is the first camera of its pair
        assert q.camid == min(cams[q.pid])


def test_cuhk03_bundled_split(reid_dir):
    split = load_split("cuhk03", reid_dir / "CUHK03", split_seed=0)
    assert len(all_samples(split)) == 8177
    train_ids, test_ids = {s.pid for s in split.train}, {s.pid for s in split.query}
    assert len(train_ids) == round(843 * 767 / 1467) and len(test_ids) == 843 - len(train_ids)
    assert len(split.query) == 2 * len(test_ids)  # one per camera per test identity
    assert Counter((s.pid, s.camid) for s in split.query).most_common(1)[0][1] == 1


def test_splits_are_seeded(reid_dir):
    a = load_split("viper", reid_dir / "VIPeR", split_seed=3)
    b = load_split("viper", reid_dir / "VIPeR", split_seed=3)
    c = load_split("viper", reid_dir / "VIPeR", split_seed=4)
    assert [s.path for s in a.train] == [s.path for s in b.train]
    assert {s.pid for s in a.train} != {s.pid for s in c.train}


def test_missing_folder_is_a_usage_error(tmp_path):
    for name in ("viper", "market1501", "msmt17", "cuhk03"):
        with pytest.raises(UsageError, match="does not exist"):
            load_split(name, tmp_path / "absent")


def _touch_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (8, 16)).save(folder / name)


def test_market_layout(tmp_path):
    root = tmp_path / "Market-1501-v15.09.15"
    _touch_images(
        root / "bounding_box_train", ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s1_1.jpg"]
    )
    _touch_images(root / "query", ["0001_c1s1_001051_00.jpg"])
    _touch_images(
        root / "bounding_box_test",
        ["-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg", "0001_c5s1_001426_01.jpg"],
    )
    split = load_split("market1501", tmp_path)  # finds the versioned sub-folder
    assert [(s.pid, s.camid) for s in split.train] == [(2, 1), (2, 2), (7, 3)]
    assert [(s.pid, s.camid) for s in split.query] == [(1, 1)]
    assert sorted((s.pid, s.camid) for s in split.gallery) == [(0, 1), (1, 5)]  # junk -1 dropped


def test_cuhk03_np_layout(tmp_path):
    root = tmp_path / "cuhk03-np" / "labeled"
    _touch_images(root / "bounding_box_train", ["0001_c1_1.png", "0001_c2_2.png"])
    _touch_images(root / "query", ["0003_c1_1.png"])
    _touch_images(root / "bounding_box_test", ["0003_c2_1.png"])
    split = load_split("cuhk03", tmp_path)
    assert split.protocol.startswith("CUHK03-NP")
    assert (len(split.train), len(split.query), len(split.gallery)) == (2, 1, 1)


def test_msmt17_lists(tmp_path):
    root = tmp_path / "MSMT17_V1"
    _touch_images(
        root / "train" / "0000", ["0000_000_01_0303morning_0015_0.jpg", "0000_001_05_0303noon_0700_1.jpg"]
    )
    _touch_images(
        root / "test" / "0000", ["0000_000_07_0303morning_0015_0.jpg", "0000_003_02_0303noon_0700_1.jpg"]
    )
    (root / "list_train.txt").write_text("0000/0000_000_01_0303morning_0015_0.jpg 0\n")
    (root / "list_val.txt").write_text("0000/0000_001_05_0303noon_0700_1.jpg 0\n")
    (root / "list_query.txt").write_text("0000/0000_000_07_0303morning_0015_0.jpg 0\n")
    (root / "list_gallery.txt").write_text("0000/0000_003_02_0303noon_0700_1.jpg 0\n")
    split = load_split("msmt17", tmp_path)
    assert [(s.pid, s.camid) for s in split.train] == [(0, 1), (0, 5)]
    assert [(s.pid, s.camid) for s in split.query + split.gallery] == [(0, 7), (0, 2)]
    assert all(s.path.is_file() for s in all_samples(split))
    (root / "list_query.txt").write_text("only-one-field\n")
    with pytest.raises(UsageError, match="list_query.txt:1"):
        load_split("msmt17", tmp_path)


def _toy(n_ids: int, per_id: int) -> list[Sample]:
    return [Sample(Path(f"{p}_{i}.jpg"), p, i % 2) for p in range(n_ids) for i in range(per_id)]


def test_small_scale_keeps_whole_identities():
    train = _toy(40, 6)
    sub = small_scale(train, 0.25, seed=1)
    per_id = Counter(s.pid for s in sub)
    assert len(per_id) == 10 and set(per_id.values()) == {6}
    assert small_scale(train, 0.25, seed=1) == sub


def test_few_shot_keeps_every_identity():
    train = _toy(40, 10) + _toy(1, 3)
    sub = few_shot(train, 0.3, seed=1)
    per_id = Counter(s.pid for s in sub)
    assert len(per_id) == 40
    assert per_id[0] == 1 + 3  # pid 0 has 10 + 3 images: round(0.3 * 13) = 4
    assert all(per_id[p] == 3 for p in range(1, 40))
