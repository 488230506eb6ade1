"""Joining or starting Ray for the task engine: this checkout's packages shipped to the workers,
and a user's one-line error raised in a worker reaching the caller as itself."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.errors import UsageError

log = logging.getLogger("common.engine")


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
