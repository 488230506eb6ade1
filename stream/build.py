"""``python pipeline.py stream``: build the dataset one video at a time on bounded disk.

    python pipeline.py crawl --cities configs/top100.txt --search-only   # the candidates only
    python pipeline.py stream --max-videos-on-disk 8                     # download, filter, detect, cut, delete

Every video of ``videos.parquet`` goes through ``stream.video.run_video`` (crawl's download, filter's
probe and rules, detect, build-shards' cut, then the raw file deleted) in plan order: the order of
the videos' crops in the shards (``common.manifests.samples.video_order``). At most
``max_videos_on_disk`` videos are in flight, so at most that many raw videos (a partial download
counts) are on disk at any moment. Tasks finish in any order; this process takes their outcomes in
plan order, decides the near-duplicates (``filter.near_dup.NearDuplicates``: a video is a near
duplicate of a kept video earlier in plan order, as the staged filter decides) and appends the
crops to the shards with build-shards' own writer. At the end it writes what the staged commands
write from the same per-video files (``videos.parquet``, ``video_filter.parquet``,
``detections.parquet``, ``shards/index.parquet``, ``samples.parquet``, ``plan.json``,
``stats.json``): the shards are byte-identical to a staged run over the same videos.

Resumable (kill -9 anywhere, then rerun): a video with a record (``stream.video``) whose crops are
all in complete shards is never downloaded again; one whose crops were not yet in a shard is
downloaded again and cut from where the shards end. ``shards/stream.json`` records the plan; a
root holding shards of another plan is refused, as build-shards refuses one.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from collect.crawl import SAVE_EVERY_S, SAVE_SHARE
from collect.failures import OK
from common.atomic import write_json
from common.errors import UsageError
from common.manifests import boxes
from common.manifests import detections as detections_file
from common.manifests import videos as manifest
from common.manifests.shard_index import drop_stale_verdict
from detect.inputs import kept_videos
from detect.run import summary_table
from filter.near_dup import NearDuplicates
from filter.probe import Probe
from filter.videos import filter_rows, load_videos, near_duplicate_reason, signature, write_rows
from shards.build import write_reports
from shards.release import takedown
from shards.sources import detections
from shards.write import plan_guard, progress
from shards.write.items import Task
from shards.write.tables import write_tables
from shards.write.task_file import plan_folder
from shards.write.writer import Build, writing
from stream.dets import stream_released
from stream.plan import durable, plan_order, start, stream_plan
from stream.runner import appending, outcomes
from stream.settings import StreamSettings
from stream.video import Outcome, Stages

log = logging.getLogger(__name__)


class Walk:
    """The outcomes in plan order, decided as the staged filter decides, the crops to the shards."""

    def __init__(self, stages: Stages, rows: list[dict[str, Any]], build: Build) -> None:
        cfg = stages.filter
        self.stages, self.rows, self.build = stages, rows, build
        self.near = (
            NearDuplicates(cfg.static_frames, cfg.near_duplicate_distance) if cfg.near_duplicate else None
        )
        self.checked: list[str] = []  # video ids in the near-duplicate walk, in order
        self.probes: dict[str, Probe] = {}
        self.results: dict[str, dict[str, Any]] = {}  # detect's result of each kept video
        self.statuses: Counter[str] = Counter()
        self.saver = manifest.Saver(stages.root, rows, SAVE_EVERY_S, SAVE_SHARE)  # as crawl saves it

    def take(self, i: int, outcome: Outcome) -> None:
        self.rows[i].update(outcome.crawl)
        status = self.rows[i]["status"] if self.rows[i]["status"] != OK else "downloaded"
        if outcome.probe is not None and outcome.filter is not None:
            self.probes[outcome.video_id] = probe = Probe(**outcome.probe)
            status = outcome.filter[0]
            if status == "ok" and self.near_duplicate(outcome.video_id, probe):
                status = "near_duplicate"
        if status == "ok" and outcome.detect is not None:
            self.results[outcome.video_id] = outcome.detect
            for result in outcome.results:
                self.build.add(result)
        self.statuses[status] += 1
        self.saver.maybe()

    def near_duplicate(self, video_id: str, probe: Probe) -> bool:
        """Whether a kept video is a near duplicate of a kept one earlier in plan order; its
        detections file (made before it was known) is removed, as detect never makes one."""
        sig = None if self.near is None else signature(probe, self.stages.filter)
        if sig is None:
            return False
        self.checked.append(video_id)
        match = self.near.check(sig)
        if match is None:
            return False
        log.info(
            "%s: near_duplicate, %s",
            video_id,
            near_duplicate_reason({"video_id": self.checked[match[0]]}, match),
        )
        boxes.path_of(self.stages.root, video_id).unlink(missing_ok=True)
        return True


def stream(cfg: StreamSettings, root: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Process every video of ``videos.parquet``; ``settings``: crawl's, filter's, detect's and
    build-shards' (``settings/<stage>.yaml``, or ``--config``'s sections)."""
    root = Path(root).resolve()  # tasks carry absolute paths: Ray workers run elsewhere
    rows = manifest.load(root)
    if not rows:
        raise UsageError(
            f"{root / manifest.MANIFEST} lists no videos: run crawl --search-only (with --cities, --urls "
            "or --from-vnames) first"
        )
    shards = settings["build-shards"]
    if shards.from_images or shards.from_lmdb:
        raise UsageError("stream cuts videos: --from-images and --from-lmdb are build-shards' own")
    # the raw videos are deleted once cut: a video whose crops were lost is fetched again, which
    # yt-dlp's download archive would refuse
    crawl = dataclasses.replace(settings["crawl"], download_archive=False, search_only=False)
    blur = cfg.blur_faces or shards.blur_faces
    shards = dataclasses.replace(shards, from_dets=cfg.from_dets, dets_size=cfg.dets_size, blur_faces=blur)
    stages = Stages(root, crawl, settings["filter"], settings["detect"], shards, cfg.keep_videos)
    order = plan_order(rows)
    out = root / "shards"
    started = time.perf_counter()
    takedown.finish_pending(root)  # one cut short: its crops must be out of the shards this keeps
    with writing(out):
        start(out, stream_plan(stages, rows, order))
        index_rows, last_durable = durable(out)
    drop_stale_verdict(out, rewriting=True)
    build = Build(out, len(index_rows), shards.max_samples, shards.max_bytes)
    try:
        if cfg.from_dets:
            summary = stream_released(cfg, stages, rows, order, build, last_durable)
        else:
            summary = stream_own(cfg, stages, rows, order, build, last_durable)
    finally:
        manifest.save(root, rows)  # Ctrl-C too: what finished is on disk
    summary |= finish_shards(stages, summary.pop("tasks"), index_rows + build.rows, build.records)
    return {**summary, "videos": len(order), "seconds": round(time.perf_counter() - started, 1)}


