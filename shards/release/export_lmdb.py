"""``python pipeline.py export-lmdb``: the shards as the official LUPerson LMDB, with ``keys.pkl``.

Layout (what LUPerson's ``lup_moco`` reads as ``--data_path <out>/lmdb --info_path <out>/keys.pkl``):

- ``<out>/lmdb/data.mdb``: key ``{country:02d}_{city:02d}_{video:04d}_{image:08d}`` (ASCII) -> the
  sample's JPEG bytes, unchanged (see :mod:`shards.release.lmdb_keys` for the indices);
- ``<out>/keys.pkl``: the keys in the release's enumeration order, as ``{"keys": [...]}``
  (``--keys-format dict``, what ``lup_moco/libs/dataset.py`` reads: ``data['keys']``) or a plain
  list (``--keys-format list``, what ``LUP/convert_lmdb.py`` writes);
- ``<out>/keys.parquet``: each LMDB key with its shard sample key, shard, country, city, video;
- ``<out>/export.json``: the figures and a fingerprint of the shards, written last;
- ``<out>/.luperson-export``: written before anything else, it marks the folder as export-lmdb's.

``<out>`` must be new, empty or marked: a folder holding anything export-lmdb did not write (the
official release, say) is refused before a byte changes, and so is a marked one holding a foreign
file. The database is written under ``<out>/.lmdb.tmp`` and renamed into place when complete; a
killed export leaves the previous one untouched and its own leftovers (``.lmdb.tmp``, the
``.<name>.<pid>.tmp`` of an atomic write) behind the marker, and the next run starts the database
over. A rerun on unchanged shards with the same settings does nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from common.atomic import atomic_path, write_json, write_parquet
from common.errors import UsageError
from common.manifests.shard_index import INDEX_NAME, read_shard_index
from shards.release import tarindex
from shards.release.lmdb_keys import Place, official_keys, parse_key, place
from shards.settings import ExportLmdbSettings

log = logging.getLogger(__name__)
PICKLE_PROTOCOL = 4  # readable by every Python 3 the release's code runs on
MARKER = ".luperson-export"
OWN_FILES = (MARKER, "keys.pkl", "keys.parquet", "export.json")
OWN_DIRS = ("lmdb", ".lmdb.tmp")
DATABASE_FILES = ("data.mdb", "lock.mdb")
TEMPORARY = re.compile(r"\.(keys\.pkl|keys\.parquet|export\.json)\.[0-9]+\.tmp")  # common.atomic's


def _plain_file(path: Path, own_name: bool) -> bool:
    return own_name and path.is_file() and not path.is_symlink()


def foreign(out: Path) -> list[str]:
    """What in ``out`` export-lmdb did not write: any name but its own files, folders, database
    files and temporaries, and any of those that is a link or of the wrong kind."""
    found = []
    for entry in sorted(out.iterdir()):
        if entry.name in OWN_DIRS and entry.is_dir() and not entry.is_symlink():
            inside = sorted(entry.iterdir())
            found += [
                f"{entry.name}/{p.name}" for p in inside if not _plain_file(p, p.name in DATABASE_FILES)
            ]
        elif not _plain_file(entry, entry.name in OWN_FILES or bool(TEMPORARY.fullmatch(entry.name))):
            found.append(entry.name)
    return found


def claim(out: Path) -> None:
    """Make ``out`` export-lmdb's (the marker first), or refuse it with one line, changing nothing.

    A new or empty folder is claimed; a marked one is taken when it holds nothing else than what
    an export writes, and the temporaries of a killed export are removed.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out} is a file, not a folder")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held:
        other = foreign(out) if MARKER in held else held
        if MARKER not in held or other:
            shown = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
            raise UsageError(
                f"{out} holds what export-lmdb did not write ({shown}); nothing was changed: "
                "name a new or empty folder with --output, or move them away"
            )
        for name in held:
            if TEMPORARY.fullmatch(name):
                (out / name).unlink()
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / MARKER, "x") as f:  # a kill after this leaves a folder the next run takes
            f.write("made by `python pipeline.py export-lmdb`, which replaces what it wrote here\n")
    except OSError as e:
        raise UsageError(f"--output {out} cannot be written ({e.strerror})") from None


