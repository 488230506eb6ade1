"""What a build has finished: one ``shards/parts/lup-NNNNNN.parquet`` per complete shard.

A part file lists every item processed while its shard was open (good samples and failures)
and carries the shard's index row in its Parquet metadata. It is written after the tar is
renamed into place, so "part file present and tar of the recorded size present" means the shard
is complete. A rerun of the same plan (``shards.write.plan_guard`` checked it) keeps the complete
shards 0..m-1 and continues from there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from common.atomic import atomic_path
from common.manifests import samples
from shards.write.items import Task
from shards.write.tarshard import shard_name
from shards.write.task_file import planned_tracklets

log = logging.getLogger(__name__)
META_KEY = b"luperson_shard"


def part_path(out: Path, number: int) -> Path:
    return out / "parts" / shard_name(number).replace(".tar", ".parquet")


def write_part(out: Path, number: int, records: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """Atomically write a shard's part file, its index row in the Parquet metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(samples.frame(records), preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[META_KEY] = json.dumps(row, sort_keys=True).encode()
    with atomic_path(part_path(out, number)) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)


def read_part(path: Path) -> tuple[Any, dict[str, Any]]:
    """``(records as an Arrow table, index row)`` of a part file."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return table, json.loads(table.schema.metadata[META_KEY])


def read_row(path: Path) -> dict[str, Any]:
    """The index row of a part file, without reading its records."""
    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(path).metadata[META_KEY])


def clean_temporaries(out: Path) -> None:
    """Remove half-written files a killed run left behind (``.<name>.<pid>.tmp``)."""
    for folder in (out, out / "parts"):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def readable_parts(out: Path) -> Iterator[tuple[list[str], dict[str, Any]]]:
    """``(record keys, index row)`` of parts 0, 1, ... in turn, while each is readable and its tar
    is in place with the recorded size (a warning names the first that is not)."""
    import pyarrow as pa

    number = 0
    while (part := part_path(out, number)).is_file():
        tar = out / shard_name(number)
        try:
            records, row = read_part(part)
            keys = records.column("key").to_pylist()
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as e:
            log.warning("%s is unreadable (%s): rewriting its shard and what follows", part.name, e)
            return
        if not tar.is_file() or tar.stat().st_size != row["bytes"]:
            log.warning("%s is missing or incomplete: rewriting it and what follows", tar.name)
            return
        yield keys, row
        number += 1


def drop_parts_from(out: Path, number: int) -> None:
    """Remove the part files of shards ``number`` and up: their shards are written again."""
    for stale in (out / "parts").glob("*.parquet"):
        if stale.name >= part_path(out, number).name:
            stale.unlink()


def complete_parts(out: Path, tasks: Sequence[Task]) -> list[tuple[int, dict[str, Any]]]:
    """``(records, index row)`` of parts 0..m-1: readable, their tar in place with the recorded
    size, and their records the plan's first items in order (a build records the items in plan
    order, one part per shard, so complete parts always hold a prefix of the plan); the parts
    from the first that is not are removed, and their shards rewritten."""
    done = []
    planned = (key for key, _ in planned_tracklets(tasks))
    for keys, row in readable_parts(out):
        if keys != list(islice(planned, len(keys))):
            log.warning(
                "%s does not hold the plan's next items: rewriting its shard and what follows",
                part_path(out, len(done)).name,
            )
            break
        done.append((len(keys), row))
    drop_parts_from(out, len(done))
    return done
