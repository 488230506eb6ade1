"""``shards/tracklets.parquet``: the crops of every tracklet of a build, one row per crop.

Columns (``COLUMNS``): tracklet (the id its crops' JSON names under ``"tracklet"``: ``detect
--tracks`` gives ``<video_id>_t<id>``, ``--from-images --tracklet-pattern`` the pattern's group),
key (the sample's key), shard (the tar holding it), video_id and frame (``""`` and -1 for image
folders, as in ``samples.parquet``). Rows are sorted by tracklet, then key; only samples that
were written are listed. build-shards writes it only when some crop has a tracklet; ``read``
gives an empty table when a build has none.
"""

from __future__ import annotations

from pathlib import Path

from common.atomic import write_parquet
from common.manifests.parquet import check_file_names, read_table

FILE = "tracklets.parquet"
COLUMNS = ["tracklet", "key", "shard", "video_id", "frame"]
REMEDY = "it is not a tracklet list; rerun build-shards"


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
