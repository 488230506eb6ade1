"""``shards/index.parquet``, the one list of a build's shards: write it, read it, check it.

Every reader of the shards (verify-shards, stats, export-lmdb, pretrain) goes through
``read_shard_index`` so that a missing, garbage or half-foreign index ends in one line naming the
file, never a pyarrow traceback, and only listed shards are ever read.
"""

from __future__ import annotations

from pathlib import Path

from common.atomic import write_parquet
from common.errors import UsageError
from common.integrity import sha256_file
from common.manifests.parquet import check_file_names, read_table

INDEX_NAME = "index.parquet"
INDEX_COLUMNS = ("shard", "n_samples", "bytes", "sha256")
COLUMNS = [*INDEX_COLUMNS, "first_key", "last_key"]  # what build-shards writes
REMEDY = "it is not a shard index; rerun build-shards"


def read_shard_index(shards_dir: str | Path):
    """The rows of ``<shards_dir>/index.parquet`` as a DataFrame; ``UsageError`` when unusable.

    Checks the columns, that every ``shard`` is a plain file name (no folder parts), and that
    sizes and counts are non-negative integers.
    """
    path = Path(shards_dir) / INDEX_NAME
    index = read_table(path, INDEX_COLUMNS, "run build-shards first", REMEDY)
    check_file_names(path, index["shard"], REMEDY)
    for row in index.itertuples(index=False):
        name = str(row.shard)
        if not (_count(row.n_samples) and _count(row.bytes)):
            raise UsageError(f"{path}: shard {name} has an impossible size or sample count")
    return index


def _count(value: object) -> bool:
    try:
        return int(value) == value and int(value) >= 0  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False


def index_row(path: str | Path) -> dict[str, object]:
    """The index row of one tar: its name, ``.jpg`` samples, size and sha256."""
    import tarfile

    p = Path(path)
    with tarfile.open(p) as tar:
        samples = sum(1 for m in tar if m.isfile() and m.name.endswith(".jpg"))
    return {"shard": p.name, "n_samples": samples, "bytes": p.stat().st_size, "sha256": sha256_file(p)}


def write_shard_index(shards_dir: str | Path) -> Path:
    """Write ``<shards_dir>/index.parquet`` listing every ``*.tar`` there (for shards written
    outside build-shards, e.g. benchmarks); its path."""
    import pandas as pd

    folder = Path(shards_dir)
    rows = [index_row(p) for p in sorted(folder.glob("*.tar"))]
    write_parquet(folder / INDEX_NAME, pd.DataFrame(rows, columns=list(INDEX_COLUMNS)))
    return folder / INDEX_NAME


def write(shards_dir: Path, index) -> None:
    """Atomically write build-shards' ``index.parquet`` (``COLUMNS``, one row per shard in order)."""
    write_parquet(Path(shards_dir) / INDEX_NAME, index.reindex(columns=COLUMNS))
