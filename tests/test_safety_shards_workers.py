"""A pool worker SIGKILLed mid-task (as the OOM killer would) ends build-shards and verify-shards
within seconds with one line, never a hang or a traceback; the build's rerun resumes.

Plans, ``--replace-shards`` and bad inputs: ``test_safety_shards.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pandas as pd
import pytest

import pipeline
from shards.build import build_shards
from shards.settings import ShardSettings

REPO = Path(pipeline.__file__).resolve().parent
HANG_S = 30  # a command that has not ended this long after its worker died is hung


def cli(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "pipeline.py"), *args]


def proc_stat(pid: int) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` after the command name: state, ppid, ..., utime, stime."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := proc_stat(int(entry.name))) and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def busy_worker(pid: int) -> int | None:
    """A pool worker of ``pid`` (a child of its forkserver) that has used >= 0.1 s of CPU: mid-task."""
    for server in children(pid):
        for worker in children(server):
            fields = proc_stat(worker)
            if fields and int(fields[11]) + int(fields[12]) >= os.sysconf("SC_CLK_TCK") // 10:
                return worker
    return None


def kill_a_busy_worker(command: list[str]) -> tuple[int, str, float]:
    """Run ``command``, SIGKILL one busy pool worker; ``(status, stderr, seconds from kill to exit)``."""
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while (worker := busy_worker(proc.pid)) is None:
            assert proc.poll() is None and time.monotonic() < deadline, "no busy worker seen"
            time.sleep(0.01)
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        try:
            _, err = proc.communicate(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {HANG_S} s after its worker {worker} was killed: hung")
        return proc.returncode, err, time.monotonic() - killed
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def slow_tree(unlabeled_dir, tmp_path_factory) -> Path:
    """300 crops plus 12 big photos (~0.15 s to decode each), so that each worker task takes seconds:
    six sort before the crops (the first task of 256 items), six after (the second task)."""
    tree = tmp_path_factory.mktemp("slow")
    for src in sorted((unlabeled_dir / "TownCentre").glob("*.jpg"))[:300]:
        shutil.copy(src, tree / f"m_{src.name}")
    photo = cv2.imread(str(unlabeled_dir.parent / "images" / "bus.jpg"))
    big = cv2.imencode(".jpg", cv2.resize(photo, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC))[1]
    for n in range(6):
        (tree / f"a_big_{n}.jpg").write_bytes(big.tobytes())
        (tree / f"z_big_{n}.jpg").write_bytes(big.tobytes())
    return tree


def test_a_killed_worker_ends_build_shards_with_one_line(slow_tree, tmp_path):
    args = ["build-shards", "--from-images", str(slow_tree), "--root", str(tmp_path), "--workers", "2"]
    status, err, seconds = kill_a_busy_worker(cli(*args))
    assert status == 2 and seconds < 10 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(
        "pipeline.py build-shards: error: a worker process died (killed, e.g. out of memory)"
    )
    assert "with the items " in line and ".." in line and "rerun the same command" in line
    rerun = subprocess.run(cli(*args), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(pd.read_parquet(tmp_path / "shards" / "samples.parquet").query("status == 'ok'")) == 312


def test_a_killed_worker_ends_verify_shards_with_one_line(slow_tree, tmp_path):
    build_shards(ShardSettings(from_images=str(slow_tree), max_samples=100, workers=2), tmp_path)
    args = ["verify-shards", "--root", str(tmp_path), "--workers", "2"]
    status, err, seconds = kill_a_busy_worker(cli(*args))
    assert status == 2 and seconds < 10 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("pipeline.py verify-shards: error: a worker process died")
    assert f"{tmp_path / 'shards'}/lup-00000" in line
