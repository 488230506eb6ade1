"""``shards/samples.parquet``: one row per planned sample of a build, written or not.

Columns (``DEFAULTS``, in order, typed like their defaults): key, status (``ok`` or the failure
code: the item was not written), reason (one line), shard (the tar holding it, ``""`` when it
failed), source (detections, dets, images or lmdb), source_id (image path, LMDB key, video path
or the ``vnames.txt`` line), video_id, country, city, frame, box, score, width, height, bytes.
build-shards writes it with ``frame`` and ``write``; stats and the ``--from-dets`` report read it
with ``read``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from common.atomic import write_parquet
from common.manifests.parquet import read_table

FILE = "samples.parquet"
# The default is the value when unknown.
DEFAULTS: dict[str, Any] = {
    "key": "",
    "status": "ok",
    "reason": "",
    "shard": "",
    "source": "",
    "source_id": "",
    "video_id": "",
    "country": "",
    "city": "",
    "frame": -1,
    "box": -1,
    "score": math.nan,
    "width": 0,
    "height": 0,
    "bytes": 0,
}


def frame(records: list[dict[str, Any]]):
    """Rows as a DataFrame with the fixed column order and dtypes."""
    import pandas as pd

    df = pd.DataFrame(records, columns=list(DEFAULTS))
    for name, default in DEFAULTS.items():
        df[name] = df[name].astype(type(default))
    return df


def write(shards_dir: Path, samples) -> None:
    """Atomically write ``<shards_dir>/samples.parquet``."""
    write_parquet(Path(shards_dir) / FILE, samples)


def read(shards_dir: Path):
    """``<shards_dir>/samples.parquet``; a missing, damaged or foreign file is one ``UsageError`` line."""
    return read_table(
        Path(shards_dir) / FILE, tuple(DEFAULTS), "run build-shards first", "rerun build-shards"
    )
