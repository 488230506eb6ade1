"""build-shards --from-lmdb: a small LMDB in the official LUPerson layout, built from real crops."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import lmdb
import numpy as np
import pandas as pd
import pytest
import webdataset as wds

from common.errors import UsageError
from shards.build import build_shards
from shards.checks.table1 import dataset_stats
from shards.release.lmdb_keys import format_key, parse_key
from shards.settings import ShardSettings


def make_lup_lmdb(crops: list[Path], dest: Path, keys_format: str) -> dict[str, bytes]:
    """``dest/lmdb`` + ``dest/keys.pkl`` as ``LUP/convert_lmdb.py`` of the authors writes them:
    2 countries x 2 cities x 2 videos, keys ``{country:02d}_{city:02d}_{vid:04d}_{img:08d}``."""
    entries: dict[str, bytes] = {}
    for n, path in enumerate(crops):
        country, city, vid, img = n % 2, (n // 2) % 2, (n // 4) % 2, n // 8
        entries[f"{country:02d}_{city:02d}_{vid:04d}_{img:08d}"] = path.read_bytes()
    env = lmdb.open(str(dest / "lmdb"), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for key, data in entries.items():
            txn.put(
                key.encode("ascii"), np.frombuffer(data, np.uint8)
            )  # as the authors do: bytes of an array
    env.close()
    listed = list(entries)
    if keys_format == "list":
        (dest / "keys.pkl").write_bytes(pickle.dumps(listed))
    elif keys_format == "dict":  # LUPerson-NL: keys and pseudo identities
        (dest / "keys.pkl").write_bytes(pickle.dumps({"keys": listed, "pids": list(range(len(listed)))}))
    return entries


@pytest.mark.parametrize("keys_format", ["list", "dict", "none"])
def test_lmdb_import_reads_back(unlabeled_dir, tmp_path, keys_format):
    crops = sorted((unlabeled_dir / "MIT").glob("*.jpg"))[:24]
    lup = tmp_path / "lup"
    lup.mkdir()
    entries = make_lup_lmdb(crops, lup, keys_format)
    root = tmp_path / "ws"
    summary = build_shards(ShardSettings(from_lmdb=str(lup), max_samples=10), root)
    assert summary["samples"] == 24 and summary["shards"] == 3
    assert summary["keys_from"] == ("database" if keys_format == "none" else "keys.pkl")

    index = pd.read_parquet(root / "shards" / "index.parquet")
    samples = list(wds.WebDataset([str(root / "shards" / s) for s in index["shard"]], shardshuffle=False))
    assert [s["__key__"] for s in samples] == sorted(entries)
    for s in samples:
        assert s["jpg"] == entries[s["__key__"]]  # the raw JPEG bytes, untouched
    meta = next(
        s for s in wds.WebDataset(str(root / "shards" / index["shard"][0]), shardshuffle=False).decode()
    )["json"]
    assert meta["lmdb_key"] == "00_00_0000_00000000" and meta["country"] == 0 and meta["image"] == 0

    stats = dataset_stats(root)
    assert stats["images"] == 24 and stats["cities"] == 4 and stats["videos"] == 8
    assert stats["estimated_persons"] is None and "LMDB" in stats["notes"][0]


def test_lmdb_missing_key_and_bad_inputs(unlabeled_dir, tmp_path):
    crops = sorted((unlabeled_dir / "MIT").glob("*.jpg"))[:4]
    lup = tmp_path / "lup"
    lup.mkdir()
    entries = make_lup_lmdb(crops, lup, "list")
    (lup / "keys.pkl").write_bytes(pickle.dumps([*entries, "01_01_0001_00000099"]))
    summary = build_shards(ShardSettings(from_lmdb=str(lup / "lmdb"), workers=1), tmp_path / "ws")
    assert summary["samples"] == 4 and summary["failed"] == {"missing": 1}

    (lup / "keys.pkl").write_bytes(pickle.dumps(os.system))  # a pickle that would run code
    with pytest.raises(UsageError, match="not a LUPerson keys.pkl"):
        build_shards(ShardSettings(from_lmdb=str(lup)), tmp_path / "ws2")
    with pytest.raises(UsageError, match="no data.mdb"):
        build_shards(ShardSettings(from_lmdb=str(tmp_path)), tmp_path / "ws3")


def test_lmdb_key_format_and_parse_are_inverse():
    """One writer and one reader of the official key (shards.release.lmdb_keys)."""
    assert format_key(1, 0, 3, 2) == "01_00_0003_00000002"
    assert parse_key("01_00_0003_00000002") == (1, 0, 3, 2)
    assert parse_key(format_key(100, 7, 12345, 10**8)) == (100, 7, 12345, 10**8)  # grown fields
    for other in ("1_00_0003_00000002", "001_00_0003_00000002", "01_00_0003_00000002\n", "a_b_c_d", ""):
        assert parse_key(other) is None
