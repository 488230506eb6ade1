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
file (:mod:`shards.release.export_folder`). The database is written under ``<out>/.lmdb.tmp`` and renamed into place when complete; a
killed export leaves the previous one untouched and its own leftovers (``.lmdb.tmp``, the
``.<name>.<pid>.tmp`` of an atomic write) behind the marker, and the next run starts the database
over. A rerun on unchanged shards with the same settings does nothing.

Memory: the samples are sorted on disk (:class:`shards.write.spill.SortedSpill`, in a temporary
folder of the root), by their place in the release's tree and then by LMDB key; only the key list
``keys.pkl`` is made of is held whole (~80 bytes a sample; each sample's place and offset, held
before, took ~0.8 KiB).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from common.atomic import atomic_path, write_json
from common.errors import UsageError
from common.manifests import takedowns
from common.manifests.parquet import rows_table
from common.manifests.shard_index import INDEX_NAME, read_shard_index
from shards.release import tarindex
from shards.release.export_folder import claim
from shards.release.lmdb_keys import official_keys, order_text, place
from shards.settings import ExportLmdbSettings
from shards.write.spill import SortedSpill
from shards.write.task_file import plan_folder

log = logging.getLogger(__name__)
PICKLE_PROTOCOL = 4  # readable by every Python 3 the release's code runs on
SCRATCH_PREFIX = ".export-lmdb-"  # the root's temporary folder where the samples are sorted
GROUP_ROWS = 1 << 16  # rows per row group of keys.parquet


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
    """One sample: its place in the release's tree (``order_text`` sorts it within its video), then
    where its JPEG bytes lie. As a tuple, it sorts in the release's enumeration order."""

    country: str
    city: str
    video: str
    order: str
    key: str
    shard: int
    offset: int
    size: int


def sample_schema():
    import pyarrow as pa

    strings = [(name, pa.string()) for name in Sample._fields[:5]]
    return pa.schema(strings + [(name, pa.int64()) for name in Sample._fields[5:]])


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
                    where = (sys.intern(p.country), sys.intern(p.city), sys.intern(p.video))
                    slot[0] = (*where, order_text(p.order))
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise UsageError(
                        f"{tar_path}: {member.name} is not a sample's metadata: run verify-shards"
                    ) from None
            elif ext == "jpg":
                slot[1], slot[2] = member.offset, member.size
    broken = [k for k, slot in found.items() if None in slot]
    if broken:
        raise UsageError(f"{tar_path}: samples without .jpg or .json, e.g. {broken[0]}: run verify-shards")
    return [Sample(*where, k, shard_no, offset, size) for k, (where, offset, size) in found.items()]


def fingerprint(index, cfg: ExportLmdbSettings) -> str:
    h = hashlib.sha256(cfg.keys_format.encode())
    for row in index.itertuples(index=False):
        h.update(f"{row.shard}:{row.sha256}\n".encode())
    return h.hexdigest()


def write_database(
    env_dir: Path,
    puts: Iterable[tuple[str, int, int, int]],
    total: int,
    shard_paths: list[Path],
    map_size: int,
) -> None:
    """Put every sample's JPEG bytes under its LMDB key; ``puts``: ``(key, shard, offset, size)``
    sorted by key (LMDB's append mode), ``total`` of them."""
    import lmdb
    from tqdm import tqdm

    # meminit (the default): a page's unused bytes are zeros, never leftovers of this process's
    # heap, which holds other crops' bytes (a published database must hold only its own crops)
    env = lmdb.open(str(env_dir), map_size=map_size, subdir=True)
    files: dict[int, Any] = {}
    try:
        txn = env.begin(write=True)
        bar = tqdm(puts, total=total, unit="img", desc="export-lmdb", mininterval=1.0)
        for n, (lmdb_key, shard, offset, size) in enumerate(bar):
            if shard not in files:
                files[shard] = open(shard_paths[shard], "rb")  # noqa: SIM115 (closed below)
            files[shard].seek(offset)
            txn.put(lmdb_key.encode("ascii"), files[shard].read(size), append=True)
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
    out: Path, puts: Iterable[tuple[str, int, int, int]], total: int, shard_paths: list[Path], map_size: int
) -> None:
    """Write the database under ``<out>/.lmdb.tmp``, drop the old export, rename it to ``<out>/lmdb``."""
    tmp = out / ".lmdb.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_database(tmp, puts, total, shard_paths, map_size)
    for name in ("export.json", "keys.pkl", "keys.parquet"):  # the old export is no longer whole
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "lmdb", ignore_errors=True)
    tmp.rename(out / "lmdb")


def keys_schema():
    import pyarrow as pa

    names = ("lmdb_key", "sample_key", "shard", "country", "city", "video")
    return pa.schema([(name, pa.string()) for name in names] + [("bytes", pa.int64())])


