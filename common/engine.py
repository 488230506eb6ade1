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
can start from a clean forkserver (no inherited pyarrow threads), or Ray tasks in a sliding window.

Work with a costly set-up (a detector and a pose model on a GPU) runs on long-lived Ray actors
instead, each building its object once: ``common.actors.run_actors(factory, args, items, ...)``.
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from typing import Any, Literal, TypeVar

from common.local_pool import DIED_ALONE, completion_order, item_order
from common.ray_cluster import ray_init, user_errors_unwrapped

T = TypeVar("T")
R = TypeVar("R")
Engine = Literal["local", "threads", "ray"]
ENGINES = ("local", "threads", "ray")
# Ray tasks submitted and not yet handed back, per CPU of the cluster: enough to keep every CPU
# busy, few enough that the driver's bookkeeping stays a constant cost per task (ray.wait scans
# every ref it is given: waiting on all of 46k tasks at once made run_tasks quadratic) and that
# ordered_map's results waiting for an earlier one stay bounded in memory.
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
    isolate: Callable[[T, str], R] | None = None,
) -> Iterator[tuple[int, R]]:
    """Yield ``(i, fn(items[i]))`` for every item as tasks finish.

    ``engine``: ``"local"`` processes (``fn`` must be a module-level function: it is pickled;
    ``workers == 1`` runs in this process, which keeps tracebacks and debuggers simple),
    ``"threads"`` of this process for I/O-bound work (any callable), or ``"ray"`` tasks.

    When the run ends early (an error, Ctrl-C, SIGTERM, the iterator closed), tasks not started
    are cancelled and local worker processes end at once; threads cannot be killed: ``stop`` is
    set for the running ones to watch, and the run waits for them. ``progress=False``: no bar
    (the caller shows its own).

    A worker process that dies (a segfault, the OOM killer) ends the run with one line naming the
    unfinished tasks; with ``isolate``, only its own task ends, as ``isolate(item, why)`` (on the
    local pool: run again alone first; on Ray: after Ray's retries), and the others finish.
    """
    from tqdm import tqdm

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if engine == "ray":
        results = _ray(fn, items, workers, address, num_gpus, isolate)
    elif engine == "threads":
        results = _threads(fn, items, workers, stop or threading.Event(), desc)
    else:
        results = completion_order(fn, items, workers, isolate)
    bar = tqdm(total=len(items), desc=desc, unit="task", disable=None if progress else True)
    with closing(results), bar:  # closing: an early end stops the running tasks now
        for i, result in results:
            bar.update(1)
            yield i, result


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


def _ray(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    address: str | None,
    num_gpus: float,
    isolate: Callable[[T, str], R] | None,
) -> Iterator[tuple[int, R]]:
    import ray

    ray_init(address, workers)
    remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=2)(fn)
    window = ray_window(workers)
    todo = iter(enumerate(items))
    pending: dict = {}  # ObjectRef -> item index: submitted, not yet seen finished
    try:
        while True:
            for i, item in itertools.islice(todo, window - len(pending)):
                pending[remote.remote(item)] = i
            if not pending:
                return
            # finished: out of `pending` before anything is fetched, never cancelled below
            finished = [(ref, pending.pop(ref)) for ref in _ready(list(pending))]
            for ref, i in finished:
                yield i, _ray_result(ref, items[i], isolate)
    except BaseException:
        _cancel_unfinished(list(pending))
        raise


def _ray_result(ref: Any, item: T, isolate: Callable[[T, str], R] | None) -> R:
    """``ray.get(ref)`` of ``item``'s task; when its worker died after Ray's retries,
    ``isolate(item, why)`` (or the error, without ``isolate``)."""
    import ray
    from ray.exceptions import WorkerCrashedError

    try:
        with user_errors_unwrapped():
            return ray.get(ref)
    except WorkerCrashedError:
        if isolate is None:
            raise
        return isolate(item, DIED_ALONE)


def ray_window(workers: int) -> int:
    """Ray tasks in flight at once: ``RAY_WINDOW_PER_CPU`` per CPU of the cluster joined."""
    import ray

    return RAY_WINDOW_PER_CPU * max(1, int(ray.cluster_resources().get("CPU", workers)))


def _ready(refs: list) -> list:
    """The refs of ``refs`` that have finished, at least one (waits for it): every one already
    done in one scan, so a burst of finished tasks costs one ``ray.wait``, not one each."""
    import ray

    # fetch_local=False: finished anywhere in the cluster (ray.get fetches it)
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
    if not done:
        done, _ = ray.wait(refs, num_returns=1, fetch_local=False)
    return done


def _cancel_unfinished(refs: list) -> None:
    """Cancel the tasks of ``refs`` not finished yet (cancelling a finished one aborts the driver
    on Ray 2.60); not ``force=True``: killing workers mid-task races Ray's bookkeeping."""
    import ray

    if refs:
        _, unfinished = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        for ref in unfinished:
            ray.cancel(ref)


def forkserver_context(preload: Sequence[str] = ()) -> multiprocessing.context.BaseContext:
    """A forkserver context: workers never inherit this process's threads (pyarrow's pools).

    Preloading modules also hands the server this process's ``sys.path``, so the workers import
    the project however it was started.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    return ctx


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
    window: int | None = None,
    isolate: Callable[[T, str], R] | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` in the order of ``items``, on ``engine``, a bounded number in flight.

    ``"local"``: ``workers`` processes of ``context`` (``"forkserver"`` with ``preload``: see
    ``forkserver_context``), at most ``2 * workers`` items in flight; ``workers == 1`` runs in
    this process. A worker that dies ends the map within moments with ``UsageError`` naming
    ``label(item)`` of the first unfinished item. ``"ray"``: Ray tasks, at most ``RAY_WINDOW_PER_CPU``
    per cluster CPU in flight (Ray retries a task whose worker died). ``window``: at most this
    many items in flight instead (started and not yet handed back), on either engine.
    ``isolate``: a worker that dies costs only its own item, ``isolate(item, why)`` in its place
    (local: the items in flight run again one at a time, each alone; Ray: after Ray's retries).
    """
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if engine == "ray":
        return _ray_ordered(fn, items, workers, address, window, isolate)
    if context == "forkserver":
        ctx = forkserver_context(preload)
    elif context == "spawn":
        ctx = multiprocessing.get_context("spawn")
    else:
        raise ValueError(f"context must be 'spawn' or 'forkserver', got {context!r}")
    return item_order(fn, items, workers, ctx, label, window, isolate)


def _ray_ordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    address: str | None,
    window: int | None,
    isolate: Callable[[T, str], R] | None = None,
) -> Iterator[R]:
    """Ray tasks in the order of ``items``: a sliding window of ``window`` (default ``ray_window``)
    tasks, the next one submitted as each result is handed back (no barrier between windows)."""
    if not items:
        return
    import ray

    ray_init(address, workers)
    remote = ray.remote(num_cpus=1, max_retries=2)(fn)
    todo = iter(items)
    first = window or ray_window(workers)
    pending = collections.deque((item, remote.remote(item)) for item in itertools.islice(todo, first))
    try:
        while pending:
            item, ref = pending[0]
            result = _ray_result(ref, item, isolate)
            pending.popleft()
            pending.extend((item, remote.remote(item)) for item in itertools.islice(todo, 1))
            yield result
    except BaseException:
        _cancel_unfinished([ref for _, ref in pending])  # a first one that failed is finished: left alone
        raise
