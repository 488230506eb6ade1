"""One writer per workspace, settings saved only for runs that got past their input checks, and
bad input (a YAML bomb, non-UTF-8, ``nan``, a file or read-only folder as ``--root``) ending in
one line: issue 12 items 3 and 7, each run as a user runs it (``python pipeline.py ...``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO

LOCK = ".luperson.lock"
HOLD_LOCK = """
import sys, time
from common.lock import folder_lock
with folder_lock(sys.argv[1], "test-holder", shared=sys.argv[2] == "shared"):
    print("held", flush=True)
    time.sleep(120)
"""


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "pipeline.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The single line a bad input must end in: exit 2, no traceback."""
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, done.stderr[-2000:]
    return errors[0]


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file of the shard folder except the lock file (hashlib, not the writer's code)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK
    }


@pytest.fixture
def holder(tmp_path):
    """Start a process holding ``folder``'s lock; yields a starter, kills what it started."""
    procs: list[subprocess.Popen] = []

    def start(folder: Path, mode: str = "exclusive") -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(folder), mode], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture
def small_crops(unlabeled_dir, tmp_path) -> Path:
    """Twelve real crops of ../shared/data/unlabeled in a folder of their own."""
    folder = tmp_path / "crops"
    folder.mkdir()
    for src in sorted((unlabeled_dir / "TownCentre").rglob("*.jpg"))[:12]:
        shutil.copy(src, folder / src.name)
    return folder


def test_second_writer_exits_2_and_first_finishes_like_a_lone_run(unlabeled_dir, small_crops, tmp_path):
    lone, shared_root = tmp_path / "lone", tmp_path / "shared"
    build = ["build-shards", "--from-images", str(unlabeled_dir), "--workers", "1"]
    assert cli(*build, "--root", str(lone)).returncode == 0
    first = subprocess.Popen(
        [sys.executable, "pipeline.py", *build, "--root", str(shared_root)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = shared_root / LOCK
    deadline = time.monotonic() + 60
    while f"pid={first.pid}" not in (lock.read_text() if lock.is_file() else ""):
        assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.01)
    second = cli("build-shards", "--from-images", str(small_crops), "--root", str(shared_root))
    still_running = first.poll() is None
    line = one_error_line(second)
    assert f"build-shards pid={first.pid} host={socket.gethostname()}" in line
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert still_running, "the first run ended before the second started: the test proved nothing"
    assert tree_digest(shared_root / "shards") == tree_digest(lone / "shards")


def test_lock_of_a_killed_holder_is_taken_over(small_crops, tmp_path, holder):
    root = tmp_path / "root"
    root.mkdir()
    proc = holder(root)
    assert one_error_line(cli("build-shards", "--from-images", str(small_crops), "--root", str(root)))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert f"pid={proc.pid}" in (root / LOCK).read_text()  # its line is still there, its flock is not
    done = cli("build-shards", "--from-images", str(small_crops), "--root", str(root))
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"build-shards pid={proc.pid}" not in (root / LOCK).read_text()


def test_readers_share_and_writers_wait(small_crops, tmp_path, holder):
    root = tmp_path / "root"
    assert cli("build-shards", "--from-images", str(small_crops), "--root", str(root)).returncode == 0
    holder(root, "shared")  # a pretrain or verify-shards reading the shards
    verify = cli("verify-shards", "--root", str(root), "--workers", "1")
    assert verify.returncode == 0, verify.stderr[-2000:]
    line = one_error_line(cli("stats", "--root", str(root)))
    assert "test-holder" in line and "in use" in line


def test_settings_are_saved_only_after_the_inputs_are_checked(small_crops, tmp_path):
    root = tmp_path / "root"
    saved = root / "settings" / "shards.yaml"
    one_error_line(cli("build-shards", "--from-images", str(tmp_path / "missing"), "--root", str(root)))
    assert not saved.exists()
    assert cli("build-shards", "--from-images", str(small_crops), "--root", str(root)).returncode == 0
    before = saved.read_bytes()
    one_error_line(cli("build-shards", "--from-images", str(tmp_path / "missing"), "--root", str(root)))
    assert saved.read_bytes() == before
    assert yaml.safe_load(before)["shards"]["from_images"] == str(small_crops)


def test_a_chained_stage_reuses_the_users_saved_settings(tmp_path):
    import pipeline
    from common.settings import save_settings

    root = tmp_path / "root"
    mine = pipeline.resolve("detect", None, {"detector": "hog", "keypoints": "none", "frame_step": 25})
    save_settings(mine, pipeline.settings_file("detect", root), "detect")
    shards = pipeline.resolve("build-shards", None, {"engine": "local"})
    assert pipeline.chained_settings("detect", shards, None, root) == mine
    # --config still wins over the saved file, and flags over both
    config = tmp_path / "c.yaml"
    config.write_text("detect:\n  frame_step: 50\n")
    chained = pipeline.chained_settings("detect", shards, str(config), root)
    assert (chained.frame_step, chained.detector) == (50, "hog")


ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (ALIAS_BOMB.encode() + b"crawl: *i\n", "aliases"),
        (b"crawl:\n  per_city: 7\n  query: caf\xe9\n", "not UTF-8"),
        (b"crawl:\n" + b"[" * 5000 + b"]" * 5000, "config file"),
    ],
    ids=["alias-bomb", "latin-1", "deep-nesting"],
)
def test_hostile_config_is_one_short_line(tmp_path, content, expected):
    config = tmp_path / "bad.yaml"
    config.write_bytes(content)
    done = cli("crawl", "--config", str(config), "--root", str(tmp_path / "root"), timeout=60)
    line = one_error_line(done)
    assert expected in line and len(done.stderr) < 1000


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_float_setting_is_refused(tmp_path, value):
    line = one_error_line(cli("detect", f"--min-score={value}", "--root", str(tmp_path)))
    assert "finite" in line


