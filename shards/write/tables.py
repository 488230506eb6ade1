"""What a build writes once its shards are complete: index.parquet, samples.parquet, tracklets.parquet.

All three are streamed from the part files (one shard's records at a time) and the plan, so a build
of 4.18M crops never holds all its records or its whole plan. ``samples.parquet`` gets one row
group per shard, in key order: the records follow the plan, which every source makes in sorted
key order (checked here, row by row, as they are copied). The written crops of tracklets are
sorted by tracklet and key through a :class:`SortedSpill`.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from common.manifests import samples as samples_file
from common.manifests import shard_index
from common.manifests import tracklets as tracklets_file
from shards.write import progress
from shards.write.items import Task
from shards.write.spill import SortedSpill
from shards.write.tarshard import shard_name
from shards.write.task_file import planned_tracklets

COLUMNS = ["key", "status", "shard", "video_id", "frame"]  # what copy_records reads of a record


def write_index(out: Path, rows: list[dict[str, Any]]) -> Any:
    """Remove shards past the plan's end, write index.parquet from the shards' rows; the index."""
    for extra in out.glob("lup-*.tar"):  # e.g. left by an interrupted build of a larger plan
        if extra.name >= shard_name(len(rows)):
            extra.unlink()
    return shard_index.write(out, rows)


def records(out: Path, parts: int, trailing: list[dict[str, Any]]) -> Iterator[Any]:
    """Arrow tables of the records of parts 0..parts-1, then of ``trailing`` (items recorded after
    the last shard closed: failures, which no part holds)."""
    for number in range(parts):
        yield progress.read_part(progress.part_path(out, number))[0]
    if trailing:
        yield samples_file.table(trailing)


def copy_records(
    out: Path, tasks: Sequence[Task], parts: int, trailing: list[dict[str, Any]], tracklets: SortedSpill
) -> Counter[str]:
    """Write samples.parquet from the records; spill the written crops of tracklets; the statuses.

    ``RuntimeError`` when the records are not the plan's items, one each, in increasing key order.
    """
    statuses: Counter[str] = Counter()
    planned = planned_tracklets(tasks)
    last = None
    with samples_file.writer(out) as write:
        for table in records(out, parts, trailing):
            for key, status, shard, video_id, frame in zip(
                *table.select(COLUMNS).to_pydict().values(), strict=True
            ):
                planned_key, tracklet = next(planned, (None, None))
                if planned_key != key or (last is not None and key <= last):
                    raise RuntimeError(
                        f"{out}: the record of {key!r} is not the plan's next item in key order"
                    )
                last = key
                statuses[status] += 1
                if status == "ok" and tracklet is not None:
                    tracklets.add((tracklet, key, shard, video_id, frame))
            write(table)
    if next(planned, None) is not None:
        raise RuntimeError(f"{out}: items of the plan have no record")
    return statuses


def write_tables(
    out: Path,
    tasks: Sequence[Task],
    rows: list[dict[str, Any]],
    trailing: list[dict[str, Any]],
    scratch: Path | None = None,
) -> tuple[Any, Counter[str], int]:
    """index.parquet (``rows``: every shard's), samples.parquet and tracklets.parquet (removed when
    no crop has a tracklet); the index, the statuses of the records and the number of tracklets.
    ``scratch``: where the tracklet rows are sorted (a temporary folder inside it)."""
    index = write_index(out, rows)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="tracklets-") as folder:
        tracklets = SortedSpill(Path(folder), tracklets_file.schema())
        statuses = copy_records(out, tasks, len(rows), trailing, tracklets)
        if not len(tracklets):
            (out / tracklets_file.FILE).unlink(missing_ok=True)
            return index, statuses, 0
        return index, statuses, tracklets_file.write_sorted(out, tracklets.merged())
