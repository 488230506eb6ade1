"""pretrain, finetune and evaluate as an unlucky user meets them (issue 22 items 7-9): files that
are no checkpoint, input sizes too small to train on, a killed or refused run and its locks, a
kill between two metrics rows, Ctrl-C inside a checked write, and the bytes of two equal runs.

The shard swap under a running pretrain (item 5): ``test_safety_pretrain_swap.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pretrain_safety import REPO, flags, run_cli, sha256, tiny, write_shards
from test_safety_pretrain import Records

import pipeline
from common.integrity import checked_digest, sidecar, write_checked
from pretrain.launch import pretrain
from pretrain.logs import read_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PASSWD = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
NOT_CHECKPOINTS = {  # what the weights-only unpickler trips over, each its own way
    "passwd": PASSWD,  # IndexError
    "newline": b"\n",  # "Unsupported operand 10": no payload, garbage
    "words": b"hello world\n",  # KeyError
}


@pytest.fixture(scope="module")
def shards(unlabeled_dir: Path, tmp_path_factory) -> Path:
    """48 real crops in 3 shards of 16 with their index: 3 steps of 16 per epoch."""
    return write_shards(unlabeled_dir, tmp_path_factory.mktemp("shards"))


def start_cli(*args: str, stderr: Path) -> subprocess.Popen:
    """``pipeline.py ARGS`` in a process group of its own (its loader workers join it)."""
    env = {**os.environ, "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(stderr, "w") as err:
        return subprocess.Popen(
            [sys.executable, "pipeline.py", *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
            stderr=err, start_new_session=True,
        )  # fmt: skip


def wait_for(condition, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the command ended with {proc.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def rows(run: Path) -> list[tuple[float, ...]]:
    """metrics.csv without its timings: (step, epoch, lr, loss, acc) of every step."""
    return [(r["step"], r["epoch"], r["lr"], r["loss"], r["acc"]) for r in read_metrics(run / "metrics.csv")]


# --- item 7: files that are no checkpoint, sizes too small ------------------------------------


@pytest.mark.parametrize("name", [*NOT_CHECKPOINTS, "/etc/passwd"])
def test_evaluate_weights_that_are_no_checkpoint_is_one_line(name, tmp_path, capsys):
    weights = Path(name)
    if name in NOT_CHECKPOINTS:
        weights = tmp_path / f"{name}.pth"
        weights.write_bytes(NOT_CHECKPOINTS[name])
    elif not weights.is_file():
        pytest.skip(f"{name} is not on this system")
    argv = ["evaluate", "--weights", str(weights), "--root", str(tmp_path / "root"), "--device", "cpu"]
    assert pipeline.main([*argv, "--workers", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{weights} is not a torch file" in lines[0], lines


@pytest.fixture(scope="module")
def two_checkpoints(shards, tmp_path_factory) -> Path:
    """A run cut at step 2 of 3, a checkpoint after each step."""
    root = tmp_path_factory.mktemp("two")
    pretrain(tiny(shards, run_name="cut", checkpoint_every=1, max_steps=2), root)
    return root


@pytest.mark.parametrize("garbage", NOT_CHECKPOINTS)
def test_a_garbage_checkpoint_with_a_matching_sidecar_falls_back(garbage, two_checkpoints, shards, tmp_path):
    shutil.copytree(two_checkpoints / "runs", tmp_path / "runs")
    newest = tmp_path / "runs" / "cut" / "checkpoints" / "step_00000002.pt"
    newest.write_bytes(NOT_CHECKPOINTS[garbage])
    sidecar(newest).write_text(f"{sha256(newest)}  {newest.name}\n")  # the bytes "check out"
    warnings = Records()
    logging.getLogger().addHandler(warnings)
    try:
        summary = pretrain(tiny(shards, run_name="cut", checkpoint_every=1), tmp_path)
    finally:
        logging.getLogger().removeHandler(warnings)
    assert summary["resumed_from_step"] == 1 and summary["steps"] == 3
    assert any("step_00000002.pt is damaged" in w for w in warnings.lines), warnings.lines


@pytest.mark.parametrize("size", [("--height", "1"), ("--width", "2"), ("--height", "6")])
def test_an_input_size_too_small_to_train_on_is_one_line(size, shards, tmp_path, capsys):
    cfg = tiny(shards, run_name="small", max_steps=1)
    assert pipeline.main(["pretrain", "--root", str(tmp_path), *flags(cfg), *size]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{size[0][2:]} must be >= 7 pixels" in lines[0], lines
    assert not (tmp_path / "runs").exists()


# --- item 8: the locks of killed and refused runs ---------------------------------------------


def test_a_killed_pretrain_leaves_its_locks_to_the_next_run_at_once(shards, tmp_path):
    """kill -9, then SIGTERM, of the main process only (a DataLoader worker outlives it a while):
    each immediate rerun takes the run's lock."""
    cfg = tiny(shards, run_name="k", workers=1, epochs=1000)
    args = ["pretrain", "--root", str(tmp_path), *flags(cfg)]
    metrics = tmp_path / "runs" / "k" / "metrics.csv"
    procs = [start_cli(*args, stderr=tmp_path / "first.err")]
    try:
        for sig in (signal.SIGKILL, signal.SIGTERM):
            done = len(read_metrics(metrics))
            wait_for(lambda n=done: len(read_metrics(metrics)) > n + 2, 120, procs[-1])  # the worker serves
            os.kill(procs[-1].pid, sig)
            procs[-1].wait(timeout=30)
            if sig == signal.SIGKILL:  # its worker is still there (else the test would prove nothing)
                os.killpg(procs[-1].pid, 0)
            procs.append(start_cli(*args, stderr=tmp_path / f"after-{sig.name}.err"))
            wait_for(lambda n=done: len(read_metrics(metrics)) > n + 3, 120, procs[-1])  # it took the lock
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
@pytest.mark.parametrize("fresh", [True, False], ids=["new-root", "existing-root"])
def test_a_refused_run_leaves_no_lock_file_and_no_folder(command, fresh, tmp_path, capsys):
    root = tmp_path / "root"
    if not fresh:
        (root / "settings").mkdir(parents=True)
    missing = ["--shards" if command == "pretrain" else "--data-dir", str(tmp_path / "none")]
    assert pipeline.main([command, "--root", str(root), "--run-name", "refused", *missing]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert (sorted(p.name for p in root.rglob("*")) if root.exists() else None) == (
        None if fresh else ["settings"]
    )


# --- item 9: metrics rows, sidecars, bytes ----------------------------------------------------

RUN = dict(run_name="r", epochs=6, log_every=10, checkpoint_every=2)  # 18 steps; rows every 10


@pytest.fixture(scope="module")
def whole(shards, tmp_path_factory) -> Path:
    """An uninterrupted run of 18 steps, from the command line; its run folder."""
    root = tmp_path_factory.mktemp("whole")
    status, err, _ = run_cli("pretrain", "--root", str(root), *flags(tiny(shards, **RUN)), timeout=300)
    assert status == 0, err[-3000:]
    return root / "runs" / "r"


def test_a_run_killed_between_two_metrics_rows_resumes_to_every_row(whole, shards, tmp_path):
    args = ["pretrain", "--root", str(tmp_path), *flags(tiny(shards, **RUN))]
    run = tmp_path / "runs" / "r"
    proc = start_cli(*args, stderr=tmp_path / "killed.err")
    try:
        wait_for(lambda: (run / "checkpoints" / "step_00000004.pt").is_file(), 120, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and not (run / "finished.json").exists()
    orphan = run / "checkpoints" / "step_00000099.pt.sha256"  # kill -9 between a sidecar and its file
    orphan.write_text(f"{'0' * 64}  step_00000099.pt\n")
    status, err, _ = run_cli(*args, timeout=300)
    assert status == 0, err[-3000:]
    assert len(rows(whole)) == 18
    assert rows(run) == rows(whole)  # every step, the same values
    assert not orphan.exists()


def test_two_equal_runs_write_equal_bytes(whole, shards, tmp_path):
    status, err, _ = run_cli("pretrain", "--root", str(tmp_path), *flags(tiny(shards, **RUN)), timeout=300)
    assert status == 0, err[-3000:]
    again = tmp_path / "runs" / "r"
    assert (again / "backbone.pth").read_bytes() == (whole / "backbone.pth").read_bytes()
    mine, theirs = (json.loads((run / "finished.json").read_text()) for run in (again, whole))
    assert mine["backbone_sha256"] == theirs["backbone_sha256"] == sha256(whole / "backbone.pth")
    assert mine["checkpoint_sha256"] == theirs["checkpoint_sha256"]


def interrupted(write, at: int) -> bool:
    """Run ``write()`` with a Ctrl-C (``KeyboardInterrupt``) at its ``at``-th line of
    ``common.integrity`` / ``common.atomic``; False once ``write`` has fewer lines."""
    files = {str(REPO / "common" / "integrity.py"), str(REPO / "common" / "atomic.py")}
    seen = 0

    def local(frame, event, arg):
        nonlocal seen
        if event == "line":
            seen += 1
            if seen == at:
                raise KeyboardInterrupt
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename in files else None)
    try:
        write()
    except KeyboardInterrupt:
        return True
    finally:
        sys.settrace(None)
    return False


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "overwrite"])
def test_ctrl_c_at_any_line_of_a_checked_write_leaves_no_sidecar_without_its_file(existing, tmp_path):
    path = tmp_path / "step_00000001.pt"
    old, new = {"w": torch.zeros(3)}, {"w": torch.ones(3)}
    at = 1
    while True:
        for p in tmp_path.iterdir():
            p.unlink()
        if existing:
            write_checked(path, lambda tmp: torch.save(old, tmp))
        if not interrupted(lambda: write_checked(path, lambda tmp: torch.save(new, tmp)), at):
            break
        left = sorted(p.name for p in tmp_path.iterdir())
        if existing or path.exists():  # the file and its sidecar agree: old or new, never mixed
            assert left == [path.name, sidecar(path).name], (at, left)
            checked_digest(path)
            got = torch.load(path, weights_only=True)["w"]
            assert torch.equal(got, new["w"]) or torch.equal(got, old["w"])
        else:
            assert left == [], (at, left)
        at += 1
    assert at > 20  # every line of the write was interrupted once
