"""The shard-writing loop: results in sorted key order -> capped tar shards, resumable.

Workers prepare samples (decode, crop, encode) in parallel, on the local pool or as Ray tasks;
this process appends them in key order, so the shards depend neither on the number of workers nor
on the engine. A shard closes when the next sample would pass ``max_samples`` or ``max_bytes``; a
sample larger than ``max_bytes`` alone gets a shard of its own. A full disk ends the build with one
line naming the file and the free space (``writing``); what was complete stays for the rerun.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, overload

from common import engine as engines
from common.integrity import DISK_FULL, write_failure
from common.manifests import takedowns
from common.manifests.shard_index import drop_stale_verdict
from shards.settings import ShardSettings
from shards.write import progress
from shards.write.faces import Encoding
from shards.write.items import Result, Task
from shards.write.tables import write_tables
from shards.write.tarshard import ShardWriter, shard_name
from shards.write.task_file import count_items, drop_items

log = logging.getLogger(__name__)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """A full disk (or file size limit) in the body is ``UsageError``: ``cannot write PATH (No space
    left on device; N MiB free there)``. ``path``, not the error's file: that is a temporary name."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise write_failure(path, e) from None


class Build:
    """Appends results to shards in ``out``, numbering from ``first``, writing a part per shard.

    ``out`` is a folder of the workspace root (``shards``, or ``shards.next`` while a plan replaces
    another): a crop the root's takedown requests name (``common.manifests.takedowns``) is not
    written but recorded ``taken_down``, and keeps its place in its shard (``ShardWriter.reserve``),
    so the shards are those a takedown of it leaves behind.
    """

    def __init__(self, out: Path, first: int, max_samples: int, max_bytes: int) -> None:
        self.out = out
        self.number = first
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.takedowns = takedowns.taken_down(out.parent)
        self.writer: ShardWriter | None = None
        self.records: list[dict[str, Any]] = []  # items seen since the last shard closed
        self.rows: list[dict[str, Any]] = []  # index rows of the shards closed here

    def add(self, result: Result) -> None:
        if result.files is not None:
            if self.writer is not None and not self.writer.fits(result.key, result.files):
                self.close()
            path = self.out / shard_name(self.number)
            reason = self.takedowns.reason(result.key, result.record["video_id"]) if self.takedowns else None
            with writing(path):
                if self.writer is None:
                    self.writer = ShardWriter(path, self.max_samples, self.max_bytes)
                if reason is None:
                    self.writer.add(result.key, result.files)
                    result.record["shard"] = self.writer.path.name
                else:
                    self.writer.reserve(result.key, result.files)
                    result.record.update(status=takedowns.STATUS, reason=reason)
        self.records.append(result.record)

    def close(self) -> None:
        """Rename the open shard into place, then write its part file (the 'done' mark)."""
        if self.writer is None:
            return
        with writing(self.writer.path):
            row = self.writer.close()
        keys = self.writer.keys or [""]  # every crop of the shard taken down: an empty tar
        row["first_key"], row["last_key"] = keys[0], keys[-1]
        with writing(progress.part_path(self.out, self.number)):
            progress.write_part(self.out, self.number, self.records, row)
        log.debug("wrote %s: %d samples, %d bytes", row["shard"], row["n_samples"], row["bytes"])
        self.rows.append(row)
        self.records = []  # in the part file now
        self.writer = None
        self.number += 1

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


def job_label(job: tuple[Task, Encoding]) -> str:
    """``"the items a..b"`` of a ``(task, encoding)`` job, for a worker that died on it."""
    items = job[0].items
    if not items:
        return "an empty task"
    return f"the item {items[0].key}" if len(items) == 1 else f"the items {items[0].key}..{items[-1].key}"


def reusable_parts(
    tasks: Sequence[Task], out: Path
) -> tuple[list[tuple[int, dict[str, Any]]], Sequence[Task]]:
    """Prepare ``out``; ``(records, index row)`` of the complete parts of an earlier run of the plan,
    and the plan's tasks left to do (the complete parts hold its first items)."""
    out.mkdir(parents=True, exist_ok=True)
    progress.clean_temporaries(out)
    done = progress.complete_parts(out, tasks)
    return done, drop_items(tasks, sum(n for n, _ in done))