def shard_list(root: Path):
    """Rows of ``shards/index.parquet``, each tar checked to be there with its recorded size."""
    index = read_shard_index(root / "shards")
    for row in index.itertuples(index=False):
        tar = root / "shards" / row.shard
        if not tar.is_file() or tar.stat().st_size != row.bytes:
            raise UsageError(f"{tar} is missing or not the size the index records: run verify-shards")
    if int(index["n_samples"].sum()) == 0:
        raise UsageError(f"{root / 'shards' / INDEX_NAME} lists no sample: nothing to export")
    return index


class Sample(NamedTuple):
    """Where one sample's JPEG bytes lie, and its place in the release's tree."""

    key: str
    shard: int
    offset: int
    size: int
    place: Place


def scan(tar_path: Path, shard_no: int) -> list[Sample]:
    """Every sample of a tar: its JSON is parsed for its place, its JPEG only located (not read)."""
    found: dict[str, list[Any]] = {}
    with open(tar_path, "rb") as f:
        try:
            located = list(tarindex.members(f, str(tar_path)))
        except ValueError as e:
            raise UsageError(f"{e}: run verify-shards") from None
        for member in located:
            key, _, ext = member.name.partition(".")
            slot = found.setdefault(key, [None, None, None])
            if ext == "json":
                f.seek(member.offset)
                try:
                    p = place(json.loads(f.read(member.size)), key)
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise UsageError(
                        f"{tar_path}: {member.name} is not a sample's metadata: run verify-shards"
                    ) from None
                slot[2] = Place(sys.intern(p.country), sys.intern(p.city), sys.intern(p.video), p.order)
            elif ext == "jpg":
                slot[0], slot[1] = member.offset, member.size
    broken = [k for k, slot in found.items() if None in slot]
    if broken:
        raise UsageError(f"{tar_path}: samples without .jpg or .json, e.g. {broken[0]}: run verify-shards")
    return [Sample(k, shard_no, *slot) for k, slot in found.items()]


def fingerprint(index, cfg: ExportLmdbSettings) -> str:
    h = hashlib.sha256(cfg.keys_format.encode())
    for row in index.itertuples(index=False):
        h.update(f"{row.shard}:{row.sha256}\n".encode())
    return h.hexdigest()


def write_database(
    env_dir: Path, puts: list[tuple[str, Sample]], shard_paths: list[Path], map_size: int
) -> None:
    """Put every sample's JPEG bytes under its LMDB key (``puts`` sorted by key: LMDB's append mode)."""
    import lmdb
    from tqdm import tqdm

    env = lmdb.open(str(env_dir), map_size=map_size, subdir=True, meminit=False)
    files: dict[int, Any] = {}
    try:
        txn = env.begin(write=True)
        for n, (lmdb_key, s) in enumerate(tqdm(puts, unit="img", desc="export-lmdb", mininterval=1.0)):
            if s.shard not in files:
                files[s.shard] = open(shard_paths[s.shard], "rb")  # noqa: SIM115 (closed below)
            f = files[s.shard]
            f.seek(s.offset)
            txn.put(lmdb_key.encode("ascii"), f.read(s.size), append=True)
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


def previous_export(path: Path) -> dict[str, Any]:
    """The last export's ``export.json``; ``{}`` when unreadable (the export is then redone)."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return previous if isinstance(previous, dict) else {}


def up_to_date(out: Path, stamp: str) -> dict[str, Any] | None:
    """The previous export's summary when it is whole and made from the same shards and settings."""
    report_path = out / "export.json"
    if report_path.is_file() and (out / "lmdb" / "data.mdb").is_file() and (out / "keys.pkl").is_file():
        previous = previous_export(report_path)
        if previous.get("fingerprint") == stamp and "summary" in previous:
            return previous["summary"]
    return None


