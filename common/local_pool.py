"""The local process pool under ``common.engine``: bounded, stopped at once, a crash kept to its item.

Two orders over one ``ProcessPoolExecutor``: ``completion_order`` (``run_tasks``) and ``item_order``
(``ordered_map``). Both end every worker process within seconds when the caller stops (an error,
Ctrl-C, SIGTERM, the iterator closed), and turn a worker that vanished (a segfault in a decoder,
the OOM killer) into one line naming the unfinished work.

``completion_order`` can instead keep such a crash to its own item (``isolate``): it gives each
worker one task at a time, so when the pool breaks the tasks it was running are exactly the
suspects; each suspect runs again alone in a fresh process, and the one whose process dies again
becomes ``isolate(item, why)`` (a per-video error row) while every other item finishes.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from common.errors import UsageError

T = TypeVar("T")
R = TypeVar("R")
STOP_WAIT_S = 5.0  # a stopped pool's worker has this long to end on SIGTERM before SIGKILL
DIED_ALONE = "the process running it alone died (a crash, e.g. in a decoder, or a kill)"


def worker_died(unfinished: str) -> UsageError:
    """The one line for a pool whose worker process vanished (SIGKILL, the OOM killer)."""
    return UsageError(
        f"a worker process died (killed, e.g. out of memory) with {unfinished} unfinished: "
        "rerun the same command to resume (fewer --workers need less memory)"
    )


def completion_order(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    isolate: Callable[[T, str], R] | None = None,
) -> Iterator[tuple[int, R]]:
    """``(i, fn(items[i]))`` as tasks finish, on ``workers`` spawned processes.

    Without ``isolate`` and with one worker (or one item) the tasks run in this process, which
    keeps tracebacks and debuggers simple; with ``isolate`` they always run in worker processes.
    """
    if isolate is None and (workers == 1 or len(items) <= 1):
        for i, item in enumerate(items):
            yield i, fn(item)
        return
    # spawn, not fork: the parent may hold torch/OpenCV threads, which fork can deadlock.
    ctx = multiprocessing.get_context("spawn")
    todo = collections.deque(range(len(items)))
    while todo:
        suspects = yield from _until_broken(fn, items, todo, workers, ctx)
        if not suspects:
            continue
        if isolate is None:
            unfinished = sorted([*suspects, *todo])
            name = getattr(fn, "__name__", "task")
            raise worker_died(f"{len(unfinished)} {name} task(s), the first {_short(items[unfinished[0]])}")
        for i in suspects:
            yield i, _alone(fn, items[i], isolate, ctx)


def _until_broken(fn, items: Sequence[T], todo: collections.deque, workers: int, ctx) -> Iterator:
    """Run ``todo`` (taken from the left) on a fresh pool, one task per worker; return ``[]`` when
    all finished, or the indices the pool was running when a worker vanished."""
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx)
    running: dict[Future, int] = {}
    try:
        while todo or running:
            while todo and len(running) < workers:
                i = todo.popleft()
                running[pool.submit(fn, items[i])] = i
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = [fut for fut in done if isinstance(fut.exception(), BrokenProcessPool)]
            for fut in done:
                if fut not in broken:
                    yield running.pop(fut), fut.result()  # a task's own exception is raised here
            if broken:
                stop_pool(pool)
                return sorted(running.values())
    except BaseException:
        stop_pool(pool)  # the running tasks too: SIGTERM or Ctrl-C of the command alone ends it now
        raise
    pool.shutdown(wait=True)
    return []


def _alone(fn: Callable[[T], R], item: T, isolate: Callable[[T, str], R], ctx) -> R:
    """``fn(item)`` in a process of its own, or ``isolate(item, why)`` when that process dies."""
    pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx)
    try:
        return pool.submit(fn, item).result()
    except BrokenProcessPool:
        return isolate(item, DIED_ALONE)
    finally:
        stop_pool(pool)


def item_order(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    ctx: multiprocessing.context.BaseContext,
    label: Callable[[T], str],
    window: int | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` in the order of ``items``, at most ``window`` (default ``2 * workers``)
    in flight; one worker runs in this process. A vanished worker is one line naming ``label`` of
    the item waited on."""
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    window = window or 2 * workers
    pool = ProcessPoolExecutor(min(workers, window, len(items)), mp_context=ctx)
    pending: collections.deque[tuple[T, Future[R]]] = collections.deque()
    remaining = iter(items)
    try:
        for item in itertools.islice(remaining, window):
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
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (what ``Pool.__exit__`` did).

    With the workers gone the forkserver and the resource tracker see their pipes close and exit
    once this process does: nothing of the pool outlives the command."""
    processes = list((pool._processes or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=STOP_WAIT_S)
        if process.is_alive():  # a task that handles SIGTERM itself
            process.kill()
            process.join()


def _short(item: object) -> str:
    text = repr(item)
    return text if len(text) <= 200 else text[:197] + "..."
