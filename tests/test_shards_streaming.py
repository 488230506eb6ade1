"""build-shards at LUPerson's size: the plan sorted on disk, records streamed, nothing held whole.

The external sort (``shards.write.spill``) and the plan file (``shards.write.task_file``) against
plain in-memory references; ``--from-images`` keys against ``unique_keys`` over the whole listing
(what the plan computed before it was streamed); a build whose plan is sorted in runs of a few
rows gives the bytes of one sorted in memory; a resumed build checks its parts against the plan;
``--from-lmdb`` workers leave no database mapped; export-lmdb sorts its samples on disk.
"""

from __future__ import annotations

import doctest
import pickle
import random
import re
import shutil
from pathlib import Path, PurePosixPath

import lmdb
import pyarrow as pa
import pytest

from common.manifests import samples as samples_file
from common.manifests import tracklets as tracklets_file
from shards.build import build_shards
from shards.release import import_lmdb, lmdb_keys
from shards.release.export_lmdb import export_lmdb
from shards.release.lmdb_keys import format_key
from shards.settings import ExportLmdbSettings, ShardSettings
from shards.sources import images, pick
from shards.write import progress, spill
from shards.write.faces import Encoding
from shards.write.items import Item, Task
from shards.write.task_file import TaskFile, count_items, drop_items, payload_json, planned_items
from shards.write.writer import write_shards

SCHEMA = pa.schema([("key", pa.string()), ("payload", pa.string())])


def test_a_spill_larger_than_a_run_reads_back_sorted(tmp_path):
    rng = random.Random(0)
    rows = [(f"k{rng.randrange(10**6):07d}", str(n)) for n in range(2_500)]
    big = spill.SortedSpill(tmp_path / "big", SCHEMA, run_rows=300)
    small = spill.SortedSpill(tmp_path / "small", SCHEMA)
    for row in rows:
        big.add(row)
        small.add(row)
    assert list(big.merged()) == sorted(rows) == list(small.merged())
    assert list(big.merged()) == sorted(rows)  # a second read, as the plan makes
    assert len(list((tmp_path / "big").glob("run-*.arrow"))) == 2_500 // 300
    assert not (tmp_path / "small").exists() and len(big) == 2_500


def test_a_task_file_serves_the_tasks_of_a_list(tmp_path):
    items = [
        Item(f"key{n:04d}", {"path": f"a/{n}.jpg", **({"hidden": True} if n % 7 == 0 else {})})
        for n in range(23)
    ]
    rows = ((item.key, payload_json(item.payload)) for item in items)
    on_disk = TaskFile.write(tmp_path / "plan", "images", {"root": "/r"}, rows, 5)
    in_memory = [Task("images", {"root": "/r"}, tuple(items[i : i + 5])) for i in range(0, 23, 5)]
    assert list(on_disk) == in_memory and len(on_disk) == 5 and on_disk[-1] == in_memory[-1]
    assert on_disk[1:3] == in_memory[1:3] and count_items(on_disk) == 23
    for n in (0, 4, 5, 6, 22, 23):
        assert list(drop_items(on_disk, n)) == drop_items(in_memory, n)
        assert count_items(drop_items(on_disk, n)) == 23 - n == count_items(drop_items(in_memory, n))
    assert list(planned_items(drop_items(on_disk, 12))) == items[12:]
    with pytest.raises(IndexError):
        on_disk[5]


COLLIDING = [
    "a/b_c.jpg",  # a_b_c
    "a_b/c.jpg",  # a_b_c again: a_b_c_dup1
    "a_b_c_dup1.png",  # its own base is taken by then: a_b_c_dup1_dup1
    "x.y.jpg",
    "x_y.jpg",
    "x_y_dup2.jpg",  # a base no duplicate reaches: kept
    "deep/er/p.jpg",
    ".hidden/not_entered.jpg",
    "._x_y.jpg",  # hidden: keys after every visible file's
    "d/._q.jpg",
    "d/_q.jpg",  # the hidden d/._q.jpg gives d__q too
    "e/f.g.h.JPG",
    "e/f_g.h.jpeg",  # e_f_g_h twice, one suffix off each
]


