"""Run one task function over many items on a local process pool or on a Ray cluster.

The dataset stages (crawl, filter, detect, build-shards) are per-video task functions; this is
the only place that decides where they run. No home-made scheduler: ``concurrent.futures`` on one
machine, Ray tasks past one machine (``--engine ray --address ray://head:10001`` or ``auto``).

Results come back in completion order as ``(index, result)``; stages sort or index them, so what
they write never depends on the engine or on timing.

    for i, result in run_tasks(probe, paths, engine="local", workers=2, desc="probe"):
        rows[i] = result

Work with a costly set-up (a detector and a pose model on a GPU) runs on long-lived Ray actors
instead, each building its object once: ``run_actors(factory, args, items, ...)``.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar

from common.errors import UsageError

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
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    raise _worker_died(fn, items, futures) from None
                yield futures[fut], result
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


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


def project_packages() -> list[str]:
    """The repository's top-level packages (folders with ``__init__.py``)."""
    repo = Path(__file__).resolve().parent.parent
    return sorted(str(p.parent) for p in repo.glob("*/__init__.py"))


def ray_init(address: str | None, workers: int) -> None:
    """Connect to ``address`` (a running cluster), or start a local Ray with ``workers`` CPUs.

    A cluster's workers get this checkout's packages from the driver (``py_modules``): every
    node needs the same Python environment, not the code, and all run the driver's version.
    """
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, runtime_env={"py_modules": project_packages()})
    else:
        # "local": a new instance even when this machine runs a `ray start` cluster, which a bare
        # ray.init() would join (and refuse num_cpus)
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    log.info("ray: %s", ray.cluster_resources())


@contextmanager
def user_errors_unwrapped() -> Iterator[None]:
    """A ``UsageError`` raised in a Ray worker reaches the caller as itself (one line for the
    user), not wrapped in Ray's remote traceback; other errors keep Ray's wrapping."""
    import ray

    try:
        yield
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, UsageError):
            raise e.cause from None
        raise


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


class _Host:
    """A Ray actor's body: builds ``factory(*args)`` once, then applies it to item after item."""

    def __init__(self, factory: Callable[..., Callable[[T], R]], args: tuple) -> None:
        self.error: Exception | None = None
        try:
            self.obj = factory(*args)
        except Exception as e:  # raised again by each call, where Ray keeps its type for the caller
            self.error = e

    def call(self, index: int, item: T) -> tuple[int, R]:
        if self.error is not None:
            raise self.error
        return index, self.obj(item)


def actor_shape(
    resources: dict[str, float], num_gpus: float | None, num_cpus: float, actors: int | None
) -> tuple[float, int]:
    """(GPUs per actor, actors) for a cluster's ``resources``.

    ``num_gpus=None``: one GPU per actor when the cluster has a GPU, else CPU actors.
    ``actors=None``: as many as the cluster's GPUs (or CPUs / ``num_cpus``) hold at once.
    """
    gpus = resources.get("GPU", 0.0)
    if num_gpus is None:
        num_gpus = 1.0 if gpus >= 1 else 0.0
    if actors is None:
        actors = int(gpus // num_gpus) if num_gpus else int(resources.get("CPU", 1.0) // num_cpus)
    return num_gpus, max(1, actors)


def run_actors(
    factory: Callable[..., Callable[[T], R]],
    args: tuple,
    items: Sequence[T],
    *,
    workers: int = 2,
    address: str | None = None,
    num_gpus: float | None = None,
    num_cpus: float = 1.0,
    actors: int | None = None,
    desc: str = "tasks",
) -> Iterator[tuple[int, R]]:
    """Yield ``(i, obj(items[i]))`` as items finish, ``obj = factory(*args)`` built once per Ray actor.

    A pool of actors (``ray.util.ActorPool``) that each hold the object, sized by ``actor_shape``
    and never larger than the number of items; ``workers`` CPUs when Ray starts locally. The
    actors end (their GPUs freed) when the iterator ends or is closed: no handle refers to them then. ``factory`` must be
    importable by the workers (a module-level class or function).
    """
    import ray
    from ray.util import ActorPool
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not items:
        return
    ray_init(address, workers)
    num_gpus, count = actor_shape(ray.cluster_resources(), num_gpus, num_cpus, actors)
    host = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_Host)
    handles = [host.remote(factory, args) for _ in range(min(count, len(items)))]
    name = getattr(factory, "__name__", type(factory).__name__)
    log.info("ray: %d actors of %s (%g CPU, %g GPU each)", len(handles), name, num_cpus, num_gpus)
    pool = ActorPool(handles)
    with tqdm(total=len(items), desc=desc, unit="task", disable=None) as bar:
        results = pool.map_unordered(lambda a, v: a.call.remote(*v), list(enumerate(items)))
        while True:
            with user_errors_unwrapped():
                i, result = next(results, (None, None))
            if i is None:
                break
            bar.update(1)
            yield i, result
    # Free the actors (and their GPUs) by dropping every handle: Ray ends an actor once no handle
    # refers to it and its calls are done. After an error or an early close the generator's frame
    # goes away, and the handles with it; no ray.kill of an actor whose calls are still in flight.
    del pool, results, handles