def put_schema():
    import pyarrow as pa

    return pa.schema(
        [("key", pa.string()), ("shard", pa.int64()), ("offset", pa.int64()), ("size", pa.int64())]
    )


def enumerate_samples(
    samples: Iterable[Sample], shard_names: list[str], parquet: Path, puts: SortedSpill
) -> tuple[list[str], Counter[str]]:
    """Key every sample (``samples`` in enumeration order: :func:`official_keys`); write each key
    with its sample (``keys.parquet``'s rows) to ``parquet`` a group at a time, and spill each
    ``(key, shard, offset, size)`` to ``puts``; the keys in order, and what the tree holds."""
    import pyarrow.parquet as pq

    keys: list[str] = []
    counts: Counter[str] = Counter()
    rows: list[tuple] = []
    last: Sample | None = None
    with pq.ParquetWriter(parquet, keys_schema()) as writer:
        for lmdb_key, s in official_keys(samples):
            keys.append(lmdb_key)
            puts.add((lmdb_key, s.shard, s.offset, s.size))
            counts["countries"] += last is None or s.country != last.country
            counts["cities"] += last is None or s[:2] != last[:2]
            counts["videos"] += last is None or s[:3] != last[:3]
            counts["jpeg_bytes"] += s.size
            last = s
            rows.append((lmdb_key, s.key, shard_names[s.shard], s.country, s.city, s.video, s.size))
            if len(rows) == GROUP_ROWS:
                writer.write_table(rows_table(rows, keys_schema()))
                rows = []
        if rows:
            writer.write_table(rows_table(rows, keys_schema()))
    return keys, counts


def write_keys_pkl(out: Path, keys: list[str], keys_format: str) -> None:
    """``keys.pkl``: the keys in the release's enumeration order, as a dict or a plain list."""
    with atomic_path(out / "keys.pkl") as path, open(path, "wb") as f:
        pickle.dump({"keys": keys} if keys_format == "dict" else keys, f, protocol=PICKLE_PROTOCOL)


def export_summary(
    out: Path, counts: Counter[str], images: int, keys_format: str, elapsed: float
) -> dict[str, Any]:
    """The figures of a finished export (what ``export.json`` records and the command prints)."""
    return {
        "output": str(out),
        "images": images,
        "countries": counts["countries"],
        "cities": counts["cities"],
        "videos": counts["videos"],
        "jpeg_bytes": counts["jpeg_bytes"],
        "data_mdb_bytes": (out / "lmdb" / "data.mdb").stat().st_size,
        "keys_format": keys_format,
        "seconds": round(elapsed, 2),
        "images_per_s": round(images / elapsed, 1) if elapsed > 0 else 0.0,
    }


def is_current(out: Path, index) -> bool:
    """Whether the export in ``out`` was made from the shards ``index`` lists, as they are."""
    previous = previous_export(out / "export.json")
    summary = previous.get("summary")
    keys_format = summary.get("keys_format") if isinstance(summary, dict) else None
    if keys_format not in ("dict", "list"):
        return False
    return previous.get("fingerprint") == fingerprint(index, ExportLmdbSettings(keys_format=keys_format))


