"""Run one task function over many items on a local process or thread pool, or on a Ray cluster.

The dataset stages (crawl, filter, detect, build-shards) are per-video task functions; this is
the only place that decides where they run. No home-made scheduler: ``concurrent.futures`` on one
machine (processes, or threads for I/O-bound work such as downloads), Ray tasks past one machine
(``--engine ray --address ray://head:10001`` or ``auto``).

``run_tasks`` hands results back in completion order as ``(index, result)``; stages sort or index
them, so what they write never depends on the engine or on timing.

    for i, result in run_tasks(probe, paths, engine="local", workers=2, desc="probe"):
        rows[i] = result

``ordered_map`` hands back the results themselves in the order of the items, a bounded number in
flight, for a stage that appends them as they come (the shard writer): a local pool whose workers
can start from a clean forkserver (no inherited pyarrow threads), or Ray tasks a window at a time.

Work with a costly set-up (a detector and a pose model on a GPU) runs on long-lived Ray actors
instead, each building its object once: ``run_actors(factory, args, items, ...)``.
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from typing import Literal, TypeVar

from common.actors import actor_shape, run_actors  # noqa: F401  (one import place for stages)
from common.errors import UsageError
from common.ray_cluster import project_packages, ray_init, user_errors_unwrapped  # noqa: F401

T = TypeVar("T")
R = TypeVar("R")
Engine = Literal["local", "threads", "ray"]
ENGINES = ("local", "threads", "ray")
# ordered_map on Ray: tasks submitted at once per CPU of the cluster. Results wait in the driver
# only until the ones before them arrive, so memory stays bounded; each window ends with a barrier.
RAY_WINDOW_PER_CPU = 8
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
    stop: threading.Event | None = None,
    progress: bool = True,
) -> Iterator[tuple[int, R]]:
    """Yield ``(i, fn(items[i]))`` for every item as tasks finish.

    ``engine``: ``"local"`` processes (``fn`` must be a module-level function: it is pickled;
    ``workers == 1`` runs in this process, which keeps tracebacks and debuggers simple),
    ``"threads"`` of this process for I/O-bound work (any callable), or ``"ray"`` tasks.

    Threads cannot be killed: when the run ends early (an error, Ctrl-C, the iterator closed),
    tasks not started are cancelled, ``stop`` is set for the running ones to watch, and the
    run waits for them. ``progress=False``: no bar (the caller shows its own).
    """
    from tqdm import tqdm

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if engine == "ray":
        results = _ray(fn, items, workers, address, num_gpus)
    elif engine == "threads":
        results = _threads(fn, items, workers, stop or threading.Event(), desc)
    else:
        results = _local(fn, items, workers)
    bar = tqdm(total=len(items), desc=desc, unit="task", disable=None if progress else True)
    with closing(results), bar:  # closing: an early end stops the running tasks now
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
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    raise _worker_died(fn, items, futures) from None
                yield futures[fut], result
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _threads(
    fn: Callable[[T], R], items: Sequence[T], workers: int, stop: threading.Event, name: str
) -> Iterator[tuple[int, R]]:
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix=name)
    futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
    try:
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
    except BaseException:
        stop.set()  # the running tasks end at their next check of `stop`
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


def _worker_died(fn: Callable, items: Sequence, futures: dict) -> Exception:
    """One line naming the first unfinished item of a pool whose worker process vanished
    (SIGKILL, the OOM killer): ``concurrent.futures`` fails every unfinished task at once."""
    unfinished = sorted(i for fut, i in futures.items() if not _succeeded(fut))
    first = repr(items[unfinished[0]]) if unfinished else "?"
    first = first if len(first) <= 200 else first[:197] + "..."
    name = getattr(fn, "__name__", "task")
    return UsageError(
        f"a worker process died (killed, e.g. out of memory) with {len(unfinished)} {name} task(s) "
        f"unfinished, the first {first}: rerun the same command to resume (fewer --workers need less memory)"
    )


def _succeeded(fut: Future) -> bool:
    return fut.done() and not fut.cancelled() and fut.exception() is None


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
                i = pending.pop(ref)  # finished: never cancel it below (Ray 2.60 aborts the driver)
                with user_errors_unwrapped():
                    result = ray.get(ref)
                yield i, result
    except BaseException:
        for ref in pending:
            ray.cancel(ref)  # not force=True: killing workers mid-task races Ray's bookkeeping
        raise


def forkserver_context(preload: Sequence[str] = ()) -> multiprocessing.context.BaseContext:
    """A forkserver context: workers never inherit this process's threads (pyarrow's pools).

    Preloading modules also hands the server this process's ``sys.path``, so the workers import
    the project however it was started.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    return ctx


