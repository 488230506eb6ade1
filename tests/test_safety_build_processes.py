"""build-shards against its environment: SIGTERM, a full disk, hidden files, a catastrophic regex.

- SIGTERM (``kill``, systemd, Slurm, Kubernetes) ends ``build-shards --workers 2`` like Ctrl-C:
  every process of its session (pool workers, forkserver, resource tracker) is gone within
  seconds, and the rerun resumes to the bytes of an uninterrupted run.
- A full disk (a small tmpfs where this user may mount one, else a per-file size limit) ends it
  with one line naming the file and the free space; the rerun with room gives the same bytes.
- Hidden image files are rows of ``samples.parquet`` (``hidden``), hidden folders a count.
- A ``--tracklet-pattern`` that backtracks without end is stopped after ``MATCH_LIMIT_S``.

Worker deaths: ``test_safety_shards_workers.py``; plans and bad inputs: ``test_safety_shards.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pandas as pd
import pytest

import pipeline
from common.engine import run_tasks
from shards.build import build_shards
from shards.settings import ShardSettings
from shards.sources import images

REPO = Path(pipeline.__file__).resolve().parent
GONE_S = 10  # every process of a terminated command has ended this long after SIGTERM


def cli(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "pipeline.py"), *args]


def outputs(root: Path) -> dict[str, bytes]:
    """The bytes a build must reproduce: shards, index, manifest, ``stats.json``."""
    shards = root / "shards"
    names = sorted(p.name for p in shards.glob("lup-*.tar")) + ["index.parquet", "samples.parquet"]
    return {name: (shards / name).read_bytes() for name in names} | {
        "stats.json": (root / "stats.json").read_bytes()
    }


def build(
    source: Path, root: Path, *flags: str, limit_bytes: int | None = None
) -> subprocess.CompletedProcess:
    """``pipeline.py build-shards --from-images source`` (a per-file size limit if given)."""

    def limit() -> None:  # Python ignores SIGXFSZ: a write past the limit fails with EFBIG
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    args = cli("build-shards", "--from-images", str(source), "--root", str(root), *flags)
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=180, preexec_fn=limit)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.startswith("pipeline.py")]


# --- SIGTERM ----------------------------------------------------------------------------------


def live_processes(field: int, value: int) -> list[str]:
    """``"pid cmdline"`` of the live (not zombie) processes whose ``/proc/PID/stat`` field after
    the name ``field`` is ``value`` (1: the parent, 3: the session)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and int(fields[field]) == value and fields[0] != "Z":
            found.append(f"{entry.name} {cmdline}")
    return found


@pytest.fixture(scope="module")
def slow_tree(unlabeled_dir, tmp_path_factory) -> Path:
    """500 crops, then 20 big photos (~0.1 s to decode each) in the second and third worker task,
    so that the build is still running for a second or more after its first shard appears."""
    tree = tmp_path_factory.mktemp("slow")
    for src in sorted((unlabeled_dir / "TownCentre").glob("*.jpg"))[:500]:
        shutil.copy(src, tree / f"c_{src.name}")
    photo = cv2.imread(str(unlabeled_dir.parent / "images" / "bus.jpg"))
    big = cv2.imencode(".jpg", cv2.resize(photo, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC))[1]
    for n in range(20):
        (tree / f"z_big_{n:02d}.jpg").write_bytes(big.tobytes())
    return tree