def reference_keys(paths: list[str], taken: set[str]) -> dict[str, str]:
    """The keys of the whole listing as the plan gave them before it was streamed."""
    keys = {}
    for rel in sorted(paths):
        base = re.sub(r"[^A-Za-z0-9_-]", "_", PurePosixPath(rel).with_suffix("").as_posix())
        key, n = base, 0
        while key in taken:
            n += 1
            key = f"{base}_dup{n}"
        taken.add(key)
        keys[rel] = key
    return keys


def test_image_keys_equal_those_of_the_whole_listing(tmp_path, monkeypatch):
    """Collisions, collisions with what a collision generates, hidden files: the streamed keys are
    those the whole sorted listing gives, with the sort spilled every 2 rows."""
    tree = tmp_path / "tree"
    for rel in COLLIDING:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"x")
    listing = images.list_images(tree)
    expected = reference_keys(listing.images, set())
    expected |= reference_keys(listing.hidden, set(expected.values()))
    monkeypatch.setattr(spill, "RUN_ROWS", 2)
    tasks, counts = images.plan(str(tree), spill=tmp_path / "spill")
    got = {item.payload["path"]: item.key for item in planned_items(tasks)}
    assert (
        got == expected and got["a_b_c_dup1.png"] == "a_b_c_dup1_dup1" and got["x_y_dup2.jpg"] == "x_y_dup2"
    )
    assert [item.key for item in planned_items(tasks)] == sorted(expected.values())
    assert counts == {
        "image_files": 12,
        "hidden_image_files": 2,
        "hidden_folders_skipped": 1,
        "other_files_ignored": 0,
    }
    assert len(list((tmp_path / "spill" / "images").glob("*"))) == 0  # runs removed once planned


def outputs(shards: Path) -> dict[str, bytes]:
    names = [p.name for p in shards.glob("lup-*.tar")] + [
        "index.parquet",
        "samples.parquet",
        tracklets_file.FILE,
    ]
    return {name: (shards / name).read_bytes() for name in sorted(names)}


@pytest.fixture(scope="module")
def town(unlabeled_dir, tmp_path_factory) -> tuple[Path, dict[str, bytes], ShardSettings]:
    """400 TownCentre crops in tracklets and a hidden file, built with the plan sorted in memory."""
    tree = tmp_path_factory.mktemp("town") / "crops"
    tree.mkdir()
    for src in sorted((unlabeled_dir / "TownCentre").glob("*.jpg"))[:400]:
        shutil.copy(src, tree / src.name)
    shutil.copy(src, tree / "._hidden.jpg")
    cfg = ShardSettings(
        from_images=str(tree),
        tracklet_pattern=r"(?P<tracklet>[0-9]+)_[0-9]+[.]jpg",
        max_samples=64,
        workers=1,
    )
    root = tmp_path_factory.mktemp("whole")
    summary = build_shards(cfg, root)
    assert summary["samples"] == 400 and summary["failed"] == {"hidden": 1} and summary["tracklets"] > 10
    return tree, outputs(root / "shards"), cfg


def test_a_plan_sorted_in_runs_gives_the_same_bytes(town, tmp_path, monkeypatch):
    """Runs of 7 rows (58 runs) for the plan and for the tracklet rows: every tar, the index,
    samples.parquet and tracklets.parquet are byte-identical, and no temporary folder is left."""
    _, expected, cfg = town
    monkeypatch.setattr(spill, "RUN_ROWS", 7)
    build_shards(cfg, tmp_path)
    assert outputs(tmp_path / "shards") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards", "stats.json"]
    listed = tracklets_file.read(tmp_path / "shards")
    pairs = list(zip(listed["tracklet"], listed["key"], strict=True))
    assert pairs == sorted(pairs) and len(pairs) == 400
    samples = samples_file.read(tmp_path / "shards")
    assert samples["key"].is_monotonic_increasing and len(samples) == 401


def test_a_part_that_is_not_the_plans_is_rewritten(town, tmp_path):
    """Shard 2's part file rewritten with another key: the rerun keeps shards 0-1, rewrites the
    rest, and ends with the bytes of an uninterrupted build."""
    _, expected, cfg = town
    build_shards(cfg, tmp_path)
    records, row = progress.read_part(progress.part_path(tmp_path / "shards", 2))
    changed = records.to_pylist()
    changed[3]["key"] += "_other"
    progress.write_part(tmp_path / "shards", 2, changed, row)
    (tmp_path / "shards" / "index.parquet").unlink()
    assert build_shards(cfg, tmp_path)["shards_reused"] == 2
    assert outputs(tmp_path / "shards") == expected


