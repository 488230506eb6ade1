"""The tasks of a streaming build in plan order: each video's outcome from its record, or from its
task, at most ``--max-videos-on-disk`` tasks in flight (so at most that many raw videos on disk)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import closing
from typing import Any

from common.engine import ordered_map
from shards.write.items import Task
from shards.write.writer import Build
from stream.plan import clear_leftovers, fetchable, needs_task
from stream.settings import StreamSettings
from stream.video import Outcome, Stages, read_record, run_video, video_crashed

log = logging.getLogger(__name__)


def outcomes(
    cfg: StreamSettings,
    stages: Stages,
    rows: list[dict[str, Any]],
    jobs: list[tuple[int, Task | None]],
    last_durable: str | None,
) -> Iterator[Outcome]:
    """The outcome of every job ``(manifest row, released task)`` in order: read from the video's
    record, or from its task (``stream.video.run_video``), at most ``max_videos_on_disk`` in flight."""
    from tqdm import tqdm

    released = bool(stages.shards.from_dets)
    # a first pass decides what to run; the records are read again as the walk reaches them, so
    # that none is held for the whole run (46,260 videos at LUPerson's size)
    todo = [k for k, (i, _) in enumerate(jobs) if needs_task(known(stages, rows, i), last_durable, released)]
    log.info("stream: %d videos, %d done before, %d to process", len(jobs), len(jobs) - len(todo), len(todo))
    window = cfg.max_videos_on_disk
    if not stages.keep_videos:
        clear_leftovers(stages.root, rows, [jobs[k][0] for k in todo], window)
    label = lambda task: f"video {task[1]['video_id']}"  # noqa: E731
    done = ordered_map(
        run_video,
        Tasks(stages, rows, [jobs[k] for k in todo], last_durable),
        engine=cfg.engine,
        workers=min(cfg.workers, window),
        address=cfg.address,
        label=label,
        window=window,
        isolate=video_crashed,
    )
    pending = set(todo)
    with closing(done), tqdm(total=len(todo), desc="stream", unit="video", disable=None) as bar:
        for k, (i, _) in enumerate(jobs):
            if k in pending:
                outcome = next(done)
                bar.update(1)
            else:
                outcome = known(stages, rows, i)
            yield outcome  # type: ignore[misc]  # a video not to run has its outcome known


def known(stages: Stages, rows: list[dict[str, Any]], i: int) -> Outcome | None:
    """What is known of row ``i``'s video without running its task: its record; for a video crawl
    gave up on (private, removed...) and never recorded, its row's status; else None."""
    record = read_record(stages.root, rows[i]["video_id"])
    if record is None and not fetchable(rows[i]):
        return Outcome(rows[i]["video_id"], {"status": rows[i]["status"], "reason": rows[i]["reason"]})
    return record


class Tasks(Sequence[tuple[Stages, dict[str, Any], Task | None, str | None]]):
    """``run_video``'s task of each job, made when the engine takes it: a copy of its row, not one
    for every video held at once."""

    def __init__(
        self,
        stages: Stages,
        rows: list[dict[str, Any]],
        jobs: list[tuple[int, Task | None]],
        after: str | None,
    ) -> None:
        self.stages, self.rows, self.jobs, self.after = stages, rows, jobs, after

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, k):  # type: ignore[override]  # ordered_map takes items one by one
        i, released = self.jobs[k]
        return self.stages, dict(self.rows[i]), released, self.after


@contextlib.contextmanager
def appending(build: Build) -> Iterator[None]:
    """Close the last shard when the body ends; an error abandons the open one (its part unwritten)."""
    try:
        yield
        build.close()
    except BaseException:
        build.abort()
        raise