def terminate_when_first_shard(command: list[str], shards: Path, log: Path) -> tuple[int, str, list[str]]:
    """Run ``command`` in its own session, SIGTERM it once the first shard is complete;
    ``(status, stderr, processes of the session left GONE_S after)``. Stderr goes to ``log``:
    a pipe would stay open as long as any process of the session holds it."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        deadline = time.monotonic() + 120
        while not (shards / "parts" / "lup-000000.parquet").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no shard appeared"
            time.sleep(0.01)
        assert proc.poll() is None, "the build ended before it could be terminated"
        assert len(live_processes(3, proc.pid)) >= 4  # the command, forkserver, tracker, workers
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GONE_S
        while (left := live_processes(3, proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return proc.wait(), log.read_text(), left
    finally:
        for line in live_processes(3, proc.pid):  # only what this test started
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
        proc.wait()


def test_sigterm_ends_every_process_of_the_build_and_the_rerun_resumes(slow_tree, tmp_path):
    flags = ("--workers", "2", "--max-samples", "50")
    assert build(slow_tree, tmp_path / "ref", *flags).returncode == 0
    root = tmp_path / "ws"
    command = cli("build-shards", "--from-images", str(slow_tree), "--root", str(root), *flags)
    status, err, left = terminate_when_first_shard(command, root / "shards", tmp_path / "stderr.txt")
    assert left == [], f"still running {GONE_S} s after SIGTERM: {left}"
    assert status == 128 + signal.SIGTERM and error_lines(err) == [
        "pipeline.py build-shards: terminated (SIGTERM); rerun the same command to resume"
    ]
    assert not (root / "shards" / "index.parquet").exists()
    rerun = build(slow_tree, root, *flags)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert re.search(r"shards_reused\s+[1-9]", rerun.stdout), rerun.stdout
    assert outputs(root) == outputs(tmp_path / "ref")
    assert not list((root / "shards").rglob("*.tmp"))


def spawned_workers() -> list[str]:
    """This process's ``spawn`` pool workers."""
    return [p for p in live_processes(1, os.getpid()) if "spawn_main" in p]


