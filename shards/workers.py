"""Worker processes for the shard stage: a clean (forkserver) pool and an ordered, bounded map."""

from __future__ import annotations

import collections
import multiprocessing as mp
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def pool_context(preload: str) -> Any:
    """A forkserver context: workers never inherit this process's threads (pyarrow's pools).

    Preloading ``preload`` also hands the server this process's ``sys.path``, so the workers
    import the project however it was started.
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([preload])
    return ctx


def ordered_map(fn: Callable[[T], R], jobs: list[T], workers: int, preload: str) -> Iterator[R]:
    """``map(fn, jobs)`` in order, on ``workers`` processes, at most ``2 * workers`` jobs in flight."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    with pool_context(preload).Pool(min(workers, len(jobs))) as pool:
        pending: collections.deque = collections.deque()
        remaining = iter(jobs)
        for job in remaining:
            pending.append(pool.apply_async(fn, (job,)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().get()
            job = next(remaining, None)
            if job is not None:
                pending.append(pool.apply_async(fn, (job,)))
            yield result
