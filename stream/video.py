"""One video of the streaming build, in one worker task: crawl's download and probe, filter's probe
and rules, detect's boxes, build-shards' cut, then the raw video deleted.

Each step is the stage's own per-video code and leaves the stage's own per-video file
(``videos/``, ``video_info/``, ``filter_probes/``, ``detections/``); the crops come back to the
one writer (``stream.build``), which appends them to the shards in key order. Last, the task
writes the video's record, ``stream_records/<bucket>/<id>.json``: what each step found, so that a
rerun knows the video without downloading it again. The raw video is deleted before the record is
written, so a record always means "this video needs no more disk".
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from collect.crawl import process
from collect.failures import OK
from collect.settings import CrawlSettings
from common.atomic import write_json
from common.fanout import fanned_path
from common.manifests import boxes
from common.manifests.videos import PROBED
from detect.run import detect_video
from detect.sampling import VideoJob
from detect.settings import DetectSettings
from filter.probe import Probe, cached_probe
from filter.settings import FilterSettings
from filter.videos import decide, probe_cache
from shards.release import import_dets
from shards.settings import ShardSettings
from shards.sources import detections
from shards.write.items import Result, Task

RECORDS = "stream_records"  # one record per video: <bucket>/<id>.json (common.fanout)
RECORD_VERSION = 1


@dataclass(frozen=True)
class Stages:
    """The workspace (absolute) and the settings of every stage a video goes through."""

    root: Path
    crawl: CrawlSettings
    filter: FilterSettings
    detect: DetectSettings
    shards: ShardSettings
    keep_videos: bool = False


@dataclass
class Outcome:
    """What one video's steps found; everything but ``results`` is its record."""

    video_id: str
    crawl: dict[str, Any]  # its videos.parquet fields (collect.crawl.process)
    probe: dict[str, Any] | None = None  # filter's probe, when downloaded
    filter: tuple[str, str] | None = None  # filter's (status, reason) before the near-duplicate walk
    detect: dict[str, Any] | None = None  # detect's result, when kept
    last_key: str | None = None  # the key of its last planned crop; None: no crop planned
    matched: tuple[str, str, str | None] | None = None  # --from-dets: import_dets.match's answer
    results: list[Result] = field(default_factory=list)  # its crops after the task's ``after`` key

    def record(self) -> dict[str, Any]:
        fields = asdict(self)
        del fields["results"]
        return {"version": RECORD_VERSION, **fields}


def record_path(root: Path, video_id: str) -> Path:
    return fanned_path(root / RECORDS, video_id, f"{video_id}.json")


def read_record(root: Path, video_id: str) -> Outcome | None:
    """The record a task wrote for ``video_id``; None when there is none (or of another version)."""
    import json

    path = record_path(root, video_id)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a damaged record: the video is done again
    if not isinstance(data, dict) or data.pop("version", None) != RECORD_VERSION:
        return None
    for name in ("filter", "matched"):
        if data.get(name) is not None:
            data[name] = tuple(data[name])
    return Outcome(**data)


def raw_files(root: Path, video_id: str) -> list[Path]:
    """The video's files under ``videos/``: the final file and any partial download."""
    return sorted(fanned_path(root / "videos", video_id).parent.glob(f"{video_id}.*"))


def run_video(task: tuple[Stages, dict[str, Any], Task | None, str | None]) -> Outcome:
    """``(stages, videos.parquet row, released, after)`` -> the video's outcome, its crops those
    whose key sorts after ``after`` (the last key already in a shard; None: all). ``released``:
    with ``--from-dets``, the video's task of ``import_dets.plan`` (None: it has no boxes)."""
    stages, row, released, after = task
    update, _ = process(stages.crawl, row, stages.root, threading.Event())
    outcome = Outcome(row["video_id"], update)
    try:
        if stages.shards.from_dets:
            if released is not None:
                cut_released(stages, {**row, **update}, released, after, outcome)
        elif update["status"] == OK and update.get("path"):
            examine(stages, {**row, **update}, after, outcome)
    finally:
        if not stages.keep_videos:
            for path in raw_files(stages.root, row["video_id"]):
                path.unlink(missing_ok=True)
    write_json(record_path(stages.root, outcome.video_id), outcome.record())
    return outcome


def video_crashed(task: tuple[Stages, dict[str, Any], Task | None, str | None], why: str) -> Outcome:
    """The outcome of a video whose task's process died, and died again alone (a decoder crash,
    the OOM killer): a crawl ``error``, which the next run tries again; no record. Its raw files
    and the detections file its task may have written are deleted: it is not kept."""
    stages, row, _, _ = task
    if not stages.keep_videos:
        for path in raw_files(stages.root, row["video_id"]):
            path.unlink(missing_ok=True)
    boxes.path_of(stages.root, row["video_id"]).unlink(missing_ok=True)
    fields = dict.fromkeys(PROBED) | {"path": None}
    return Outcome(row["video_id"], {**fields, "status": "error", "reason": f"processing it crashed: {why}"})


def examine(stages: Stages, row: dict[str, Any], after: str | None, outcome: Outcome) -> None:
    """filter's probe and rules, then (kept) detect and cut; fills ``outcome``."""
    root, vid = stages.root, row["video_id"]
    path = root / row["path"]
    cfg = stages.filter
    probe: Probe = cached_probe(path, cfg.static_frames, cfg.static_width, probe_cache(root, vid))
    outcome.probe = asdict(probe)
    outcome.filter = decide(probe, row.get("title"), cfg)
    if outcome.filter[0] != "ok":
        return
    outcome.detect = detect_video(stages.detect, root, VideoJob(vid, str(path), probe.n_frames))
    if outcome.detect["status"] != "ok":
        return
    provenance = {"url": row.get("url"), "license": row.get("license")}
    video = SimpleNamespace(video_id=vid, path=row["path"], city=row.get("city"), **provenance)
    task = detections.video_task(root, video)
    if task is None or not task.items:
        return
    outcome.last_key = task.items[-1].key
    todo = tuple(item for item in task.items if after is None or item.key > after)
    if todo:
        outcome.results = detections.run(Task(task.kind, task.context, todo), stages.shards.encoding())


def released_context(task: Task, matched: tuple[str, str, str | None]) -> dict[str, Any]:
    """The context ``import_dets.plan`` gives a video once its download is known (``matched``:
    ``import_dets.match``'s status, reason and path): the calibration only for a matched video."""
    status, reason, path = matched
    context = {**task.context, "status": status, "reason": reason, "path": path}
    if status != "ok":
        context.pop("calibration", None)
    return context


def cut_released(
    stages: Stages, row: dict[str, Any], task: Task, after: str | None, outcome: Outcome
) -> None:
    """``--from-dets``: match the downloaded video as build-shards does, then cut the released boxes
    (calibrated first, when asked) with ``import_dets.run``; fills ``outcome``."""
    vname = task.context["vname"]
    outcome.matched = import_dets.match(vname, {vname: row}, stages.root)
    outcome.last_key = task.items[-1].key if task.items else None
    todo = tuple(item for item in task.items if after is None or item.key > after)
    if todo:
        context = released_context(task, outcome.matched)
        outcome.results = import_dets.run(Task(task.kind, context, todo), stages.shards.encoding())