def test_file_as_root_is_one_line(tmp_path):
    root = tmp_path / "a-file"
    root.write_text("not a folder")
    line = one_error_line(cli("build-shards", "--from-images", str(tmp_path), "--root", str(root)))
    assert "is a file" in line and root.read_text() == "not a folder"


@pytest.fixture
def read_only(tmp_path):
    """Bind-mount a folder read-only onto itself (we run as root, so chmod would not stop us)."""
    mounted: list[Path] = []

    def make(folder: Path) -> Path:
        ok = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
        if ok.returncode != 0:
            pytest.skip("cannot bind-mount here: " + ok.stderr.decode()[-200:])
        mounted.append(folder)
        ro = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True)
        if ro.returncode != 0:
            pytest.skip("cannot remount read-only here")
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def test_read_only_root(small_crops, tmp_path, read_only):
    root = tmp_path / "root"
    assert cli("build-shards", "--from-images", str(small_crops), "--root", str(root)).returncode == 0
    (root / LOCK).unlink()
    before = tree_digest(root)
    read_only(root)
    assert not os.access(root / "x", os.F_OK) and subprocess.run(["touch", str(root / "x")]).returncode != 0
    line = one_error_line(cli("build-shards", "--from-images", str(small_crops), "--root", str(root)))
    assert "not writable" in line
    verify = cli("verify-shards", "--root", str(root), "--workers", "1")  # reads only: still works
    assert verify.returncode == 0 and "Traceback" not in verify.stderr, verify.stderr[-2000:]
    assert tree_digest(root) == before


def test_a_one_off_permission_is_not_saved(tmp_path):
    import pipeline
    from common.settings import save_settings

    settings = pipeline.resolve("build-shards", None, {"replace_shards": True, "jpeg_quality": 90})
    save_settings(settings, tmp_path / "shards.yaml", "shards")
    again = pipeline.resolve("build-shards", str(tmp_path / "shards.yaml"), {})
    assert (again.replace_shards, again.jpeg_quality) == (False, 90)
