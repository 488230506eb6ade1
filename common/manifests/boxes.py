"""``detections/<bucket>/<video_id>.parquet``: one row per detected box of one video, written once, atomically.

One file per kept video (50,534 at LUPerson's size, more for its successors), so the folder is fanned
out (:mod:`common.fanout`: 256 buckets named by the id's hash): ``path_of`` names a video's file and
``files`` lists them all, in video id order.

Columns: video_id, frame, box (index within its frame, best score first), x1, y1, x2, y2 (source
pixels), score, keypoints (17 x (x, y, conf) flattened to 51 floats; empty when not computed:
``--keypoints none`` or a box that already failed a box rule), valid, status (one of
``STATUSES``: ``ok`` or the first §3.1 rule the box failed), detector, keypoint_model,
pose_present (the keypoint model's score that a person is in the crop: BlazePose gives one; null
for HRNet, for ``--keypoints none`` and for boxes without keypoints; absent in older files),
tracklet (``<video_id>_t<id>``, the tracklet the box belongs to with ``detect --tracks``; null
without it and for boxes no track holds; absent in older files). The
file's schema metadata holds ``frames_sampled`` (a video may have no boxes), ``detector``,
``keypoint_model`` and a ``note`` (the one-line reason) when some sampled frames could not be
decoded.
"""

from __future__ import annotations

from pathlib import Path

from common import fanout
from common.atomic import atomic_path
from common.manifests.parquet import read_table
from common.manifests.statuses import check_read_statuses, check_statuses

DIR = "detections"
SUFFIX = ".parquet"
# §3.1's rules in the order they are checked; the first three need only the box.
STATUSES = ("ok", "low_score", "too_narrow", "bad_aspect", "no_head", "no_upper_body", "no_lower_body")
REMEDY = "delete it and run detect again"


def schema(**metadata: str):
    """The pyarrow schema of a per-video box file, with ``metadata`` attached."""
    import pyarrow as pa

    fields = [
        ("video_id", pa.string()),
        ("frame", pa.int64()),
        ("box", pa.int32()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("x2", pa.float32()),
        ("y2", pa.float32()),
        ("score", pa.float32()),
        ("keypoints", pa.list_(pa.float32())),
        ("valid", pa.bool_()),
        ("status", pa.string()),
        ("detector", pa.string()),
        ("keypoint_model", pa.string()),
        ("pose_present", pa.float32()),
        ("tracklet", pa.string()),
    ]
    return pa.schema(fields, metadata=metadata or None)


def path_of(root: Path, video_id: str) -> Path:
    """``root/detections/<bucket>/<video_id>.parquet`` (nothing is created)."""
    return fanout.fanned_path(Path(root) / DIR, video_id, f"{video_id}{SUFFIX}")


def files(root: Path) -> list[Path]:
    """Every video's box file under ``root``, sorted by video id (not the temporaries of a write)."""
    found = fanout.fanned_files(Path(root) / DIR)
    return sorted(
        (p for p in found if p.suffix == SUFFIX and not p.name.startswith(".")), key=lambda p: p.name
    )


def write(path: Path, columns: dict[str, list], **metadata: str) -> None:
    """Atomically write one video's box ``columns`` (every ``schema()`` name) with ``metadata``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_statuses(str(path), columns["status"], STATUSES)
    table = pa.table(columns, schema=schema(**metadata))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read(path: Path, columns: list[str] | None = None, required: tuple[str, ...] = ()):
    """The boxes of one video file as a DataFrame (``columns`` only); a damaged or foreign file, or
    a ``status`` outside ``STATUSES`` (the report names files by it), is a one-line ``UsageError``
    naming it."""
    table = read_table(
        Path(path), required or tuple(columns or ()), "run detect first", REMEDY, columns=columns
    )
    if "status" in table.columns:
        check_read_statuses(Path(path), table["status"].unique(), STATUSES, REMEDY)
    return table


def metadata(path: Path) -> dict[str, str]:
    """The file's schema metadata (``frames_sampled``, ``detector``, ``keypoint_model``, ``note``)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if not k.startswith(b"ARROW:") and k != b"pandas"}