def replace_database(
    out: Path, lmdb_keys: list[str], samples: list[Sample], shard_paths: list[Path], map_size: int
) -> None:
    """Write the database under ``<out>/.lmdb.tmp``, drop the old export, rename it to ``<out>/lmdb``."""
    tmp = out / ".lmdb.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_database(
        tmp, sorted(zip(lmdb_keys, samples, strict=True), key=lambda pair: pair[0]), shard_paths, map_size
    )
    for name in ("export.json", "keys.pkl", "keys.parquet"):  # the old export is no longer whole
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "lmdb", ignore_errors=True)
    tmp.rename(out / "lmdb")


def write_keys(
    out: Path, keys: list[str], ordered: list[Sample], shard_names: list[str], keys_format: str
) -> None:
    """``keys.pkl`` (the keys in release order) and ``keys.parquet`` (each key with its sample)."""
    import pandas as pd

    with atomic_path(out / "keys.pkl") as path, open(path, "wb") as f:
        pickle.dump({"keys": keys} if keys_format == "dict" else keys, f, protocol=PICKLE_PROTOCOL)
    table = pd.DataFrame(
        {
            "lmdb_key": keys,
            "sample_key": [s.key for s in ordered],
            "shard": [shard_names[s.shard] for s in ordered],
            "country": [s.place.country for s in ordered],
            "city": [s.place.city for s in ordered],
            "video": [s.place.video for s in ordered],
            "bytes": [s.size for s in ordered],
        }
    )
    write_parquet(out / "keys.parquet", table)


def export_summary(
    out: Path, places: list[Place], total: int, keys_format: str, elapsed: float
) -> dict[str, Any]:
    """The figures of a finished export (what ``export.json`` records and the command prints)."""
    return {
        "output": str(out),
        "images": len(places),
        "countries": len({p.country for p in places}),
        "cities": len({(p.country, p.city) for p in places}),
        "videos": len({p[:3] for p in places}),
        "jpeg_bytes": total,
        "data_mdb_bytes": (out / "lmdb" / "data.mdb").stat().st_size,
        "keys_format": keys_format,
        "seconds": round(elapsed, 2),
        "images_per_s": round(len(places) / elapsed, 1) if elapsed > 0 else 0.0,
    }


def export_lmdb(cfg: ExportLmdbSettings, root: Path) -> dict[str, Any]:
    """Write ``<out>/lmdb`` and ``<out>/keys.pkl`` from ``<root>/shards``; return the figures."""
    root = Path(root)
    out = Path(cfg.output) if cfg.output else root / "lup_lmdb"
    index = shard_list(root)
    claim(out)
    stamp = fingerprint(index, cfg)
    previous = up_to_date(out, stamp)
    if previous is not None:
        log.info("%s is up to date with the shards", out)
        return previous | {"up_to_date": True}

    start = time.perf_counter()
    shard_paths = [root / "shards" / s for s in index["shard"]]
    samples = [sample for n, path in enumerate(shard_paths) for sample in scan(path, n)]
    lmdb_keys = official_keys([sample.place for sample in samples])
    order = sorted(range(len(samples)), key=lambda i: parse_key(lmdb_keys[i]))
    total = sum(sample.size for sample in samples)
    map_size = cfg.map_size or 2 * total + 4096 * len(samples) + (64 << 20)
    replace_database(out, lmdb_keys, samples, shard_paths, map_size)

    ordered = [samples[i] for i in order]
    write_keys(out, [lmdb_keys[i] for i in order], ordered, index["shard"].tolist(), cfg.keys_format)
    elapsed = time.perf_counter() - start
    summary = export_summary(out, [s.place for s in ordered], total, cfg.keys_format, elapsed)
    write_json(out / "export.json", {"fingerprint": stamp, "summary": summary})
    return summary
