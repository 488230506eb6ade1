"""``python pipeline.py export-lmdb``: the shards as the official LUPerson LMDB, with ``keys.pkl``.

Layout (what LUPerson's ``lup_moco`` reads as ``--data_path <out>/lmdb --info_path <out>/keys.pkl``):

- ``<out>/lmdb/data.mdb``: key ``{country:02d}_{city:02d}_{video:04d}_{image:08d}`` (ASCII) -> the
  sample's JPEG bytes, unchanged (see :mod:`shards.lmdb_keys` for the indices);
- ``<out>/keys.pkl``: the keys in the release's enumeration order, as ``{"keys": [...]}``
  (``--keys-format dict``, what ``lup_moco/libs/dataset.py`` reads: ``data['keys']``) or a plain
  list (``--keys-format list``, what ``LUP/convert_lmdb.py`` writes);
- ``<out>/keys.parquet``: each LMDB key with its shard sample key, shard, country, city, video;
- ``<out>/export.json``: the figures and a fingerprint of the shards, written last.

The database is written under ``<out>/.lmdb.tmp`` and renamed into place when complete; a killed
export leaves the previous one untouched and the next run starts the database over. A rerun on
unchanged shards with the same settings does nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

from common.atomic import atomic_path, write_json, write_parquet
from common.errors import UsageError
from shards.lmdb_keys import enumeration_order, official_keys, place
from shards.settings import ExportLmdbSettings

log = logging.getLogger(__name__)
PICKLE_PROTOCOL = 4  # readable by every Python 3 the release's code runs on


def shard_list(root: Path):
    """Rows of ``shards/index.parquet``, each tar checked to be there with its recorded size."""
    import pandas as pd

    index_path = root / "shards" / "index.parquet"
    if not index_path.is_file():
        raise UsageError(f"{index_path} does not exist: run build-shards first")
    index = pd.read_parquet(index_path)
    for row in index.itertuples(index=False):
        tar = root / "shards" / row.shard
        if not tar.is_file() or tar.stat().st_size != row.bytes:
            raise UsageError(f"{tar} is missing or not the size the index records: run verify-shards")
    if int(index["n_samples"].sum()) == 0:
        raise UsageError(f"{index_path} lists no sample: nothing to export")
    return index


def scan(tar_path: Path, shard_no: int) -> list[dict[str, Any]]:
    """One entry per sample of a tar: key, JSON metadata, and where its JPEG bytes lie."""
    samples: dict[str, dict[str, Any]] = {}
    with tarfile.open(tar_path, "r:") as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            entry = samples.setdefault(key, {"key": key, "shard": shard_no})
            if ext == "json":
                entry["meta"] = json.loads(tar.extractfile(member).read())
            elif ext == "jpg":
                entry["offset"], entry["size"] = member.offset_data, member.size
    broken = [k for k, e in samples.items() if "meta" not in e or "offset" not in e]
    if broken:
        raise UsageError(f"{tar_path}: samples without .jpg or .json, e.g. {broken[0]}: run verify-shards")
    return list(samples.values())


def fingerprint(index, cfg: ExportLmdbSettings) -> str:
    h = hashlib.sha256(cfg.keys_format.encode())
    for row in index.itertuples(index=False):
        h.update(f"{row.shard}:{row.sha256}\n".encode())
    return h.hexdigest()


def write_database(
    env_dir: Path, entries: list[dict[str, Any]], shard_paths: list[Path], map_size: int
) -> None:
    """Put every entry's JPEG bytes under its LMDB key, in the database's key order."""
    import lmdb
    from tqdm import tqdm

    env = lmdb.open(str(env_dir), map_size=map_size, subdir=True, meminit=False)
    files: dict[int, Any] = {}
    try:
        txn = env.begin(write=True)
        for n, e in enumerate(
            tqdm(sorted(entries, key=lambda e: e["lmdb_key"]), unit="img", desc="export-lmdb")
        ):
            if e["shard"] not in files:
                files[e["shard"]] = open(shard_paths[e["shard"]], "rb")  # noqa: SIM115 (closed below)
            f = files[e["shard"]]
            f.seek(e["offset"])
            txn.put(e["lmdb_key"].encode("ascii"), f.read(e["size"]), append=True)
            if n % 10_000 == 9_999:
                txn.commit()
                txn = env.begin(write=True)
        txn.commit()
        env.sync(True)
    except lmdb.MapFullError:
        raise UsageError(f"the LMDB map size {map_size:,} bytes is too small: raise --map-size") from None
    finally:
        for f in files.values():
            f.close()
        env.close()


def export_lmdb(cfg: ExportLmdbSettings, root: Path) -> dict[str, Any]:
    """Write ``<out>/lmdb`` and ``<out>/keys.pkl`` from ``<root>/shards``; return the figures."""
    import pandas as pd

    root = Path(root)
    out = Path(cfg.output) if cfg.output else root / "lup_lmdb"
    index = shard_list(root)
    stamp = fingerprint(index, cfg)
    report_path = out / "export.json"
    if report_path.is_file() and (out / "lmdb" / "data.mdb").is_file() and (out / "keys.pkl").is_file():
        previous = json.loads(report_path.read_text())
        if previous.get("fingerprint") == stamp:
            log.info("%s is up to date with the shards", out)
            return previous["summary"] | {"up_to_date": True}

    start = time.perf_counter()
    shard_paths = [root / "shards" / s for s in index["shard"]]
    entries = [e for n, path in enumerate(shard_paths) for e in scan(path, n)]
    places = [place(e["meta"], e["key"]) for e in entries]
    for e, p, k in zip(entries, places, official_keys(places), strict=True):
        e.update(lmdb_key=k, country=p.country, city=p.city, video=p.video)
    entries.sort(key=lambda e: enumeration_order(e["lmdb_key"]))
    total = sum(e["size"] for e in entries)
    map_size = cfg.map_size or 2 * total + 4096 * len(entries) + (64 << 20)

    tmp = out / ".lmdb.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_database(tmp, entries, shard_paths, map_size)
    for name in ("export.json", "keys.pkl", "keys.parquet"):  # the old export is no longer whole
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "lmdb", ignore_errors=True)
    tmp.rename(out / "lmdb")

    keys = [e["lmdb_key"] for e in entries]
    with atomic_path(out / "keys.pkl") as path, open(path, "wb") as f:
        pickle.dump({"keys": keys} if cfg.keys_format == "dict" else keys, f, protocol=PICKLE_PROTOCOL)
    columns = ["lmdb_key", "key", "shard", "country", "city", "video", "size"]
    table = pd.DataFrame([{c: e[c] for c in columns} for e in entries], columns=columns)
    table["shard"] = index["shard"].to_numpy()[table["shard"].to_numpy()]
    write_parquet(out / "keys.parquet", table.rename(columns={"key": "sample_key", "size": "bytes"}))
    elapsed = time.perf_counter() - start
    summary = {
        "output": str(out),
        "images": len(entries),
        "countries": len({e["country"] for e in entries}),
        "cities": len({(e["country"], e["city"]) for e in entries}),
        "videos": len({(e["country"], e["city"], e["video"]) for e in entries}),
        "jpeg_bytes": total,
        "data_mdb_bytes": (out / "lmdb" / "data.mdb").stat().st_size,
        "keys_format": cfg.keys_format,
        "seconds": round(elapsed, 2),
        "images_per_s": round(len(entries) / elapsed, 1) if elapsed > 0 else 0.0,
    }
    write_json(report_path, {"fingerprint": stamp, "summary": summary})
    return summary
