"""Kill a command at a chosen moment: how the fault tests interrupt a run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def kill_group_when(
    command: Sequence[str], cwd: Path, ready: Callable[[subprocess.Popen], bool], timeout_s: float
) -> int:
    """Start ``command`` in its own process group, SIGKILL the whole group (the command and its
    worker processes) once ``ready(proc)`` holds, the command ends, or ``timeout_s`` passes.

    Returns the exit status: ``-signal.SIGKILL`` when the kill landed while the command ran.
    """
    proc = subprocess.Popen(
        command, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout_s
    while not ready(proc) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()
