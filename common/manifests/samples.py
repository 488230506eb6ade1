"""``shards/samples.parquet``: one row per planned sample of a build, written or not.

Columns (``DEFAULTS``, in order, typed like their defaults): key, status (``ok`` or the failure
code: the item was not written), reason (one line), shard (the tar holding it, ``""`` when it
failed), source (detections, dets, images or lmdb), source_id (image path, LMDB key, video path
or the ``vnames.txt`` line), video_id, country, city, frame, box, score, width, height, bytes, faces (face regions blurred
in the crop; -1: blurring was off), license (the source video's, as crawl recorded it; "" unknown).
build-shards writes it a shard's rows at a time with ``writer`` (one row group each: a build of
4.18M crops never holds them all); ``write`` writes a whole DataFrame; stats and the
``--from-dets`` report read it with ``read``.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common.atomic import atomic_path, write_parquet
from common.errors import UsageError, one_line
from common.manifests.parquet import check_file_names, read_table
from common.manifests.statuses import check_statuses

FILE = "samples.parquet"
KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")  # no dots: WebDataset ends a key at the first dot
# Why an item was not written (``ok``: it was). Images: empty, corrupt, unencodable, not_a_file,
# unreadable, hidden; LMDB: missing; own detections: bad_box, empty_box; videos: video_missing,
# video_unreadable, frame_unreadable; --from-dets: bad_vname, bad_dets, bad_frame,
# duplicate_video, no_boxes, not_downloaded, not_listed, resolution_mismatch and calibration's
# unverified and mismatch; any source: taken_down (``python pipeline.py takedown`` removed the crop,
# and every later build leaves it out: ``common.manifests.takedowns``).
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
    "taken_down",
)
REMEDY = "rerun build-shards"
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
    "faces": -1,
    "license": "",
}


def safe_key(text: str) -> str:
    """``"a/b.c d"`` -> ``"a_b_c_d"``: only letters, digits, ``_`` and ``-``."""
    return KEY_UNSAFE.sub("_", text) or "_"


def sample_key(video_id: str, frame: int, box: int) -> str:
    """A crop's key, ``<video_id>_<frame:08d>_<box:03d>``, the video id made safe (no dots).

    Shards hold crops in key order, so a video's place in a build is the place of its keys:
    ``sample_key(video_id, 0, 0)`` sorts the videos (``video_order``).
    """
    return f"{safe_key(video_id)}_{frame:08d}_{box:03d}"


def video_order(video_id: str) -> str:
    """Where a video's crops fall in the shards: the key of its first possible crop. filter's
    near-duplicate walk and the streaming build go through videos in this order."""
    return sample_key(video_id, 0, 0)


def frame(records: list[dict[str, Any]]):
    """Rows as a DataFrame with the fixed column order and dtypes."""
    import pandas as pd

    df = pd.DataFrame(records, columns=list(DEFAULTS))
    for name, default in DEFAULTS.items():
        df[name] = df[name].astype(type(default))
    return df


def schema():
    """The Arrow schema of the file: ``DEFAULTS``' columns, strings, int64 and float64."""
    import pyarrow as pa

    types = {str: pa.string(), int: pa.int64(), float: pa.float64()}
    return pa.schema([(name, types[type(default)]) for name, default in DEFAULTS.items()])


def table(records: list[dict[str, Any]]):
    """Rows as an Arrow table of :func:`schema`."""
    import pyarrow as pa

    return pa.Table.from_pandas(frame(records), preserve_index=False).cast(schema())


def write(shards_dir: Path, samples) -> None:
    """Atomically write ``<shards_dir>/samples.parquet`` from a DataFrame (a status outside ``STATUSES`` is a ``ValueError``, as in the box files)."""
    check_statuses(FILE, samples["status"].unique(), STATUSES)
    write_parquet(Path(shards_dir) / FILE, samples)


@contextlib.contextmanager
def writer(shards_dir: Path) -> Iterator[Callable[[Any], None]]:
    """``write(table)`` appends an Arrow table of rows (cast to :func:`schema`) as a row group of
    ``<shards_dir>/samples.parquet``, which appears, complete, when the block ends (a status outside
    ``STATUSES`` is a ``ValueError``); an error in the block leaves the file as it was."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    statuses: set[str] = set()
    with atomic_path(Path(shards_dir) / FILE) as tmp:
        with pq.ParquetWriter(tmp, schema()) as out:

            def write(rows) -> None:
                rows = rows.select(list(DEFAULTS)).cast(schema())
                statuses.update(pc.unique(rows.column("status")).to_pylist())
                out.write_table(rows)

            yield write
        check_statuses(FILE, sorted(statuses), STATUSES)


def read(shards_dir: Path):
    """``<shards_dir>/samples.parquet``; a missing, damaged or foreign file is one ``UsageError``
    line, and so is a ``shard`` that is not a file name in ``shards_dir`` (readers open it there)."""
    path = Path(shards_dir) / FILE
    samples = read_table(path, tuple(DEFAULTS), "run build-shards first", REMEDY)
    check_file_names(path, samples["shard"].unique(), REMEDY, empty_ok=True)
    return samples


def batches(shards_dir: Path, columns: list[str]) -> Iterator[Any]:
    """``columns`` of ``<shards_dir>/samples.parquet`` as pandas DataFrames, a row group at a time
    (a reader that only counts never holds the file whole: 4.18M rows at LUPerson's size); a
    missing, damaged or foreign file is one ``UsageError`` line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(shards_dir) / FILE
    if not path.is_file():
        raise UsageError(f"{path} does not exist: run build-shards first")
    try:
        with pq.ParquetFile(path) as file:
            for group in range(file.num_row_groups):
                yield file.read_row_group(group, columns=columns).to_pandas()
    except (OSError, pa.ArrowException) as e:
        raise UsageError(
            f"{path} is not a readable Parquet file ({one_line(str(e), 200)}); {REMEDY}"
        ) from None