def test_a_source_out_of_key_order_is_caught(unlabeled_dir, tmp_path):
    """The records are copied in plan order: a plan not sorted by key is a RuntimeError."""
    crops = sorted((unlabeled_dir / "MIT").glob("*.jpg"))[:4]
    items = [Item(key, {"path": p.name}) for key, p in zip(["b", "a", "c", "d"], crops, strict=True)]
    tasks = [Task("images", {"root": str(crops[0].parent)}, tuple(items))]
    with pytest.raises(RuntimeError, match="not the plan's next item in key order"):
        write_shards(tasks, tmp_path / "shards", ShardSettings(max_samples=10, workers=1), pick.run_job)
    assert not (tmp_path / "shards" / "samples.parquet").exists()


def test_lmdb_tasks_leave_no_database_mapped(tmp_path, unlabeled_dir):
    """A task opens the database and closes it: nothing of data.mdb stays mapped (a worker that
    kept it open grew by every byte it read)."""
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 26)
    crops = sorted((unlabeled_dir / "MIT").glob("*.jpg"))[:3]
    with env.begin(write=True) as txn:
        for n, crop in enumerate(crops):
            txn.put(f"00_00_0000_{n:08d}".encode(), crop.read_bytes())
    env.close()
    tasks, counts = import_lmdb.plan(str(tmp_path / "db"), spill=tmp_path / "plan")
    results = import_lmdb.run(tasks[0], Encoding(95))
    assert [r.record["status"] for r in results] == ["ok"] * 3 and counts["keys_from"] == "database"
    assert results[1].files["jpg"] == crops[1].read_bytes()
    assert str(tmp_path / "db" / "data.mdb") not in Path("/proc/self/maps").read_text()


def test_export_sorted_on_disk_keys_the_release_way_past_field_widths(unlabeled_dir, tmp_path, monkeypatch):
    """101 countries (country index 100 widens its field, so enumeration order and the database's
    byte order differ) with samples sorted in runs of 3: keys.pkl in enumeration order, every key
    in the database with its crop's bytes, the figures of the tree."""
    crops = sorted((unlabeled_dir / "MIT").glob("*.jpg"))[:2]
    tree = tmp_path / "tree"
    for n in range(101):
        for m, crop in enumerate(crops):
            (tree / f"land{n:03d}" / "city" / "video").mkdir(parents=True, exist_ok=True)
            shutil.copy(crop, tree / f"land{n:03d}" / "city" / "video" / f"{m}.jpg")
    build_shards(ShardSettings(from_images=str(tree), max_samples=50, workers=1), tmp_path / "ws")
    monkeypatch.setattr(spill, "RUN_ROWS", 3)
    summary = export_lmdb(ExportLmdbSettings(), tmp_path / "ws")
    assert (summary["images"], summary["countries"], summary["cities"], summary["videos"]) == (
        202,
        101,
        101,
        101,
    )
    keys = pickle.loads((tmp_path / "ws" / "lup_lmdb" / "keys.pkl").read_bytes())["keys"]
    assert keys == [format_key(n, 0, 0, m) for n in range(101) for m in range(2)]
    env = lmdb.open(str(tmp_path / "ws" / "lup_lmdb" / "lmdb"), readonly=True, lock=False)
    with env.begin() as txn:
        stored = {bytes(k).decode(): bytes(v) for k, v in txn.cursor()}
    env.close()
    assert stored == {format_key(n, 0, 0, m): crops[m].read_bytes() for n in range(101) for m in range(2)}
    assert not list((tmp_path / "ws").glob(".export-lmdb-*"))


def test_order_text_sorts_as_the_tuples_do():
    assert doctest.testmod(lmdb_keys).failed == 0
    orders = [(3, 1, "k"), (3, 10, "k"), (-1, 0, "k"), (3, 1, "j"), (2**62, 0, "")]
    orders += [("a/b.jpg", "k"), ("a/b.jpg", "k2"), ("a", "z"), ("a/", "z"), ("é", "k")]
    for kind in (int, str):
        same = [o for o in orders if isinstance(o[0], kind)]
        assert sorted(same, key=lmdb_keys.order_text) == sorted(same)
