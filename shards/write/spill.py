"""Sort more rows than memory holds: sorted runs on disk, merged as they are read back.

A source of LUPerson's size plans 4.18M items (10M for LUPerson-NL), and a build must see them in
sorted key order before it writes anything. Held as Python objects that cost ~0.5 KB an item;
here at most ``run_rows`` rows are in memory: each full run is sorted and written to an Arrow IPC
file, and :meth:`SortedSpill.merged` streams every run at once through ``heapq.merge`` (a few
thousand rows of each in memory). A spill smaller than one run never touches the disk.

    spill = SortedSpill(folder, pa.schema([("key", pa.string()), ("payload", pa.string())]))
    for row in rows:
        spill.add(row)
    for key, payload in spill.merged():  # sorted as tuples; can be read again
        ...
"""

from __future__ import annotations

import heapq
import shutil
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from common.manifests.parquet import rows_table

RUN_ROWS = 1 << 18  # rows sorted in memory at a time (~60 MB of two short strings)
BATCH_ROWS = 1 << 12  # rows of a run read back at a time


def write_batches(path: Path, schema: Any, rows: Iterable[tuple], batch_rows: int) -> int:
    """``rows`` as an Arrow IPC file of ``schema``, one record batch per ``batch_rows`` rows (the
    last may be shorter); how many rows it holds."""
    import pyarrow as pa

    n, rows = 0, iter(rows)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        while block := list(islice(rows, batch_rows)):
            writer.write_table(rows_table(block, schema))  # one chunk: one record batch
            n += len(block)
    return n


def read_rows(path: Path) -> Iterator[tuple]:
    """The rows of an IPC file :func:`write_batches` wrote, a batch at a time."""
    import pyarrow as pa

    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            yield from zip(*(column.to_pylist() for column in batch.columns), strict=True)


class SortedSpill:
    """Rows added in any order, read back sorted (as tuples); runs of ``run_rows`` go to ``folder``."""

    def __init__(self, folder: Path, schema: Any, run_rows: int | None = None) -> None:
        self.folder = Path(folder)
        self.schema = schema
        self.run_rows = run_rows or RUN_ROWS
        self.buffer: list[tuple] = []
        self.runs: list[Path] = []
        self.rows = 0

    def add(self, row: tuple) -> None:
        self.buffer.append(row)
        self.rows += 1
        if len(self.buffer) >= self.run_rows:
            self.buffer.sort()
            self.folder.mkdir(parents=True, exist_ok=True)
            run = self.folder / f"run-{len(self.runs):05d}.arrow"
            write_batches(run, self.schema, self.buffer, BATCH_ROWS)
            self.runs.append(run)
            self.buffer = []

    def merged(self) -> Iterator[tuple]:
        """Every row added, in sorted order."""
        self.buffer.sort()
        if not self.runs:
            return iter(self.buffer)
        return heapq.merge(*(read_rows(run) for run in self.runs), iter(self.buffer))

    def __len__(self) -> int:
        return self.rows

    def remove(self) -> None:
        """Delete the sorted runs (once what was made of them holds every row)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def pair_schema() -> Any:
    """Rows of two strings: a sort key and what goes with it (the plans' ``(key, payload)``)."""
    import pyarrow as pa

    return pa.schema([("key", pa.string()), ("payload", pa.string())])
