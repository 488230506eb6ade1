"""Regenerate LUPerson end to end (the chain of ``regenerate_chain.py``), then read the exported
LMDB back like the release's loader, export again as a plain key list, rerun and reimport.
Every crop and the report: ``test_lup_regenerate.py``.
"""

from __future__ import annotations

import json
import pickle
from collections import defaultdict
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pandas as pd
import pytest
from regenerate_chain import DETS, WRITTEN, build_chain

from shards.release.export_lmdb import export_lmdb
from shards.settings import ExportLmdbSettings


@pytest.fixture(scope="module")
def chain(tmp_path_factory, videos_dir: Path):
    return build_chain(tmp_path_factory.mktemp("lup"), videos_dir)


def official_keys_by_hand() -> dict[str, tuple[str, int, int]]:
    """The release's convert_lmdb.py walk over the written crops: sorted country/city/video/name."""
    tree: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for vname, frame_id, obj_idx in expected_crops_ids():
        country, city, vid = vname.split("+")
        tree[country][city][vid].append(f"{frame_id:08d}_{obj_idx:04d}.jpg")  # the release's crop name
    keys = {}
    for i, country in enumerate(sorted(tree)):
        for j, city in enumerate(sorted(tree[country])):
            for k, vid in enumerate(sorted(tree[country][city])):
                for m, name in enumerate(sorted(tree[country][city][vid])):
                    frame_id, obj_idx = (int(x) for x in name[:-4].split("_"))
                    keys[f"{i:02d}_{j:02d}_{k:04d}_{m:08d}"] = (f"{country}+{city}+{vid}", frame_id, obj_idx)
    return keys


def expected_crops_ids() -> list[tuple[str, int, int]]:
    return [
        (vname, frame_id, obj_idx)
        for vname in WRITTEN
        for frame_id, entries in DETS[vname].items()
        if isinstance(frame_id, int) and frame_id != 5000
        for obj_idx, _ in entries
    ]


def test_lmdb_reads_back_like_the_release_loader(chain):
    """lup_moco/libs/dataset.py: keys = pickle.load(keys.pkl)['keys']; txn.get(key); cv2.imdecode."""
    out = chain["root"] / "lup_lmdb"
    with open(out / "keys.pkl", "rb") as f:
        keys = pickle.load(f)["keys"]
    expected = official_keys_by_hand()
    assert keys == list(expected)  # the release's enumeration order
    assert keys[0] == "00_00_0000_00000000" and "01_01_0000_00000000" in keys  # usa/newyork: one-by-one only
    by_ident = {}
    for s in chain["samples"]:
        meta = json.loads(s["json"])
        by_ident[meta["vname"], meta["frame_id"], meta["obj_idx"]] = s["jpg"]
    env = lmdb.open(str(out / "lmdb"), readonly=True, lock=False, readahead=False, meminit=False)
    try:
        assert env.stat()["entries"] == len(keys) == 10
        for key in keys:
            with env.begin(write=False) as txn:
                buf = txn.get(key.encode("ascii"))
            assert bytes(buf) == by_ident[expected[key]]
            im = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR)
            ref = cv2.imdecode(np.frombuffer(by_ident[expected[key]], np.uint8), cv2.IMREAD_COLOR)
            assert im is not None and np.array_equal(im, ref)
    finally:
        env.close()


def test_export_list_format_rerun_and_reimport(chain, tmp_path):
    root = chain["root"]
    cfg = ExportLmdbSettings(output=str(tmp_path / "lup"), keys_format="list")
    first = export_lmdb(cfg, root)
    with open(tmp_path / "lup" / "keys.pkl", "rb") as f:
        listed = pickle.load(f)  # LUP/convert_lmdb.py's format: a plain list
    with open(root / "lup_lmdb" / "keys.pkl", "rb") as f:
        assert listed == pickle.load(f)["keys"]
    data = (tmp_path / "lup" / "lmdb" / "data.mdb").read_bytes()
    again = export_lmdb(cfg, root)
    assert again["up_to_date"] is True and again["images"] == first["images"] == 10
    assert (tmp_path / "lup" / "lmdb" / "data.mdb").read_bytes() == data
    mapping = pd.read_parquet(tmp_path / "lup" / "keys.parquet")
    assert list(mapping["lmdb_key"]) == listed and mapping["sample_key"].is_unique
    # as if killed while writing the next database, and before export.json was written: redone
    (tmp_path / "lup" / ".lmdb.tmp").mkdir()
    (tmp_path / "lup" / ".lmdb.tmp" / "data.mdb").write_bytes(b"half written")
    (tmp_path / "lup" / "export.json").unlink()
    redone = export_lmdb(cfg, root)
    assert "up_to_date" not in redone and not (tmp_path / "lup" / ".lmdb.tmp").exists()
    env = lmdb.open(str(tmp_path / "lup" / "lmdb"), readonly=True, lock=False)
    with env.begin() as txn:
        assert [bytes(k).decode() for k, _ in txn.cursor()] == sorted(listed)
    env.close()


def test_rerun_reuses_every_shard(chain):
    from shards.build import build_shards
    from shards.settings import ShardSettings

    root = chain["root"]
    index = (root / "shards" / "index.parquet").read_bytes()
    report = json.loads((root / "dets_report.json").read_text())
    cfg = ShardSettings(from_dets=str(chain["base"] / "dets"), max_samples=3, workers=1, calibrate="none")
    summary = build_shards(cfg, root)
    assert summary["samples_written_now"] == 0 and summary["shards_reused"] == summary["shards"] == 4
    assert (root / "shards" / "index.parquet").read_bytes() == index
    assert json.loads((root / "dets_report.json").read_text()) == report
