"""A plan kept on disk: the tasks of a source with millions of items, read back one task at a time.

``--from-images`` and ``--from-lmdb`` plan one item per crop. :class:`TaskFile` holds their items
in an Arrow IPC file, sorted by key, one record batch per task (``key``, and ``payload`` as the
canonical JSON ``plan_guard.fingerprint`` hashes), so the writer asks for task *i* when a worker
needs it and the build's memory does not grow with the plan. It is a ``Sequence[Task]`` like the
list the video sources plan; :func:`count_items`, :func:`drop_items`, :func:`task_rows` and
:func:`planned_tracklets` serve both kinds, reading a plan file's columns without making items.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from shards.write.items import Item, Task
from shards.write.spill import pair_schema, write_batches

COLUMNS = ("key", "payload")
PLAN_PREFIX = ".build-plan-"  # build-shards' temporary folder in its root


@contextlib.contextmanager
def plan_folder(root: Path, prefix: str = PLAN_PREFIX) -> Iterator[Path]:
    """A temporary folder ``<prefix>*`` in ``root`` for a command's plan and its sorting, removed
    when the block ends; one a killed run left is removed first (the commands that use it,
    build-shards and export-lmdb, hold their root exclusively)."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(prefix + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=prefix) as folder:
        yield Path(folder)


def plan_space(spill: Path | None) -> tuple[Path, Any]:
    """``(folder, keep)``: where a source sorts and keeps its plan, ``spill``, or a new temporary
    folder when ``None``, then also returned as ``keep`` for the plan to hold (see :class:`TaskFile`)."""
    if spill is not None:
        return Path(spill), None
    keep = tempfile.TemporaryDirectory(prefix="luperson-plan-")
    return Path(keep.name), keep


def payload_json(payload: dict[str, Any]) -> str:
    """The one JSON text of a payload: what the plan file stores and the fingerprint hashes."""
    return json.dumps(payload, sort_keys=True)


class TaskFile(Sequence[Task]):
    """Tasks of ``chunk`` items (the last may be shorter), all of one ``kind`` and ``context``,
    read from ``path``; ``skip`` items of the first task are left out (:meth:`after`). ``keep``
    is held only to live as long as the plan (a temporary folder holding the file)."""

    def __init__(
        self,
        path: Path,
        kind: str,
        context: dict[str, Any],
        items: int,
        chunk: int,
        skip: int = 0,
        keep: Any = None,
    ) -> None:
        self.path = Path(path)
        self.kind = kind
        self.context = context
        self.items = items
        self.chunk = chunk
        self.skip = skip
        self.keep = keep
        self._reader: Any = None

    @classmethod
    def write(
        cls,
        path: Path,
        kind: str,
        context: dict[str, Any],
        rows: Iterable[tuple[str, str]],
        chunk: int,
        keep: Any = None,
    ) -> TaskFile:
        """The plan of ``rows`` (``(key, payload_json)`` in key order), written to ``path``: one
        record batch per task."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        n = write_batches(Path(path), pair_schema(), rows, chunk)
        return cls(path, kind, context, n, chunk, keep=keep)

    def rows(self, n: int) -> tuple[list[str], list[str]]:
        """Keys and payload JSON texts of task ``n`` (of this view: after :meth:`after`)."""
        import pyarrow as pa

        if self._reader is None:
            self._reader = pa.ipc.open_file(pa.OSFile(str(self.path), "rb"))
        number = self.skip // self.chunk + n
        batch = self._reader.get_batch(number)
        keys, payloads = (batch.column(name).to_pylist() for name in COLUMNS)
        first = self.skip % self.chunk if n == 0 else 0
        return keys[first:], payloads[first:]

    def task(self, n: int) -> Task:
        """Task ``n`` of this view."""
        keys, payloads = self.rows(n)
        return Task(self.kind, self.context, tuple(map(Item, keys, map(json.loads, payloads))))

    def __len__(self) -> int:
        if self.skip >= self.items:
            return 0
        return -(-self.items // self.chunk) - self.skip // self.chunk

    @overload
    def __getitem__(self, i: int) -> Task: ...
    @overload
    def __getitem__(self, i: slice) -> list[Task]: ...
    def __getitem__(self, i: int | slice) -> Task | list[Task]:
        if isinstance(i, slice):
            return [self[n] for n in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.task(i % len(self))

    def __iter__(self) -> Iterator[Task]:
        for n in range(len(self)):
            yield self[n]

    def after(self, n: int) -> TaskFile:
        """The same plan without its first ``n`` items."""
        skip = min(self.skip + n, self.items)
        return TaskFile(self.path, self.kind, self.context, self.items, self.chunk, skip, self.keep)


def count_items(tasks: Sequence[Task]) -> int:
    """Items of a plan (without reading a :class:`TaskFile`)."""
    if isinstance(tasks, TaskFile):
        return tasks.items - tasks.skip
    return sum(len(task.items) for task in tasks)


def drop_items(tasks: Sequence[Task], n: int) -> Sequence[Task]:
    """The plan without its first ``n`` items (the work a resumed build has left); tasks left
    without items are dropped."""
    if isinstance(tasks, TaskFile):
        return tasks.after(n)
    left = []
    for task in tasks:
        if n < len(task.items):
            left.append(task if n == 0 else Task(task.kind, task.context, task.items[n:]))
        n = max(0, n - len(task.items))
    return [task for task in left if task.items]


def planned_items(tasks: Sequence[Task]) -> Iterator[Item]:
    """Every item of a plan, in order."""
    for task in tasks:
        yield from task.items


def task_rows(tasks: Sequence[Task]) -> Iterator[tuple[dict[str, Any], Iterable[tuple[str, str]]]]:
    """Each task's context and its items as ``(key, payload JSON)``; a plan file's own text, unparsed."""
    if isinstance(tasks, TaskFile):
        for n in range(len(tasks)):
            yield tasks.context, zip(*tasks.rows(n), strict=True)
    else:
        for task in tasks:
            yield task.context, ((item.key, payload_json(item.payload)) for item in task.items)


def planned_tracklets(tasks: Sequence[Task]) -> Iterator[tuple[str, str | None]]:
    """``(key, tracklet or None)`` of every item of a plan, in order (a plan file's payload is
    parsed only where it names a tracklet)."""
    if not isinstance(tasks, TaskFile):
        yield from ((item.key, item.payload.get("tracklet")) for item in planned_items(tasks))
        return
    for _, rows in task_rows(tasks):
        for key, payload in rows:
            yield key, json.loads(payload).get("tracklet") if '"tracklet"' in payload else None
