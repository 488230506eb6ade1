"""What a build has finished: ``shards/plan.json`` and one ``shards/parts/lup-NNNNNN.parquet`` per shard.

A part file lists every item processed while its shard was open (good samples and failures)
and carries the shard's index row in its Parquet metadata. It is written after the tar is
renamed into place, so "part file present and tar of the recorded size present" means the shard
is complete. A rerun keeps the complete shards 0..m-1 and continues from there; a plan that
changed (other inputs or settings) starts the build over.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from common.atomic import atomic_path, write_json
from shards.items import RECORD_DEFAULTS, Task
from shards.tarshard import shard_name

log = logging.getLogger(__name__)
META_KEY = b"luperson_shard"


def fingerprint(settings: dict[str, Any], tasks: Iterable[Task]) -> str:
    """sha256 of the settings that shape the shards and of every planned item."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for task in tasks:
        h.update(json.dumps(task.context, sort_keys=True, default=str).encode())
        for item in task.items:
            h.update(item.key.encode() + b"\0" + json.dumps(item.payload, sort_keys=True).encode())
    return h.hexdigest()


def part_path(out: Path, number: int) -> Path:
    return out / "parts" / shard_name(number).replace(".tar", ".parquet")


def records_frame(records: list[dict[str, Any]]):
    """samples.parquet rows with fixed column order and dtypes."""
    import pandas as pd

    df = pd.DataFrame(records, columns=list(RECORD_DEFAULTS))
    for name, default in RECORD_DEFAULTS.items():
        df[name] = df[name].astype(type(default))
    return df


def write_part(out: Path, number: int, records: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """Atomically write a shard's part file, its index row in the Parquet metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(records_frame(records), preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[META_KEY] = json.dumps(row, sort_keys=True).encode()
    with atomic_path(part_path(out, number)) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)


def read_part(path: Path) -> tuple[Any, dict[str, Any]]:
    """``(records DataFrame, index row)`` of a part file."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return table.to_pandas(), json.loads(table.schema.metadata[META_KEY])


def clean_temporaries(out: Path) -> None:
    """Remove half-written files a killed run left behind (``.<name>.<pid>.tmp``)."""
    for folder in (out, out / "parts"):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def reset(out: Path) -> None:
    """Forget a build made from other inputs or settings."""
    for path in [*out.glob("lup-*.tar"), *(out / "parts").glob("*.parquet")]:
        path.unlink()
    for name in ("index.parquet", "samples.parquet"):
        (out / name).unlink(missing_ok=True)


def start(out: Path, print_: str) -> None:
    """Record the plan's fingerprint; start over when it differs from the one on disk."""
    plan_file = out / "plan.json"
    if plan_file.is_file():
        old = json.loads(plan_file.read_text()).get("fingerprint")
        if old == print_:
            return
        log.warning("inputs or settings changed since the last build: rebuilding every shard")
    reset(out)
    write_json(plan_file, {"fingerprint": print_})


def complete_parts(out: Path) -> list[tuple[Any, dict[str, Any]]]:
    """Parts 0..m-1 whose tar is in place with the recorded size; later parts are dropped."""
    done = []
    number = 0
    while True:
        part = part_path(out, number)
        tar = out / shard_name(number)
        if not part.is_file():
            break
        records, row = read_part(part)
        if not tar.is_file() or tar.stat().st_size != row["bytes"]:
            log.warning("%s is missing or incomplete: rewriting it and what follows", tar.name)
            break
        done.append((records, row))
        number += 1
    for stale in (out / "parts").glob("*.parquet"):
        if stale.name >= part_path(out, number).name:
            stale.unlink()
    return done
