"""``python pipeline.py demo``: every built stage, in order, on the sample footage, CPU-sized.

Settings of each stage come from ``configs/demo.yaml`` (or ``--config``); the demo only wires
one stage's output into the next, and has detect check the §3.1 keypoint rules with the offline
BlazePose model of ../shared/data (``--keypoints blazepose``, docs/detect.md). A stage that is
not built yet is reported as "not built".
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import stages
from common.atomic import write_text
from common.errors import UsageError, require_path
from common.settings import setting
from common.summary import print_summary

DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif")
log = logging.getLogger("demo")


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    videos: str = setting("../shared/data/videos", "folder of local videos to run the chain on")
    reid_data: str = setting("../shared/data/reid", "folder holding the VIPeR/PRID/GRID benchmarks")
    pose_weights: str = setting(
        "../shared/data/models/pose_landmark_full.tflite",
        "BlazePose landmark model detect checks the keypoint rules with (--keypoints blazepose)",
    )


class NotBuilt(Exception):
    """The stage's package has no entry function yet."""


def _run(command: str, settings: Any, root: Path) -> dict[str, Any]:
    module = stages.COMMANDS[command].function.partition(":")[0]
    try:
        stages.load_attr(stages.COMMANDS[command].function)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise NotBuilt(command) from None
        raise
    return stages.run_stage(command, settings, root)


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


def demo(settings: DemoSettings, root: Path, config: str | None = None) -> dict[str, dict[str, Any]]:
    """Run crawl -> filter -> detect -> build-shards -> stats -> verify -> pretrain -> evaluate -> finetune."""
    videos = require_path(settings.videos, "videos", is_dir=True)
    reid = Path(settings.reid_data)
    config = config or str(DEMO_CONFIG)
    urls = write_url_list(videos, root / "demo_urls.txt")

    def cfg(command: str, **overrides: Any) -> Any:
        return stages.resolve(command, config, overrides)

    detect_cfg = detect_settings(cfg, settings.pose_weights)  # a missing model stops here

    plan: list[tuple[str, Any]] = [
        ("crawl", lambda: cfg("crawl", urls=str(urls))),
        ("filter", lambda: cfg("filter")),
        ("detect", lambda: detect_cfg),
        ("build-shards", lambda: cfg("build-shards")),
        ("stats", lambda: cfg("stats")),
        ("verify-shards", lambda: cfg("verify-shards")),
        ("pretrain", lambda: cfg("pretrain", shards=str(root / "shards"))),
        ("evaluate", lambda: cfg("evaluate", weights=backbone["path"], data_dir=str(reid / "VIPeR"))),
        ("finetune", lambda: cfg("finetune", init=backbone["path"], data_dir=str(reid / "VIPeR"))),
    ]
    backbone = {"path": "random"}
    summaries: dict[str, dict[str, Any]] = {}
    for command, make_settings in plan:
        start = time.perf_counter()
        try:
            summary = _run(command, make_settings(), root)
        except NotBuilt:
            summaries[command] = {"status": "not built"}
            continue
        summary = dict(summary)
        if command == "pretrain" and summary.get("backbone"):
            backbone["path"] = str(summary["backbone"])
        summary["seconds"] = round(time.perf_counter() - start, 1)
        summaries[command] = summary
    print("\nLUPerson demo summary (" + str(root) + ")")
    print_summary(summaries)
    return summaries
