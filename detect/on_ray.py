"""Detection on a Ray cluster: a pool of actors that each hold the detector and keypoint model.

Each actor (one GPU each when the cluster has GPUs, else one CPU) builds its models once and
takes up to ``ray_videos_per_call`` videos at a time (fewer when that would leave an actor idle); it decodes their sampled frames (with
``workers`` processes on a GPU actor, one on a CPU actor), batches them across those videos
and writes its ``detections/`` files itself, exactly as ``detect.batch_runner.detect_videos`` does
on one machine. ``root`` must therefore be on storage every node mounts at the same path.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from common.actors import actor_shape, run_actors
from common.ray_cluster import ray_init
from detect.batch_runner import BatchRunner, detect_videos
from detect.models import build_detector, build_pose, rules_for, track_settings
from detect.sampling import VideoJob
from detect.settings import DetectSettings

log = logging.getLogger(__name__)


class VideoDetector:
    """One worker's detector, keypoint model and rules: ``worker(jobs) -> (results, frames)``."""

    def __init__(self, cfg: DetectSettings, root: str, decode_workers: int) -> None:
        self.cfg, self.root, self.decode_workers = cfg, Path(root), decode_workers
        self.detector, self.pose, self.rules = build_detector(cfg), build_pose(cfg), rules_for(cfg)

    def __call__(self, jobs: list[VideoJob]) -> tuple[dict[str, dict[str, Any]], int]:
        """Detect persons in ``jobs``; per-video results (as ``BatchRunner.results``) and frames."""
        tracks = track_settings(self.cfg)
        runner = BatchRunner(self.detector, self.pose, self.rules, self.root, self.cfg.batch_size, tracks)
        frames = detect_videos(runner, jobs, self.cfg.frame_step, self.decode_workers)
        return runner.results, frames


def detect_on_ray(
    cfg: DetectSettings, jobs: list[VideoJob], root: Path
) -> tuple[dict[str, dict[str, Any]], int, dict[str, float]]:
    """Run ``jobs`` on Ray actors (``common.engine.run_actors``): merged per-video results, frames
    done, and the pool's shape (actors, CPUs and GPUs each)."""
    import ray

    workers = max(cfg.workers, 1)
    ray_init(cfg.address, workers)
    resources = ray.cluster_resources()
    has_gpu = resources.get("GPU", 0) >= 1 and cfg.device != "cpu"
    # a GPU actor decodes with `workers` processes of its own (Ray reserves their CPUs); a CPU actor
    # takes one CPU and decodes in one child process, so that a decoder that crashes takes only
    # its video, never the actor and its other videos (detect.batch_runner.detect_videos)
    num_cpus, decode = (workers, cfg.workers) if has_gpu else (1, 1)
    num_gpus, actors = actor_shape(resources, 1.0 if has_gpu else 0.0, num_cpus, cfg.ray_actors)
    if cfg.keypoints == "none":
        log.warning("detect: --keypoints none: the head / upper-body / lower-body rules are skipped")
    # a few calls per actor at least, so that one long video does not leave the others idle
    step = max(1, min(cfg.ray_videos_per_call, math.ceil(len(jobs) / (4 * actors))))
    chunks = [jobs[i : i + step] for i in range(0, len(jobs), step)]
    results: dict[str, dict[str, Any]] = {}
    frames = 0
    for _, (chunk_results, chunk_frames) in run_actors(
        VideoDetector,
        (cfg, str(root), decode),
        chunks,
        workers=workers,
        address=cfg.address,
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        actors=actors,
        desc="detect: video groups",
    ):
        results.update(chunk_results)
        frames += chunk_frames
    shape = {"actors": min(actors, len(chunks)), "cpus_each": num_cpus, "gpus_each": num_gpus}
    return results, frames, shape
