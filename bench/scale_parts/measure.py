"""How ``bench/scale.py`` measures one real command at one size, and fits growth across sizes.

``run_measured`` starts the command as a user would (``python pipeline.py ...``) in its own
session, samples the proportional set size (PSS, ``/proc/<pid>/smaps_rollup``) of every process of
that session every ``SAMPLE_S`` and keeps the peak of their sum: the memory of the whole process
tree (pool workers, Ray, the forkserver), with pages shared between them counted once. It then
counts what the command left under ``root``: files and bytes added, and the most files in one
folder (the folder-size limit of the full-size job). Samples start ``FIRST_SAMPLE_S`` apart and
widen to ``SAMPLE_S``, so a command of a fraction of a second is sampled too. (Its own
``ru_maxrss`` is no floor: Linux carries the forking parent's resident set into it.)

``exponent`` is the least-squares slope of log(value) against log(size): 1.0 grows with the work,
above ``MAX_EXPONENT`` faster than it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE_S = 0.2
FIRST_SAMPLE_S = 0.01
MAX_EXPONENT = 1.15  # issue 23: time growing faster than this is a defect
MAX_FILES_PER_FOLDER = 50_000
SKIPPED = 75  # the rc of a stage not run at a size (no room for it): not a failure, not in the fits


@dataclasses.dataclass
class Measurement:
    """One command at one size: what it cost and what it left."""

    stage: str
    size: int  # in ``unit``s (crops, videos, tasks)
    unit: str
    seconds: float
    peak_mib: float  # whole process tree, PSS
    files: int  # files added under the root
    bytes: int  # bytes added under the root
    max_files_per_folder: int
    folder: str  # the folder holding them, relative to the root
    rc: int
    note: str = ""


def tree_pss_kib(session: int) -> int:
    """Sum of the PSS of every live process whose session id is ``session`` (KiB)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
            if int(fields[3]) != session:  # after ")": state ppid pgrp session
                continue
            with open(f"/proc/{entry.name}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue  # the process ended between the listing and the read
    return total


@dataclasses.dataclass
class Usage:
    files: int = 0
    bytes: int = 0
    max_files_per_folder: int = 0
    folder: str = ""


def usage(root: Path) -> Usage:
    """Files and bytes under ``root`` (not following links) and its fullest folder."""
    found = Usage()
    if not root.exists():
        return found
    for folder, dirs, files in os.walk(root):
        found.files += len(files)
        for name in files:
            try:
                found.bytes += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
        entries = len(files) + len(dirs)
        if entries > found.max_files_per_folder:
            found.max_files_per_folder = entries
            found.folder = os.path.relpath(folder, root)
    return found


class PeakSampler:
    """The peak PSS of a process session, sampled on a thread from ``FIRST_SAMPLE_S`` apart,
    widening to ``SAMPLE_S``, while the ``with`` block runs (``kib`` once it ends)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.kib = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        wait_s = FIRST_SAMPLE_S
        while True:
            self.kib = max(self.kib, tree_pss_kib(self.pid))
            if self.done.wait(wait_s):
                return
            wait_s = min(SAMPLE_S, 2 * wait_s)

    def __enter__(self) -> PeakSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def run_measured(
    stage: str,
    size: int,
    unit: str,
    command: Sequence[str],
    root: Path,
    *,
    env: dict[str, str] | None = None,
    timeout_s: float | None = None,
    note: str = "",
) -> Measurement:
    """Run ``command`` (argv; ``python`` is this interpreter) and measure it, see the module doc.

    A command past ``timeout_s`` is stopped with SIGTERM to its session (then SIGKILL) and
    recorded with ``rc`` 124; the output goes to ``<root>.logs/<stage>-<size>.log``.
    """
    argv = [sys.executable if command[0] == "python" else command[0], *command[1:]]
    before = usage(root)
    log_dir = root.parent / f"{root.name}.logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{stage.replace(' ', '_')}-{size}.log"
    full_env = {**os.environ, "YOLO_OFFLINE": "1", **(env or {})}
    with open(log_path, "wb") as log:
        start = time.monotonic()
        proc = subprocess.Popen(
            argv, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        with PeakSampler(proc.pid) as peak:
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                rc = 124
                stop_session(proc)
            seconds = time.monotonic() - start
    after = usage(root)
    return Measurement(
        stage=stage,
        size=size,
        unit=unit,
        seconds=round(seconds, 2),
        peak_mib=round(peak.kib / 1024, 1),
        files=after.files - before.files,
        bytes=after.bytes - before.bytes,
        max_files_per_folder=after.max_files_per_folder,
        folder=after.folder,
        rc=rc,
        note=note,
    )


def stop_session(proc: subprocess.Popen) -> None:
    """SIGTERM the command's whole session, SIGKILL what is left after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def exponent(sizes: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of log(value) on log(size); ``None`` with fewer than two usable points.

    >>> round(exponent([1, 10, 100], [2, 20, 200]), 3)
    1.0
    """
    points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if s > 0 and v > 0]
    if len({x for x, _ in points}) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def project(sizes: Sequence[float], values: Sequence[float], target: float) -> float | None:
    """``values`` carried to ``target`` along the log-log fit (a power law through the points).

    >>> round(project([1, 10], [3, 30], 100), 6)
    300.0
    """
    slope = exponent(sizes, values)
    if slope is None:
        return None
    points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if s > 0 and v > 0]
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return math.exp(my + slope * (math.log(target) - mx))


def linear(sizes: Sequence[float], values: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares ``(intercept, slope)`` of value on size: a memory figure's fixed part and its
    cost per unit (per crop, per video), which carries it to a size never run here.

    >>> linear([1, 2, 3], [12, 14, 16])
    (10.0, 2.0)
    """
    if len(set(sizes)) < 2:
        return None
    mx, my = sum(sizes) / len(sizes), sum(values) / len(values)
    slope = sum((x - mx) * (y - my) for x, y in zip(sizes, values, strict=True)) / sum(
        (x - mx) ** 2 for x in sizes
    )
    return my - slope * mx, slope