def test_an_interrupted_local_pool_ends_its_running_tasks_at_once():
    """filter's tasks (``run_tasks`` on local processes): an interrupt of the command alone (SIGTERM
    reaches only the main process) stops the running tasks, not waits for them to finish."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def interrupt_when_busy() -> None:
        deadline = time.monotonic() + 60
        while len(spawned_workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the workers have started their 40 s tasks
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, interrupt)
    sender = threading.Thread(target=interrupt_when_busy)
    try:
        sender.start()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            list(run_tasks(time.sleep, [40, 40, 40], engine="local", workers=2, progress=False))
        seconds = time.monotonic() - start
    finally:
        sender.join()
        signal.signal(signal.SIGUSR1, previous)
    assert seconds < 20 and not spawned_workers()


# --- a full disk ------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """``folder`` on a tmpfs of ``size`` (yields True; ``grow()`` gives it room), or, where this
    user may not mount, a plain folder (yields False: the caller limits the file size instead)."""
    folder.mkdir(parents=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    mounted = subprocess.run(mount, capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def grow(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True)


def test_a_full_disk_ends_in_one_line_and_the_rerun_is_exact(unlabeled_dir, tmp_path):
    source = tmp_path / "crops"
    source.mkdir()
    for src in sorted((unlabeled_dir / "TownCentre").glob("*.jpg"))[:400]:  # ~1 MB, shards of ~0.44 MB
        shutil.copy(src, source / src.name)
    flags = ("--workers", "2", "--max-samples", "100")
    assert build(source, tmp_path / "ref", *flags).returncode == 0
    root = tmp_path / "ws"
    with small_disk(root, "1m") as mounted:  # 1 MiB: two shards fit, the third does not
        full = build(source, root, *flags, limit_bytes=None if mounted else 400 * 2**10)
        lines = error_lines(full.stderr)
        assert full.returncode == 2 and len(lines) == 1, full.stderr[-3000:]
        pattern = r"^pipeline.py build-shards: error: cannot write (\S+/shards/lup-\d{6}\.tar) \((.+); (\d+) MiB free there\)$"
        named, reason, _ = re.match(pattern, lines[0]).groups()
        assert reason == ("No space left on device" if mounted else "File too large")
        assert not (root / "shards" / "index.parquet").exists() and not list(root.rglob("*.tmp"))
        assert not Path(named).exists()  # no partial file under the name
        if mounted:
            assert named.endswith("lup-000002.tar")  # two complete shards were kept
            grow(root)
        rerun = build(source, root, *flags)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert outputs(root) == outputs(tmp_path / "ref")


# --- hidden files -----------------------------------------------------------------------------


def test_hidden_files_are_recorded_and_change_no_shard(unlabeled_dir, tmp_path):
    crops = sorted((unlabeled_dir / "MIT").glob("*.jpg"))[:6]
    plain, hidden = tmp_path / "plain", tmp_path / "hidden"
    for tree in (plain, hidden):
        (tree / "a").mkdir(parents=True)
        for n, src in enumerate(crops):
            shutil.copy(src, tree / ("a" if n % 2 else "") / f"p{n}.jpg")
    shutil.copy(crops[0], hidden / ".p0.jpg")  # its key would be _p0, taken by no visible file
    (hidden / "a" / "._p1.jpg").write_bytes(b"\0\5\26\7" + bytes(60))  # macOS AppleDouble, not a JPEG
    (hidden / ".thumbnails").mkdir()
    shutil.copy(crops[1], hidden / ".thumbnails" / "p1.jpg")
    (hidden / ".DS_Store").write_bytes(bytes(16))

    base = build_shards(ShardSettings(from_images=str(plain), workers=1), tmp_path / "ws_plain")
    summary = build_shards(ShardSettings(from_images=str(hidden), workers=1), tmp_path / "ws_hidden")
    assert summary["hidden_image_files"] == 2 and summary["hidden_folders_skipped"] == 1
    assert summary["image_files"] == 8 and summary["other_files_ignored"] == 1  # .DS_Store
    assert summary["items"] == base["items"] + 2 and summary["failed"] == {"hidden": 2}
    rows = pd.read_parquet(tmp_path / "ws_hidden" / "shards" / "samples.parquet").set_index("source_id")
    assert rows.loc[[".p0.jpg", "a/._p1.jpg"], "status"].tolist() == ["hidden", "hidden"]
    assert rows.loc[".p0.jpg", "reason"] == images.HIDDEN_REASON
    ok = rows[rows["status"] == "ok"]
    before = pd.read_parquet(tmp_path / "ws_plain" / "shards" / "samples.parquet").set_index("source_id")
    assert ok["key"].to_dict() == before["key"].to_dict()  # the visible files keep their keys
    shards = {
        k: v for k, v in outputs(tmp_path / "ws_plain").items() if k.endswith((".tar", "index.parquet"))
    }
    assert {k: outputs(tmp_path / "ws_hidden")[k] for k in shards} == shards  # the same shard bytes


# --- a catastrophic --tracklet-pattern --------------------------------------------------------


def test_a_catastrophic_tracklet_pattern_ends_in_one_line(unlabeled_dir, tmp_path):
    tree = tmp_path / "crops"
    tree.mkdir()
    crops = sorted((unlabeled_dir / "TownCentre").glob("*.jpg"))
    for src in crops[:3]:
        shutil.copy(src, tree / src.name)
    shutil.copy(crops[3], tree / "walker_seen_from_the_front_on_the_high_street_no_frame.jpg")
    pattern = r"(?P<tracklet>(\w+_?)+)_[0-9]+[.]jpg"  # fine on 0_16.jpg, exponential without a frame
    args = ["--tracklet-pattern", pattern, "--workers", "1"]
    start = time.monotonic()
    try:
        done = build(tree, tmp_path / "ws", *args)
    except subprocess.TimeoutExpired:
        pytest.fail("--tracklet-pattern is still matching after 180 s")
    assert time.monotonic() - start < images.MATCH_LIMIT_S + 30
    lines = error_lines(done.stderr)
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert f"--tracklet-pattern {pattern!r} took over" in lines[0]
    assert "walker_seen_from_the_front_on_the_high_street_no_frame.jpg" in lines[0]
    assert not (tmp_path / "ws" / "shards").exists()


def test_the_tracklet_clock_keeps_an_earlier_timer(unlabeled_dir):
    """A sane pattern plans as before, and a timer armed by the caller still runs afterwards."""
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    previous = signal.signal(signal.SIGALRM, signal.SIG_IGN)
    try:
        tasks, counts = images.plan(str(unlabeled_dir / "TownCentre"), r"(?P<tracklet>[0-9]+)_[0-9]+[.]jpg")
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        handler = signal.getsignal(signal.SIGALRM)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert counts["tracklets"] == 222 and counts["images_without_tracklet"] == 0
    assert 90 < left <= 100 and handler is signal.SIG_IGN