class Jobs(Sequence[tuple[Task, Encoding]]):
    """``(task, encoding)`` of each task, made when the engine asks for it: a plan kept on disk
    (``TaskFile``) is read a task at a time."""

    def __init__(self, tasks: Sequence[Task], encoding: Encoding) -> None:
        self.tasks = tasks
        self.encoding = encoding

    def __len__(self) -> int:
        return len(self.tasks)

    @overload
    def __getitem__(self, i: int) -> tuple[Task, Encoding]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[Task, Encoding]]: ...
    def __getitem__(self, i: int | slice) -> tuple[Task, Encoding] | list[tuple[Task, Encoding]]:
        if isinstance(i, slice):
            return [(task, self.encoding) for task in self.tasks[i]]
        return self.tasks[i], self.encoding

    def __iter__(self) -> Iterator[tuple[Task, Encoding]]:
        return ((task, self.encoding) for task in self.tasks)


def append_results(build: Build, results: Callable[[], Iterator[list[Result]]], bar: Any) -> None:
    """Append every job's results (``results()``) in order and close the last shard; an error aborts
    the open shard. The bar is closed whatever happens."""
    try:
        for job_results in results():
            for result in job_results:
                build.add(result)
            bar.update(len(job_results))
        build.close()
    except BaseException:
        build.abort()
        raise
    finally:
        bar.close()


def build_summary(
    n_items: int, index: Any, statuses: dict[str, int], n_reused: int, build: Build, elapsed: float
) -> dict[str, Any]:
    """The figures ``write_shards`` returns."""
    written_now = sum(r["n_samples"] for r in build.rows)
    return {
        "items": n_items,
        "samples": statuses.get("ok", 0),
        "failed": {k: statuses[k] for k in sorted(statuses) if k != "ok"},
        "shards": len(index),
        "shards_reused": n_reused,
        "bytes": int(index["bytes"].sum()),
        "samples_written_now": written_now,
        "samples_per_s": round(written_now / elapsed, 1) if elapsed > 0 else 0.0,
    }


def write_shards(
    tasks: Sequence[Task],
    out: Path,
    cfg: ShardSettings,
    run_job: Callable[[tuple[Task, Encoding]], list[Result]],
    scratch: Path | None = None,
) -> dict[str, Any]:
    """Write (or finish) the shards of ``tasks`` under ``out``; index.parquet, samples.parquet and
    tracklets.parquet (``shards.write.tables``; ``scratch``: where tracklet rows are sorted).

    ``run_job((task, cfg.encoding()))`` makes a task's results, a module-level function that the
    local workers preload (clean forkserver processes: none inherits this process's pyarrow
    threads) or a Ray task runs, on ``cfg.engine``; the results come back in job order either way.
    The complete parts already in ``out`` are kept: ``out`` holds this plan's shards or none
    (``shards.write.plan_guard.place``).
    """
    from tqdm import tqdm

    with writing(out):
        done, todo = reusable_parts(tasks, out)
    n_items, n_done = count_items(tasks), sum(n for n, _ in done)
    if done:
        log.info("reusing %d complete shards (%d items)", len(done), n_done)

    build = Build(out, len(done), cfg.max_samples, cfg.max_bytes)
    start = time.perf_counter()
    jobs = Jobs(todo, cfg.encoding())
    drop_stale_verdict(out, rewriting=bool(jobs))  # before a shard is rewritten, not after
    bar = tqdm(total=n_items, initial=n_done, unit="img", desc="build-shards", mininterval=1.0)
    results = partial(
        engines.ordered_map,
        run_job,
        jobs,
        engine=cfg.engine,
        workers=cfg.workers,
        address=cfg.address,
        context="forkserver",
        preload=[run_job.__module__],
        label=job_label,
    )
    append_results(build, results, bar)
    elapsed = time.perf_counter() - start

    with writing(out):
        rows = [row for _, row in done] + build.rows
        index, statuses, n_tracklets = write_tables(out, tasks, rows, build.records, scratch)
    summary = build_summary(n_items, index, statuses, len(done), build, elapsed)
    return {**summary, "tracklets": n_tracklets} if n_tracklets else summary
