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
# The reason recorded for an item whose process died again when it ran alone: on this pool, on Ray
# (after its retries) and in detect (a video decoded alone).
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
    isolate: Callable[[T, str], R] | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` in the order of ``items``, at most ``window`` (default ``2 * workers``)
    in flight. Without ``isolate`` one worker runs in this process, and a vanished worker is one
    line naming ``label`` of the item waited on. With ``isolate`` the items always run in worker
    processes; when one vanishes, the items in flight that had not finished run again one at a
    time, each alone in a fresh process, and one whose process dies again is ``isolate(item, why)``;
    then the others go on."""
    if isolate is None and (workers <= 1 or len(items) <= 1):
        yield from map(fn, items)
        return
    window = window or 2 * workers
    remaining = iter(items)
    while True:
        in_flight = yield from _in_order(fn, remaining, workers, window, ctx, label, isolate)
        if in_flight is None:
            return
        for item, result in in_flight:
            if result is _SUSPECT:
                yield _alone(fn, item, isolate, ctx)  # type: ignore[arg-type]  # isolate is set here
            else:
                yield result


_SUSPECT = object()


def _in_order(fn, todo: Iterator, workers: int, window: int, ctx, label, isolate):
    """Run ``todo`` on a fresh pool, yielding results in order. Returns ``None`` when all finished,
    or, when a worker vanished and ``isolate`` is set, the items that were in flight, in order,
    each with its result or ``_SUSPECT`` when it had not finished."""
    pool = ProcessPoolExecutor(max(1, min(workers, window)), mp_context=ctx)
    pending: collections.deque[tuple[T, Future[R] | None]] = collections.deque()
    try:
        for item in itertools.islice(todo, window):
            pending.append((item, _submit(pool, fn, item)))
        while pending:
            item, future = pending[0]
            try:
                if future is None:  # not submitted: the pool had broken already
                    raise BrokenProcessPool(label(item))
                result = future.result()
            except BrokenProcessPool:
                if isolate is None:
                    raise worker_died(label(item)) from None
                in_flight = [(it, _finished(fut)) for it, fut in pending]
                stop_pool(pool)
                return in_flight
            pending.popleft()
            for following in itertools.islice(todo, 1):
                pending.append((following, _submit(pool, fn, following)))
            yield result
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    return None


def _submit(pool: ProcessPoolExecutor, fn, item) -> Future | None:
    """``pool.submit(fn, item)``, or None when the pool broke (a worker died) since the last look."""
    try:
        return pool.submit(fn, item)
    except BrokenProcessPool:
        return None


def _finished(future: Future | None) -> object:
    """The result of a future that finished before the pool broke, else ``_SUSPECT``."""
    if future is not None and future.done() and not future.cancelled() and future.exception() is None:
        return future.result()
    return _SUSPECT


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
