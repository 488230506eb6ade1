"""Work with a costly set-up on long-lived Ray actors, each building its object once (a detector
and a pose model on a GPU): ``run_actors(factory, args, items, ...)``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from common.ray_cluster import ray_init, user_errors_unwrapped

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("common.engine")


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
