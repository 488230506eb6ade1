"""The time budget of ``bench/gpu.py``: each part gets a deadline that really stops it.

A part starts only when its budget fits in what is left of the whole run; while it runs, a
``SIGALRM`` timer raises ``PartOverrun`` in it at its deadline. ``PartOverrun`` is a
``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception`` in the stages swallows
it, and ``with`` blocks (locks, temporary files, data loader workers) unwind as on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("bench.gpu")
RESERVE_S = 10.0  # kept back from an elastic part: writing the report, a stop's unwinding


class PartOverrun(BaseException):
    """A part ran past its deadline."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[bool]:
    """Raise ``PartOverrun`` in this (main) thread after ``seconds``; yields whether it is armed.

    Off the main thread there is no ``SIGALRM``: nothing is armed and the caller says so.
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return

    def alarm(signum: int, frame: Any) -> None:
        raise PartOverrun(f"deadline of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Clock:
    """Seconds since the run started and seconds left of ``total_s``."""

    total_s: float
    start: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.total_s - self.elapsed()


def new_record(name: str, budget_s: float) -> dict[str, Any]:
    """The result of one part: status, seconds, rows of figures, tables, notes, raw reports."""
    return {
        "name": name,
        "status": "skipped",
        "budget_s": budget_s,
        "seconds": 0.0,
        "rows": [],
        "tables": [],
        "notes": [],
    }


def skipped(name: str, budget_s: float, why: str) -> dict[str, Any]:
    """The record of a part that did not start, with why; printed, never silent."""
    record = new_record(name, budget_s)
    record["notes"].append(f"skipped: {why}")
    print(f"[gpu.py] {name}: skipped: {why}", flush=True)
    return record


def allowed_s(budget_s: float, elastic: bool, clock: Clock, later_s: float = 0.0) -> float | None:
    """The deadline of a part, or None when its budget does not fit in what is left.

    An elastic part (the transfer experiment) also gets what earlier parts left unused, less the
    budgets of the parts after it (``later_s``).
    """
    left = clock.left()
    if budget_s > left:
        return None
    return max(budget_s, left - RESERVE_S - later_s) if elastic else budget_s


def run_part(
    name: str, fn: Callable, ctx: Any, budget_s: float, elastic: bool, clock: Clock, later_s: float = 0.0
) -> dict:
    """Run ``fn(ctx, record)`` under its deadline; a stop, a failure or a skip is a note, never silent."""
    allowed = allowed_s(budget_s, elastic, clock, later_s)
    if allowed is None:
        left = f"{max(clock.left(), 0):.0f} s of the {clock.total_s:.0f} s are left"
        return skipped(name, budget_s, f"its budget is {budget_s:.0f} s and {left} (raise --budget-s)")
    record = new_record(name, budget_s)
    record["deadline_s"] = round(allowed, 1)
    start = time.perf_counter()
    try:
        with deadline(allowed) as armed:
            if not armed:
                record["notes"].append("not on the main thread: the deadline is not enforced")
            fn(ctx, record)
        record["status"] = record.get("status_override", "ok")
    except PartOverrun:
        record["status"] = "stopped"
        record["notes"].append(
            f"stopped at its deadline of {allowed:.0f} s; rows measured before it are kept"
        )
    except Exception as e:  # one failing part must not cost the others their (lent) GPU time
        record["status"] = "failed"
        record["notes"].append(f"failed: {type(e).__name__}: {e}")
        log.error("part %s failed:\n%s", name, traceback.format_exc())
    record.pop("status_override", None)
    record["seconds"] = round(time.perf_counter() - start, 1)
    release_memory()
    run_at = f"run at {clock.elapsed():.0f} of {clock.total_s:.0f} s"
    times = f"budget {budget_s:.0f} s, deadline {allowed:.0f} s, {run_at}"
    print(f"[gpu.py] {name}: {record['status']} in {record['seconds']:.1f} s ({times})", flush=True)
    return record


def release_memory() -> None:
    """Free what a stopped or finished part left behind (its frames held CUDA tensors)."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
