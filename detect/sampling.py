"""Sampled frames of many videos, decoded in worker processes while the main process detects.

A ``torch.utils.data.DataLoader`` over an iterable dataset: each worker takes every k-th video,
decodes its frames 0, step, 2*step, ... with ``read_frames`` and sends them one by one, then one
``end`` record per video (with the number of frames sent, and the error if decoding failed). The
loader's prefetch bound keeps memory flat however long the videos are.

A worker process can also die (a decoder that crashes, the OOM killer). The DataLoader reports
that in the main process without saying which video did it, so each worker marks in shared
memory the video it is decoding (``Decoders.in_flight``): ``detect.batch_runner`` decodes those
again one at a time, and only the one that kills its worker alone ends as that video's error.
"""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from common.media.frames import read_frames

# DataLoader's words for a worker process that died (torch/utils/data/_utils/signal_handling.py
# and dataloader.py): "DataLoader worker (pid 12) is killed by signal: Aborted.", "... (pid(s)
# 12, 13) exited unexpectedly"; the pids are left out of what is recorded.
WORKER_DIED = re.compile(r"^DataLoader worker \(pid(?:\(s\))? [\d, ]+\) (?:is )?(.*?)\.?\s*$", re.DOTALL)


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
    "frames", "expected", "error"}`` per video.

    Subclasses decode other frames by overriding ``wanted``, ``sampled`` and ``expected``.
    """

    def __init__(self, jobs: list[VideoJob], step: int) -> None:
        self.jobs = jobs
        self.step = step
        self.decoding: Any = None  # set by Decoders: per worker, 1 + the index of its current job

    def wanted(self, job: VideoJob) -> Sequence[int]:
        """The frames decoded for ``job``."""
        return sample_indices(job.n_frames, self.step)

    def sampled(self, index: int) -> bool:
        """Whether decoded frame ``index`` counts in the ``end`` record's ``frames``."""
        return True

    def expected(self, job: VideoJob) -> int:
        """The ``end`` record's ``expected``: the sampled frames of ``job``."""
        return len(sample_indices(job.n_frames, self.step))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        mine = range(len(self.jobs)) if info is None else range(info.id, len(self.jobs), info.num_workers)
        for i in mine:
            job = self.jobs[i]
            if info is not None and self.decoding is not None:
                self.decoding[info.id] = i + 1  # before the first byte is read: a crash names this job
            sent, error = 0, ""
            try:
                for index, image in read_frames(job.path, self.wanted(job)):
                    yield {"video_id": job.video_id, "frame": index, "image": image}
                    sent += self.sampled(index)
            except Exception as e:  # one bad video is recorded and skipped, never the whole run
                error = f"{type(e).__name__}: {e}"
            yield {
                "video_id": job.video_id,
                "end": True,
                "frames": sent,
                "expected": self.expected(job),
                "error": error,
            }
        if info is not None and self.decoding is not None:
            self.decoding[info.id] = 0


def _as_is(item: dict[str, Any]) -> dict[str, Any]:
    return item


class Decoders:
    """The records of ``dataset`` decoded by ``workers`` processes (0: in this one, where a crash
    ends the run), and the jobs those processes were decoding."""

    def __init__(self, dataset: SampledFrames, workers: int) -> None:
        self.dataset = dataset
        self.workers = min(workers, len(dataset.jobs))
        dataset.decoding = multiprocessing.RawArray("q", max(self.workers, 1))  # shared with the workers
        self.loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.workers,
            collate_fn=_as_is,
            prefetch_factor=4 if self.workers else None,
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.loader)

    def in_flight(self) -> list[VideoJob]:
        """The jobs the worker processes were decoding (all of them stop when one dies)."""
        return [self.dataset.jobs[i - 1] for i in self.dataset.decoding if i]


def worker_death(error: BaseException) -> str | None:
    """What happened to the process, when ``error`` is the DataLoader's report that a decoding
    worker died ("killed by signal: Aborted"); None for any other error."""
    if not isinstance(error, RuntimeError):
        return None
    found = WORKER_DIED.match(str(error))
    return found.group(1) if found else None


def sampled_frames(jobs: list[VideoJob], step: int, workers: int) -> Decoders:
    """:class:`SampledFrames` of ``jobs``, decoded by ``workers`` processes (0: in this one)."""
    return Decoders(SampledFrames(jobs, step), workers)