def stream_own(
    cfg: StreamSettings,
    stages: Stages,
    rows: list[dict[str, Any]],
    order: list[int],
    build: Build,
    last_durable: str | None,
) -> dict[str, Any]:
    """Own detections: every video filtered and detected, its valid boxes cut; then filter's and
    detect's tables. Returns the summary, with build-shards' plan of the result as ``tasks``."""
    walk = Walk(stages, rows, build)
    jobs: list[tuple[int, Task | None]] = [(i, None) for i in order]
    with appending(build):
        for (i, _), outcome in zip(jobs, outcomes(cfg, stages, rows, jobs, last_durable), strict=True):
            walk.take(i, outcome)
    manifest.save(stages.root, rows)
    filtered = finish_tables(stages, walk)
    tasks, counts = detections.plan(stages.root)
    return {
        "filter": filtered,
        "kept_videos": counts["kept_videos"],
        "statuses": dict(sorted(walk.statuses.items())),
        "tasks": tasks,
    }


def finish_tables(stages: Stages, walk: Walk) -> dict[str, Any]:
    """Write ``video_filter.parquet`` and ``detections.parquet`` as filter and detect write them,
    from the same probes and per-video results; filter's counts.

    filter's rows come from ``filter.videos.filter_rows`` (the staged filter's code, its batch
    near-duplicate walk): they must keep exactly the videos this build kept, or it stops.
    """
    videos = load_videos(stages.root)
    rows = filter_rows(videos, walk.probes, stages.filter)
    kept = {row["video_id"] for row in rows if row["keep"]}
    if kept != set(walk.results):
        raise RuntimeError(f"stream kept {len(walk.results)} videos, filter's rows keep {len(kept)}")
    filtered = write_rows(stages.root, rows)
    table, _ = summary_table(kept_videos(stages.root), walk.results)
    detections_file.write(stages.root, table)
    return filtered


def finish_shards(
    stages: Stages, tasks: list[Task], index_rows: list[dict[str, Any]], trailing: list[dict[str, Any]]
) -> dict[str, Any]:
    """Write what build-shards writes beside the shards: ``plan.json`` of ``tasks`` (build-shards'
    plan of the same build), ``index.parquet``, ``samples.parquet``, ``tracklets.parquet``,
    ``stats.json`` and, with ``--from-dets``, ``dets_report.json``. Every complete part must hold
    the plan's items in order (``progress.complete_parts``), or the build stops."""
    root, out, cfg = stages.root, stages.root / "shards", stages.shards
    source = "dets" if cfg.from_dets else "detections"
    with plan_folder(root) as scratch, writing(out):
        write_json(out / plan_guard.PLAN_NAME, plan_guard.plan_record(cfg, root, source, tasks))
        done = progress.complete_parts(out, tasks)
        if len(done) != len(index_rows):
            raise RuntimeError(f"{len(index_rows)} shards written, {len(done)} hold the plan's items")
        index, statuses, n_tracklets = write_tables(out, tasks, index_rows, trailing, scratch)
    regenerate = write_reports(root, cfg, tasks)
    summary = {
        "samples": statuses.get("ok", 0),
        "failed": {k: statuses[k] for k in sorted(statuses) if k != "ok"},
        "shards": len(index),
        "bytes": int(index["bytes"].sum()),
        **({"tracklets": n_tracklets} if n_tracklets else {}),
    }
    return summary if regenerate is None else {**summary, "regenerate": regenerate}
