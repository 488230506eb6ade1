"""Sampled frames of many videos, decoded in worker processes while the main process detects.

A ``torch.utils.data.DataLoader`` over an iterable dataset: each worker takes every k-th video,
decodes its frames 0, step, 2*step, ... with ``read_frames`` and sends them one by one, then one
``end`` record per video (with the number of frames sent, and the error if decoding failed). The
loader's prefetch bound keeps memory flat however long the videos are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from common.media.frames import read_frames


@dataclass(frozen=True)
class VideoJob:
    video_id: str
    path: str
    n_frames: int


def sample_indices(n_frames: int, step: int) -> range:
    """Frames 0, step, 2*step, ... below ``n_frames`` (the paper samples every 100th frame)."""
    return range(0, max(int(n_frames), 0), step)


class SampledFrames(IterableDataset):
    """Yields ``{"video_id", "frame", "image"}`` per sampled frame, then ``{"video_id", "end",
    "frames", "expected", "error"}`` per video."""

    def __init__(self, jobs: list[VideoJob], step: int) -> None:
        self.jobs = jobs
        self.step = step

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        jobs = self.jobs if info is None else self.jobs[info.id :: info.num_workers]
        for job in jobs:
            sent, error, wanted = 0, "", sample_indices(job.n_frames, self.step)
            try:
                for index, image in read_frames(job.path, wanted):
                    yield {"video_id": job.video_id, "frame": index, "image": image}
                    sent += 1
            except Exception as e:  # one bad video is recorded and skipped, never the whole run
                error = f"{type(e).__name__}: {e}"
            yield {
                "video_id": job.video_id,
                "end": True,
                "frames": sent,
                "expected": len(wanted),
                "error": error,
            }


def _as_is(item: dict[str, Any]) -> dict[str, Any]:
    return item


def sampled_frames(jobs: list[VideoJob], step: int, workers: int) -> Iterator[dict[str, Any]]:
    """Records of :class:`SampledFrames`, decoded by ``workers`` processes (0 or 1: in this one)."""
    workers = min(workers, len(jobs))
    loader = DataLoader(
        SampledFrames(jobs, step),
        batch_size=None,
        num_workers=workers if workers > 1 else 0,
        collate_fn=_as_is,
        prefetch_factor=4 if workers > 1 else None,
    )
    yield from loader
