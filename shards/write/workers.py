"""Where the shard stage's tasks run: a clean (forkserver) local pool, or Ray tasks; in order either way.

The writer appends results in task order (that is what makes the shards deterministic), so both
engines hand results back in the order of the jobs, with a bounded number in flight.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing as mp
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal, TypeVar

from common.engine import ray_init, run_tasks
from common.errors import UsageError

T = TypeVar("T")
R = TypeVar("R")
# Ray: tasks submitted at once per CPU of the cluster. Results wait in the driver only until the
# ones before them arrive, so memory stays bounded; each window ends with a short barrier.
RAY_WINDOW_PER_CPU = 8


def pool_context(preload: str) -> Any:
    """A forkserver context: workers never inherit this process's threads (pyarrow's pools).

    Preloading ``preload`` also hands the server this process's ``sys.path``, so the workers
    import the project however it was started.
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([preload])
    return ctx


def worker_died(label: str) -> UsageError:
    """The one line for a pool whose worker process vanished (SIGKILL, the OOM killer)."""
    return UsageError(
        f"a worker process died (killed, e.g. out of memory) with {label} unfinished: "
        "rerun the same command to resume (fewer --workers need less memory)"
    )


def ordered_map(
    fn: Callable[[T], R],
    jobs: list[T],
    workers: int,
    preload: str,
    label: Callable[[T], str] = str,
) -> Iterator[R]:
    """``map(fn, jobs)`` in order, on ``workers`` processes, at most ``2 * workers`` jobs in flight.

    A worker that dies ends the map within moments with ``UsageError`` naming ``label(job)`` of
    the first unfinished job (``concurrent.futures`` notices the dead process; ``multiprocessing.Pool``
    would wait for its result forever).
    """
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=pool_context(preload))
    pending: collections.deque[tuple[T, Future[R]]] = collections.deque()
    remaining = iter(jobs)
    try:
        for job in itertools.islice(remaining, 2 * workers):
            pending.append((job, pool.submit(fn, job)))
        while pending:
            job, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                raise worker_died(label(job)) from None
            following = next(remaining, None)
            if following is not None:
                pending.append((following, pool.submit(fn, following)))
            yield result
    except BaseException:
        stop(pool)
        raise
    pool.shutdown(wait=True)


def stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (what ``Pool.__exit__`` did)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def ray_ordered_map(fn: Callable[[T], R], jobs: list[T], workers: int, address: str | None) -> Iterator[R]:
    """``map(fn, jobs)`` in order as Ray tasks (``common.engine.run_tasks``), a window at a time.

    ``fn`` is a module-level function of one argument. Without ``address`` a local Ray with
    ``workers`` CPUs starts (unless this process already runs one).
    """
    if not jobs:
        return
    import ray

    ray_init(address, workers)
    cpus = max(1, int(ray.cluster_resources().get("CPU", workers)))
    window = RAY_WINDOW_PER_CPU * cpus
    for start in range(0, len(jobs), window):
        part = jobs[start : start + window]
        waiting: dict[int, R] = {}
        following = 0  # the next job of the window to hand back
        desc = f"ray tasks {start + 1}-{start + len(part)} of {len(jobs)}"
        for i, result in run_tasks(fn, part, engine="ray", workers=workers, address=address, desc=desc):
            waiting[i] = result
            while following in waiting:
                yield waiting.pop(following)
                following += 1


def engine_map(
    fn: Callable[[T], R],
    jobs: list[T],
    workers: int,
    preload: str,
    engine: Literal["local", "ray"] = "local",
    address: str | None = None,
    label: Callable[[T], str] = str,
) -> Iterator[R]:
    """``map(fn, jobs)`` in order on ``engine``: the local pool (``ordered_map``) or Ray tasks
    (which retry a task whose worker died)."""
    if engine == "ray":
        return ray_ordered_map(fn, jobs, workers, address)
    return ordered_map(fn, jobs, workers, preload, label)
