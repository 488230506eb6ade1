"""``shards/index.parquet``, the one list of a build's shards: write it, read it, check it; and
``shards/verify.json``, verify-shards' verdict on the shards an index lists, never left beside
other bytes.

Every reader of the shards (verify-shards, stats, export-lmdb, pretrain) goes through
``read_shard_index`` so that a missing, garbage or half-foreign index ends in one line naming the
file, never a pyarrow traceback, and only listed shards are ever read. ``verify.json`` records the
sha256 of the index it checked: ``drop_stale_verdict`` removes it when the shards are about to be
rewritten or the index is another (every write of the index checks).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from common.atomic import write_parquet
from common.errors import UsageError
from common.integrity import sha256_file
from common.manifests.parquet import check_file_names, read_table

log = logging.getLogger(__name__)
INDEX_NAME = "index.parquet"
VERIFY_NAME = "verify.json"
REQUIRED = ("shard", "n_samples", "bytes", "sha256")  # what the readers use
COLUMNS = [*REQUIRED, "first_key", "last_key"]  # what is written: a row per shard, in order
REMEDY = "it is not a shard index; rerun build-shards"


def read_shard_index(shards_dir: str | Path):
    """The rows of ``<shards_dir>/index.parquet`` as a DataFrame; ``UsageError`` when unusable.

    Checks the columns, that every ``shard`` is a plain file name (no folder parts), and that
    sizes and counts are non-negative integers.
    """
    path = Path(shards_dir) / INDEX_NAME
    index = read_table(path, REQUIRED, "run build-shards first", REMEDY)
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
    """The index row of one tar: its name, ``.jpg`` samples, size, sha256, first and last key."""
    import tarfile

    p = Path(path)
    with tarfile.open(p) as tar:
        keys = [m.name.partition(".")[0] for m in tar if m.isfile() and m.name.endswith(".jpg")]
    row = {"shard": p.name, "n_samples": len(keys), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
    return row | {"first_key": keys[0] if keys else "", "last_key": keys[-1] if keys else ""}


def write(shards_dir: str | Path, rows: list[dict[str, object]]):
    """Atomically write ``<shards_dir>/index.parquet`` (``COLUMNS``, ``rows`` in shard order), then
    drop a ``verify.json`` of another index; the index as a DataFrame."""
    import pandas as pd

    index = pd.DataFrame(rows, columns=COLUMNS)
    write_parquet(Path(shards_dir) / INDEX_NAME, index)
    drop_stale_verdict(Path(shards_dir), rewriting=False)
    return index


def write_shard_index(shards_dir: str | Path) -> Path:
    """Write ``<shards_dir>/index.parquet`` listing every ``*.tar`` there (for shards written
    outside build-shards, e.g. benchmarks); its path."""
    folder = Path(shards_dir)
    write(folder, [index_row(p) for p in sorted(folder.glob("*.tar"))])
    return folder / INDEX_NAME


def drop_stale_verdict(shards_dir: Path, rewriting: bool) -> None:
    """Remove ``verify.json`` when shards are about to be (re)written (``rewriting``), or when it
    does not name the sha256 of the current ``index.parquet``: a verdict never vouches for other bytes."""
    path = shards_dir / VERIFY_NAME
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text()).get("index_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None
    index = shards_dir / INDEX_NAME
    if rewriting or not index.is_file() or recorded != sha256_file(index):
        path.unlink()
        log.info("removed %s: the shards changed since it was written", path)