def keys_groups(path: Path, sample_keys: set[str]):
    """``(kept rows, LMDB keys of the rows of sample_keys)`` of each row group of ``keys.parquet``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wanted = pa.array(sorted(sample_keys), pa.string())
    with pq.ParquetFile(path) as file:
        for group in range(file.num_row_groups):
            table = file.read_row_group(group).cast(keys_schema())
            gone = pc.is_in(table.column("sample_key"), value_set=wanted)
            yield table.filter(pc.invert(gone)), table.filter(gone).column("lmdb_key").to_pylist()


def delete_entries(database: Path, lmdb_keys: list[str]) -> None:
    """Replace ``data.mdb`` with a copy written afresh (in ``.lmdb.tmp``) without ``lmdb_keys``.

    Not a delete: LMDB leaves a deleted entry's bytes in the free part of its page (small values
    live in leaf pages), and a compacted copy copies those pages whole. A database written entry by
    entry, with zeroed pages (meminit), holds no byte of a deleted crop.
    """
    import lmdb

    data = database / "data.mdb"
    tmp = database.parent / ".lmdb.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    gone = {key.encode("ascii") for key in lmdb_keys}
    source = lmdb.open(str(database), readonly=True, lock=False, readahead=False)
    copy = lmdb.open(str(tmp), map_size=data.stat().st_size + (64 << 20))
    try:
        with source.begin() as read:
            txn = copy.begin(write=True)
            for n, (key, value) in enumerate(read.cursor()):
                if key not in gone:
                    txn.put(key, value, append=True)
                if n % 10_000 == 9_999:
                    txn.commit()
                    txn = copy.begin(write=True)
            txn.commit()
        copy.sync(True)
    finally:
        copy.close()
        source.close()
    os.replace(tmp / "data.mdb", data)
    shutil.rmtree(tmp)


def remove_samples(out: Path, sample_keys: set[str], index=None) -> int:
    """Take the samples ``sample_keys`` out of the export in ``out`` (``python pipeline.py takedown``);
    the LMDB entries deleted.

    Their entries leave the database (compacted: no page keeps their bytes), ``keys.pkl`` and
    ``keys.parquet``; every other key stays as it is (an export made anew numbers the images again,
    without gaps). ``index``: the shards after the takedown, which ``export.json`` then records,
    when the export was made from the shards before it (:func:`is_current`); without it the export
    stays as stale as it was. An unfinished export (no ``export.json``) loses its database, which
    export-lmdb writes again. Run again, it deletes nothing more and leaves the same files.
    """
    import pyarrow.parquet as pq

    report = previous_export(out / "export.json")
    summary, parquet = report.get("summary"), out / "keys.parquet"
    if not isinstance(summary, dict) or not parquet.is_file() or not (out / "lmdb" / "data.mdb").is_file():
        for folder in (out / "lmdb", out / ".lmdb.tmp"):
            shutil.rmtree(folder, ignore_errors=True)
        for name in ("keys.pkl", "keys.parquet", "export.json"):
            (out / name).unlink(missing_ok=True)
        return 0
    gone = [key for _, keys in keys_groups(parquet, sample_keys) for key in keys]
    if gone:  # the database first: keys.parquet finds them again after a kill
        delete_entries(out / "lmdb", gone)
    keys: list[str] = []
    places: set[tuple[str, ...]] = set()
    jpeg_bytes = 0
    with atomic_path(parquet) as tmp, pq.ParquetWriter(tmp, keys_schema()) as writer:
        for kept, _ in keys_groups(parquet, sample_keys):
            writer.write_table(kept)
            keys += kept.column("lmdb_key").to_pylist()
            columns = [kept.column(name).to_pylist() for name in ("country", "city", "video")]
            places.update(zip(*columns, strict=True))
            jpeg_bytes += sum(kept.column("bytes").to_pylist())
    write_keys_pkl(out, keys, summary["keys_format"])
    counts = {
        "images": len(keys),
        "countries": len({p[:1] for p in places}),
        "cities": len({p[:2] for p in places}),
        "videos": len(places),
        "jpeg_bytes": jpeg_bytes,
        "data_mdb_bytes": (out / "lmdb" / "data.mdb").stat().st_size,
    }
    stamp = report.get("fingerprint")
    if index is not None:
        stamp = fingerprint(index, ExportLmdbSettings(keys_format=summary["keys_format"]))
    write_json(out / "export.json", {"fingerprint": stamp, "summary": summary | counts})
    return len(gone)


def export_lmdb(cfg: ExportLmdbSettings, root: Path) -> dict[str, Any]:
    """Write ``<out>/lmdb`` and ``<out>/keys.pkl`` from ``<root>/shards``; return the figures.

    The samples are sorted on disk (in a temporary folder of the root), first by their place in
    the release's tree, then by LMDB key for the database: only the key list keys.pkl needs is
    held whole (~80 bytes a sample).
    """
    root = Path(root)
    out = Path(cfg.output) if cfg.output else root / "lup_lmdb"
    if takedowns.read_pending(root) is not None:
        raise UsageError(
            f"a takedown was cut short ({takedowns.pending_path(root)}): finish it first with "
            f"python pipeline.py takedown --root {root}"
        )
    index = shard_list(root)
    claim(out)
    stamp = fingerprint(index, cfg)
    previous = up_to_date(out, stamp)
    if previous is not None:
        log.info("%s is up to date with the shards", out)
        return previous | {"up_to_date": True}

    start = time.perf_counter()
    shard_names = index["shard"].tolist()
    shard_paths = [root / "shards" / name for name in shard_names]
    with plan_folder(root, SCRATCH_PREFIX) as scratch, atomic_path(out / "keys.parquet") as parquet:
        samples = SortedSpill(scratch / "samples", sample_schema())
        for n, path in enumerate(shard_paths):
            for sample in scan(path, n):
                samples.add(sample)
        puts = SortedSpill(scratch / "puts", put_schema())
        ordered = map(Sample._make, samples.merged())
        keys, counts = enumerate_samples(ordered, shard_names, parquet, puts)
        map_size = cfg.map_size or 2 * counts["jpeg_bytes"] + 4096 * len(keys) + (64 << 20)
        replace_database(out, puts.merged(), len(keys), shard_paths, map_size)
        write_keys_pkl(out, keys, cfg.keys_format)  # keys.parquet follows when the block ends
    elapsed = time.perf_counter() - start
    summary = export_summary(out, counts, len(keys), cfg.keys_format, elapsed)
    write_json(out / "export.json", {"fingerprint": stamp, "summary": summary})
    return summary
