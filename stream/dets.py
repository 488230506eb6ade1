"""``stream --from-dets``: the released LUPerson boxes cut from each video as it arrives.

The plan is ``build-shards --from-dets``' own (``import_dets.plan``), made before any download:
a video ``videos.parquet`` lists (``crawl --from-vnames --search-only``) is planned as if
downloaded, and its task (``stream.video.cut_released``) matches it once it is, as build-shards
matches a video crawl downloaded. The tasks are walked in plan order (key order), each video's
crops appended as its outcome comes; a task with no video to fetch (a line not in
``videos.parquet``, a bad pickle, a video crawl gave up on) fails its boxes here, as build-shards
fails them. Videos listed but without boxes are downloaded and deleted too, so ``videos.parquet``
ends as a staged ``crawl --from-vnames`` leaves it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from shards.release import import_dets
from shards.write.items import Task
from shards.write.writer import Build
from stream.plan import fetchable
from stream.runner import appending, outcomes
from stream.settings import StreamSettings
from stream.video import Stages, released_context


def released_jobs(
    tasks: list[Task], rows: list[dict[str, Any]], order: list[int]
) -> list[tuple[int, Task | None]]:
    """``(manifest row, task)`` to run: each planned video crawl may still fetch, in plan order,
    then every other video of the manifest (fetched and deleted: no boxes)."""
    by_vname = {row["vname"]: i for i, row in enumerate(rows) if row.get("vname")}
    jobs: list[tuple[int, Task | None]] = []
    covered: set[int] = set()
    for task in tasks:
        i = by_vname.get(task.context["vname"])
        if task.context["status"] == "ok" and i is not None and i not in covered and fetchable(rows[i]):
            jobs.append((i, task))
            covered.add(i)
    return jobs + [(i, None) for i in order if i not in covered and fetchable(rows[i])]


def stream_released(
    cfg: StreamSettings,
    stages: Stages,
    rows: list[dict[str, Any]],
    order: list[int],
    build: Build,
    last_durable: str | None,
) -> dict[str, Any]:
    """Cut the released boxes of every planned video; the summary, with the plan (every task with
    the context build-shards would have given it) as ``tasks``."""
    cfg_shards = stages.shards
    calibration = cfg_shards.calibrated()
    planned, counts = import_dets.plan(
        cfg_shards.from_dets, stages.root, cfg_shards.dets_size, calibration, will_download=True
    )
    jobs = released_jobs(planned, rows, order)
    by_id = {row["video_id"]: i for i, row in enumerate(rows)}
    by_vname = {row["vname"]: row for row in rows if row.get("vname")}
    job_of = {id(task): k for k, (_, task) in enumerate(jobs) if task is not None}
    results = outcomes(cfg, stages, rows, jobs, last_durable)
    tasks: list[Task] = []
    statuses: Counter[str] = Counter()
    with appending(build):
        for task in planned:
            if id(task) in job_of:
                i = jobs[job_of[id(task)]][0]
                outcome = next(results)
                rows[i].update(outcome.crawl)
                vname = task.context["vname"]  # no answer: its task crashed (a crawl error now)
                matched = outcome.matched or import_dets.match(vname, {vname: rows[i]}, stages.root)
                task = Task(task.kind, released_context(task, matched), task.items)
                cut = outcome.results
            else:
                task = unfetched(task, by_vname, stages)
                todo = tuple(item for item in task.items if last_durable is None or item.key > last_durable)
                cut = (
                    import_dets.run(Task(task.kind, task.context, todo), cfg_shards.encoding())
                    if todo
                    else []
                )
            statuses[task.context["status"]] += 1
            tasks.append(task)
            for result in cut:
                build.add(result)
        for outcome in results:  # the listed videos without boxes: fetched and deleted
            rows[by_id[outcome.video_id]].update(outcome.crawl)
    return {**counts, "statuses": dict(sorted(statuses.items())), "tasks": tasks}


def unfetched(task: Task, by_vname: dict[str, dict[str, Any]], stages: Stages) -> Task:
    """A task no download will answer: its planned context, or, for a video planned as downloaded
    that crawl gave up on, ``import_dets.match``'s answer for its row (``not_downloaded``)."""
    if task.context["status"] != "ok":
        return task
    matched = import_dets.match(task.context["vname"], by_vname, stages.root)
    return Task(task.kind, released_context(task, matched), task.items)
