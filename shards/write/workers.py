"""Where the shard stage's tasks run: ``common.engine.ordered_map``, in job order either way.

The writer appends results in task order (that is what makes the shards deterministic), so both
engines hand results back in the order of the jobs, with a bounded number in flight; local
workers start from a clean forkserver (they must not inherit this process's pyarrow threads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal, TypeVar

from common import engine as engines

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R],
    jobs: Sequence[T],
    workers: int,
    preload: str,
    label: Callable[[T], str] = str,
) -> Iterator[R]:
    """``map(fn, jobs)`` in order on ``workers`` forkserver processes preloading ``preload``."""
    return engines.ordered_map(
        fn, jobs, engine="local", workers=workers, context="forkserver", preload=[preload], label=label
    )


def engine_map(
    fn: Callable[[T], R],
    jobs: Sequence[T],
    workers: int,
    preload: str,
    engine: Literal["local", "ray"] = "local",
    address: str | None = None,
    label: Callable[[T], str] = str,
) -> Iterator[R]:
    """``map(fn, jobs)`` in order on ``engine``: forkserver processes preloading ``preload``, or
    Ray tasks (which retry a task whose worker died)."""
    return engines.ordered_map(
        fn,
        jobs,
        engine=engine,
        workers=workers,
        address=address,
        context="forkserver",
        preload=[preload],
        label=label,
    )
