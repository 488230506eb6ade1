"""``shards/samples.parquet``: one row per planned sample of a build, written or not.

Columns (``DEFAULTS``, in order, typed like their defaults): key, status (``ok`` or the failure
code: the item was not written), reason (one line), shard (the tar holding it, ``""`` when it
failed), source (detections, dets, images or lmdb), source_id (image path, LMDB key, video path
or the ``vnames.txt`` line), video_id, country, city, frame, box, score, width, height, bytes.
build-shards writes it with ``frame`` and ``write``; stats and the ``--from-dets`` report read it
with ``read``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from common.atomic import write_parquet
from common.manifests.parquet import check_file_names, read_table
from common.manifests.statuses import check_statuses

log = logging.getLogger(__name__)

FILE = "samples.parquet"
# Why an item was not written (``ok``: it was). Images: empty, corrupt, unencodable, not_a_file,
# unreadable, hidden; LMDB: missing; own detections: bad_box, empty_box; videos: video_missing,
# video_unreadable, frame_unreadable; --from-dets: bad_vname, bad_dets, bad_frame,
# duplicate_video, no_boxes, not_downloaded, not_listed, resolution_mismatch and calibration's
# unverified and mismatch.
STATUSES = (
    "ok",
    "empty",
    "corrupt",
    "unencodable",
    "not_a_file",
    "unreadable",
    "hidden",
    "missing",
    "bad_box",
    "empty_box",
    "video_missing",
    "video_unreadable",
    "frame_unreadable",
    "bad_vname",
    "bad_dets",
    "bad_frame",
    "duplicate_video",
    "no_boxes",
    "not_downloaded",
    "not_listed",
    "resolution_mismatch",
    "unverified",
    "mismatch",
)
REMEDY = "rerun build-shards"
STRICT_ENV = "LUPERSON_STRICT_STATUSES"  # set by the tests: an unlisted code fails the build
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
    """Atomically write ``<shards_dir>/samples.parquet``.

    A status outside ``STATUSES`` is a programming error; it fails under the tests
    (``LUPERSON_STRICT_STATUSES=1``) and is logged, not raised, in a user's build: the rows of hours
    of cutting are worth more than the check.
    """
    try:
        check_statuses(FILE, samples["status"].unique(), STATUSES)
    except ValueError as e:
        if os.environ.get(STRICT_ENV) == "1":
            raise
        log.warning("%s", e)
    write_parquet(Path(shards_dir) / FILE, samples)


def read(shards_dir: Path):
    """``<shards_dir>/samples.parquet``; a missing, damaged or foreign file is one ``UsageError``
    line, and so is a ``shard`` that is not a file name in ``shards_dir`` (readers open it there)."""
    path = Path(shards_dir) / FILE
    samples = read_table(path, tuple(DEFAULTS), "run build-shards first", REMEDY)
    check_file_names(path, samples["shard"].unique(), REMEDY, empty_ok=True)
    return samples