def worker_died(label: str) -> UsageError:
    """The one line for a pool whose worker process vanished (SIGKILL, the OOM killer)."""
    return UsageError(
        f"a worker process died (killed, e.g. out of memory) with {label} unfinished: "
        "rerun the same command to resume (fewer --workers need less memory)"
    )


def ordered_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    engine: Literal["local", "ray"] = "local",
    workers: int = 2,
    address: str | None = None,
    context: Literal["spawn", "forkserver"] = "spawn",
    preload: Sequence[str] = (),
    label: Callable[[T], str] = str,
) -> Iterator[R]:
    """``map(fn, items)`` in the order of ``items``, on ``engine``, a bounded number in flight.

    ``"local"``: ``workers`` processes of ``context`` (``"forkserver"`` with ``preload``: see
    ``forkserver_context``), at most ``2 * workers`` items in flight; ``workers == 1`` runs in
    this process. A worker that dies ends the map within moments with ``UsageError`` naming
    ``label(item)`` of the first unfinished item. ``"ray"``: Ray tasks (``run_tasks``), a window
    of ``RAY_WINDOW_PER_CPU`` per cluster CPU at a time (Ray retries a task whose worker died).
    """
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if engine == "ray":
        return _ray_ordered(fn, items, workers, address)
    if context == "forkserver":
        ctx = forkserver_context(preload)
    elif context == "spawn":
        ctx = multiprocessing.get_context("spawn")
    else:
        raise ValueError(f"context must be 'spawn' or 'forkserver', got {context!r}")
    return _local_ordered(fn, items, workers, ctx, label)


def _local_ordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    ctx: multiprocessing.context.BaseContext,
    label: Callable[[T], str],
) -> Iterator[R]:
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    pool = ProcessPoolExecutor(min(workers, len(items)), mp_context=ctx)
    pending: collections.deque[tuple[T, Future[R]]] = collections.deque()
    remaining = iter(items)
    try:
        for item in itertools.islice(remaining, 2 * workers):
            pending.append((item, pool.submit(fn, item)))
        while pending:
            item, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                raise worker_died(label(item)) from None
            for following in itertools.islice(remaining, 1):
                pending.append((following, pool.submit(fn, following)))
            yield result
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def _stop_pool(pool: Executor) -> None:
    """Cancel what has not started and end the workers now (what ``Pool.__exit__`` did)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def _ray_ordered(fn: Callable[[T], R], items: Sequence[T], workers: int, address: str | None) -> Iterator[R]:
    if not items:
        return
    import ray

    ray_init(address, workers)
    cpus = max(1, int(ray.cluster_resources().get("CPU", workers)))
    window = RAY_WINDOW_PER_CPU * cpus
    for start in range(0, len(items), window):
        part = items[start : start + window]
        waiting: dict[int, R] = {}
        following = 0  # the next item of the window to hand back
        desc = f"ray tasks {start + 1}-{start + len(part)} of {len(items)}"
        for i, result in run_tasks(fn, part, engine="ray", workers=workers, address=address, desc=desc):
            waiting[i] = result
            while following in waiting:
                yield waiting.pop(following)
                following += 1
