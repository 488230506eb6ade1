"""``python pipeline.py demo``: every stage, in order, on the sample footage, CPU-sized.

Settings of each stage come from ``configs/demo.yaml`` (or ``--config``); the demo only wires
one stage's output into the next, and has detect check the §3.1 keypoint rules with the offline
BlazePose model (``--keypoints blazepose``, docs/detect.md). The footage, the model and the Re-ID
benchmarks are looked for in the data folder (``common.data``: ``--data``, ``LUPERSON_DATA``,
``../shared/data``, else the user cache). When it holds no footage or no model, the demo first
runs ``fetch-samples`` (``common.data``). The Re-ID benchmarks are never fetched (they are
research-only): without them, evaluate and finetune are skipped with one line saying how to give
them (``--reid-data``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import stages
from common.atomic import write_text
from common.data import FetchSettings, data_root, fetch_samples
from common.errors import UsageError, require_path
from common.settings import setting
from common.summary import print_summary

DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif")
log = logging.getLogger("demo")


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    data: str | None = setting(
        None, "the data folder (default: LUPERSON_DATA, ../shared/data when present, else ~/.cache/luperson)"
    )
    videos: str | None = setting(None, "folder of local videos to run the chain on (default: <data>/videos)")
    reid_data: str | None = setting(
        None, "folder holding the VIPeR/PRID/GRID benchmarks (default: <data>/reid; never fetched)"
    )
    pose_weights: str | None = setting(
        None,
        "BlazePose landmark model detect checks the keypoint rules with "
        "(default: <data>/models/pose_landmark_full.tflite)",
    )


@dataclasses.dataclass(frozen=True)
class DemoData:
    """Where the demo's inputs are, and where they came from."""

    videos: Path
    reid: Path
    pose_weights: Path
    summary: dict[str, Any]


def demo_data(settings: DemoSettings) -> DemoData:
    """The demo's inputs: the settings' paths, else the data folder's, fetched when missing."""
    folder, origin = data_root(settings.data)
    videos = Path(settings.videos) if settings.videos else folder / "videos"
    pose = (
        Path(settings.pose_weights)
        if settings.pose_weights
        else folder / "models" / "pose_landmark_full.tflite"
    )
    summary: dict[str, Any] = {"folder": str(folder), "from": origin, "fetched": 0}
    missing = not (videos.is_dir() and any(p.suffix.lower() in VIDEO_SUFFIXES for p in videos.iterdir()))
    if (not settings.videos and missing) or (not settings.pose_weights and not pose.is_file()):
        log.info("demo: no sample footage or model in %s: fetching them (fetch-samples)", folder)
        fetched = fetch_samples(FetchSettings(data=str(folder)), folder)
        summary["fetched"] = fetched["fetched"]
    reid = Path(settings.reid_data) if settings.reid_data else folder / "reid"
    return DemoData(videos, reid, pose, summary)


def write_url_list(videos: Path, out: Path) -> Path:
    """List the local videos of ``videos`` (sorted) in a ``--urls`` file for crawl."""
    files = sorted(p.resolve() for p in videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise UsageError(f"videos: no video files in {videos}")
    write_text(out, "".join(f"{p}\n" for p in files))
    return out


def detect_settings(cfg: Any, pose_weights: str) -> Any:
    """The config's detect settings, with the demo's BlazePose model when the config asks for it."""
    chosen = cfg("detect", pose_weights=pose_weights)
    if chosen.keypoints != "blazepose":
        return cfg("detect")
    path = require_path(pose_weights, "pose weights", is_dir=False).resolve()
    return dataclasses.replace(chosen, pose_weights=str(path))


def pretrain_settings(cfg: Any, root: Path, samples: int) -> Any:
    """The config's pretrain settings on the demo's shards; on fewer crops than one batch (the
    fetched footage alone gives a few dozen), batches as large as the crops allow."""
    chosen = cfg("pretrain", shards=str(root / "shards"))
    step = max(1, chosen.bn_groups)  # a batch splits evenly into the Shuffle-BN groups
    batch = samples - samples % step
    if samples < chosen.batch_size and batch >= step:
        log.warning(
            "demo: %d crops, fewer than a batch of %d: pretrain takes batches of %d",
            samples,
            chosen.batch_size,
            batch,
        )
        return dataclasses.replace(chosen, batch_size=batch)
    return chosen


def demo(settings: DemoSettings, root: Path, config: str | None = None) -> dict[str, dict[str, Any]]:
    """Run crawl -> filter -> detect -> build-shards -> stats -> verify -> pretrain -> evaluate -> finetune."""
    inputs = demo_data(settings)
    videos = require_path(inputs.videos, "videos", is_dir=True)
    reid = inputs.reid
    config = config or str(DEMO_CONFIG)
    urls = write_url_list(videos, root / "demo_urls.txt")

    def cfg(command: str, **overrides: Any) -> Any:
        return stages.resolve(command, config, overrides)

    detect_cfg = detect_settings(cfg, str(inputs.pose_weights))  # a missing model stops here

    plan: list[tuple[str, Any]] = [
        ("crawl", lambda: cfg("crawl", urls=str(urls))),
        ("filter", lambda: cfg("filter")),
        ("detect", lambda: detect_cfg),
        ("build-shards", lambda: cfg("build-shards")),
        ("stats", lambda: cfg("stats")),
        ("verify-shards", lambda: cfg("verify-shards")),
        ("pretrain", lambda: pretrain_settings(cfg, root, summaries["build-shards"].get("samples", 0))),
        ("evaluate", lambda: cfg("evaluate", weights=backbone["path"], data_dir=str(reid / "VIPeR"))),
        ("finetune", lambda: cfg("finetune", init=backbone["path"], data_dir=str(reid / "VIPeR"))),
    ]
    backbone = {"path": "random"}
    summaries: dict[str, dict[str, Any]] = {"data": inputs.summary}
    no_reid = not (reid / "VIPeR").is_dir()
    for command, make_settings in plan:
        if no_reid and command in ("evaluate", "finetune"):
            why = f"skipped: no Re-ID benchmark in {reid} (research-only, never fetched; give --reid-data DIR with VIPeR/)"
            log.warning("demo: %s %s", command, why)
            summaries[command] = {"status": why}
            continue
        start = time.perf_counter()
        summary = dict(stages.run_stage(command, make_settings(), root))
        if command == "pretrain" and summary.get("backbone"):
            backbone["path"] = str(summary["backbone"])
        summary["seconds"] = round(time.perf_counter() - start, 1)
        summaries[command] = summary
    print("\nLUPerson demo summary (" + str(root) + ")")
    print_summary(summaries)
    return summaries
