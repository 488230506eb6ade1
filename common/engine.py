"""Run one task function over many items on a local process pool or on a Ray cluster.

The dataset stages (crawl, filter, detect, build-shards) are per-video task functions; this is
the only place that decides where they run. No home-made scheduler: ``concurrent.futures`` on one
machine, Ray tasks past one machine (``--engine ray --address ray://head:10001`` or ``auto``).

Results come back in completion order as ``(index, result)``; stages sort or index them, so what
they write never depends on the engine or on timing.

    for i, result in run_tasks(probe, paths, engine="local", workers=2, desc="probe"):
        rows[i] = result
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Literal, TypeVar

T = TypeVar("T")
R = TypeVar("R")
Engine = Literal["local", "ray"]
log = logging.getLogger(__name__)


def run_tasks(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    engine: Engine = "local",
    workers: int = 2,
    address: str | None = None,
    num_gpus: float = 0.0,
    desc: str = "tasks",
) -> Iterator[tuple[int, R]]:
    """Yield ``(i, fn(items[i]))`` for every item as tasks finish.

    ``fn`` must be a module-level function (it is pickled). ``workers == 1`` with the local
    engine runs in this process, which keeps tracebacks and debuggers simple.
    """
    from tqdm import tqdm

    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    results = _ray(fn, items, workers, address, num_gpus) if engine == "ray" else _local(fn, items, workers)
    with tqdm(total=len(items), desc=desc, unit="task", disable=None) as bar:
        for i, result in results:
            bar.update(1)
            yield i, result


def _local(fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[tuple[int, R]]:
    if workers == 1 or len(items) <= 1:
        for i, item in enumerate(items):
            yield i, fn(item)
        return
    # spawn, not fork: the parent may hold torch/OpenCV threads, which fork can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=ctx) as pool:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        try:
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def ray_init(address: str | None, workers: int) -> None:
    """Connect to ``address`` (a running cluster), or start a local Ray with ``workers`` CPUs."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    log.info("ray: %s", ray.cluster_resources())


def _ray(
    fn: Callable[[T], R], items: Sequence[T], workers: int, address: str | None, num_gpus: float
) -> Iterator[tuple[int, R]]:
    import ray

    ray_init(address, workers)
    remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=2)(fn)
    pending = {remote.remote(item): i for i, item in enumerate(items)}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), ray.get(ref)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
