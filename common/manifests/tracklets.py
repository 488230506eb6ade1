"""``shards/tracklets.parquet``: the crops of every tracklet of a build, one row per crop.

Columns (``COLUMNS``): tracklet (the id its crops' JSON names under ``"tracklet"``: ``detect
--tracks`` gives ``<video_id>_t<id>``, ``--from-images --tracklet-pattern`` the pattern's group),
key (the sample's key), shard (the tar holding it), video_id and frame (``""`` and -1 for image
folders, as in ``samples.parquet``). Rows are sorted by tracklet, then key; only samples that
were written are listed. build-shards writes it only when some crop has a tracklet, from rows
already in that order (``write_sorted``, a row group at a time); ``read`` gives an empty table
when a build has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from pathlib import Path

from common.atomic import atomic_path, write_parquet
from common.manifests.parquet import check_file_names, read_table, rows_table

FILE = "tracklets.parquet"
COLUMNS = ["tracklet", "key", "shard", "video_id", "frame"]
REMEDY = "it is not a tracklet list; rerun build-shards"
GROUP_ROWS = 1 << 16  # rows per row group of write_sorted


def frame(rows):
    """``rows`` (a DataFrame or a list of dicts with ``COLUMNS``) in the file's order and dtypes."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=COLUMNS)
    for name in ("tracklet", "key", "shard", "video_id"):
        table[name] = table[name].astype(str)
    table["frame"] = table["frame"].astype("int64")
    return table.sort_values(["tracklet", "key"], kind="stable", ignore_index=True)


def write(shards_dir: Path, rows) -> Path:
    """Atomically write ``<shards_dir>/tracklets.parquet``; its path."""
    path = Path(shards_dir) / FILE
    write_parquet(path, frame(rows))
    return path


def schema():
    """The Arrow schema of the file: four strings and the int64 frame."""
    import pyarrow as pa

    return pa.schema([(name, pa.int64() if name == "frame" else pa.string()) for name in COLUMNS])


def write_sorted(shards_dir: Path, rows: Iterable[tuple[str, str, str, str, int]]) -> int:
    """Atomically write ``<shards_dir>/tracklets.parquet`` from ``COLUMNS`` tuples already sorted by
    tracklet, then key; the number of tracklets."""
    import pyarrow.parquet as pq

    rows, tracklets, last, fields = iter(rows), 0, None, schema()
    with atomic_path(Path(shards_dir) / FILE) as tmp, pq.ParquetWriter(tmp, fields) as out:
        while block := list(islice(rows, GROUP_ROWS)):
            for tracklet, *_ in block:
                tracklets += tracklet != last
                last = tracklet
            out.write_table(rows_table(block, fields))
    return tracklets


def read(shards_dir: Path):
    """The rows of ``<shards_dir>/tracklets.parquet`` (empty when the build has no tracklets);
    a damaged or foreign file, or a ``shard`` that is not a file name there, is a one-line
    ``UsageError`` naming it."""
    path = Path(shards_dir) / FILE
    if not path.is_file():
        return frame([])
    table = read_table(path, tuple(COLUMNS), "run build-shards first", REMEDY)
    check_file_names(path, table["shard"].unique(), REMEDY)
    return table
