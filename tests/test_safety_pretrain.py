"""pretrain under corruption, kills, bad shards, bad names and a full disk: it never trains on
damaged bytes, never rewrites a finished run, never hangs, and ends in one line."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds

import pipeline
from common.errors import UsageError
from pretrain.data import BatchStream
from pretrain.launch import pretrain
from pretrain.presets import Recipe
from pretrain.settings import PretrainSettings

REPO = Path(__file__).resolve().parent.parent
TINY = dict(
    arch="resnet18", height=32, width=16, batch_size=16, queue_size=32, epochs=1, warmup_epochs=0,
    bn_groups=2, workers=0, device="cpu", log_every=1, checkpoint_every=2, shuffle_buffer=16,
)  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def index_shards(folder: Path, n_samples: int = 16) -> None:
    """``index.parquet`` of every tar in ``folder``, as build-shards writes it."""
    rows = [
        {"shard": p.name, "n_samples": n_samples, "bytes": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted(folder.glob("*.tar"))
    ]
    pd.DataFrame(rows).to_parquet(folder / "index.parquet")


@pytest.fixture(scope="module")
def shards(unlabeled_dir: Path, tmp_path_factory) -> Path:
    """48 real crops in 3 shards of 16 with their index: 3 steps of 16 per epoch."""
    files = sorted(unlabeled_dir.glob("*/*.jpg"))[::50][:48]
    out = tmp_path_factory.mktemp("shards")
    for s in range(3):
        with wds.TarWriter(str(out / f"lup-{s:06d}.tar")) as tar:
            for f in files[s * 16 : (s + 1) * 16]:
                tar.write({"__key__": f"{f.parent.name}_{f.stem}", "jpg": f.read_bytes(), "json": b"{}"})
    index_shards(out)
    return out


def tiny(shards: Path, **changes) -> PretrainSettings:
    return PretrainSettings(shards=str(shards), **{**TINY, **changes})


def flags(cfg: PretrainSettings) -> list[str]:
    """Command-line flags that give ``cfg`` (one CPU thread besides: a resumable change)."""
    out = ["--shards", str(cfg.shards), "--run-name", cfg.run_name, "--cpu-threads", "1"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name not in ("shards", "run_name") and value != f.default:
            out += [f"--{f.name.replace('_', '-')}", str(value)]
    return out


def run_cli(*args: str, timeout: float, limit_file_bytes: int | None = None) -> tuple[int, str, float]:
    """(status, stderr, seconds) of ``pipeline.py ARGS``; the process group is killed at ``timeout``."""
    env = {**os.environ, "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def limit() -> None:
        if limit_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "pipeline.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=limit,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"pipeline.py {args[0]} still running after {timeout} s:\n{err[-2000:]}")
    return proc.returncode, err, time.monotonic() - start


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.startswith("pipeline.py")]


def flip(path: Path, at: float = 0.5, n: int = 64) -> None:
    """Invert ``n`` bytes in the middle of ``path`` (same size: only a checksum can tell)."""
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i : i + n] = bytes(b ^ 0xFF for b in data[i : i + n])
    path.write_bytes(bytes(data))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


# --- a damaged checkpoint, stale temporaries of killed writes --------------------------------


@pytest.fixture(scope="module")
def flipped(shards, tmp_path_factory):
    """A run cut at step 2 of 3 (checkpoints 1 and 2), step 2 bit-flipped, temporaries of killed
    writes planted, then resumed: its root, the resume's summary and warnings, the dead pid."""
    root = tmp_path_factory.mktemp("flipped")
    cfg = tiny(shards, run_name="flip", checkpoint_every=1)
    pretrain(dataclasses.replace(cfg, max_steps=2), root)
    run = root / "runs" / "flip"
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.glob("*.pt")) == ["step_00000001.pt", "step_00000002.pt"]
    flip(folder / "step_00000002.pt")
    gone = dead_pid()
    for name in (f".step_00000006.pt.{gone}.tmp", f".backbone.pth.{gone}.tmp"):
        (run / ("checkpoints" if name.startswith(".step") else "") / name).write_bytes(b"\0" * 2**20)
    (folder / ".step_00000006.pt.1.tmp").write_bytes(b"live")  # pid 1 is alive: not ours to remove
    (folder / f".notes.txt.{gone}.tmp").write_bytes(b"not a name pretrain writes")
    records = Records()
    logging.getLogger().addHandler(records)
    try:
        summary = pretrain(cfg, root)
    finally:
        logging.getLogger().removeHandler(records)
    return {"root": root, "summary": summary, "warnings": records.lines, "dead_pid": gone}


def test_flipped_checkpoint_is_detected_and_the_previous_one_used(flipped):
    summary, warnings = flipped["summary"], flipped["warnings"]
    assert summary["resumed_from_step"] == 1 and summary["steps"] == 3
    assert any("step_00000002.pt" in w and "damaged" in w for w in warnings), warnings


def test_stale_temporaries_of_killed_writes_are_removed(flipped):
    run = flipped["root"] / "runs" / "flip"
    left = {p.name for p in [*run.glob(".*.tmp"), *(run / "checkpoints").glob(".*.tmp")]}
    assert left == {f".notes.txt.{flipped['dead_pid']}.tmp", ".step_00000006.pt.1.tmp"}


def test_every_checkpoint_damaged_is_refused_not_restarted(flipped, shards, tmp_path):
    folder = tmp_path / "runs" / "flip" / "checkpoints"  # the same run, in another root
    shutil.copytree(flipped["root"] / "runs" / "flip" / "checkpoints", folder)
    for p in folder.glob("*.pt"):
        flip(p)
    with pytest.raises(UsageError, match="no usable checkpoint"):
        pretrain(tiny(shards, run_name="flip", checkpoint_every=1), tmp_path)
    assert not (tmp_path / "runs" / "flip" / "metrics.csv").exists()  # nothing trained from step 0


# --- a finished run ---------------------------------------------------------------------------


def snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(run)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != ".luperson.lock"
    }


def test_rerunning_a_finished_run_rewrites_nothing(shards, tmp_path):
    cfg = tiny(shards, run_name="done")
    assert pretrain(cfg, tmp_path)["steps"] == 3
    run = tmp_path / "runs" / "done"
    before = snapshot(run)
    assert "backbone.pth" in before and "loss_curve.png" in before
    status, err, _ = run_cli("pretrain", "--root", str(tmp_path), *flags(cfg), timeout=180)
    assert status == 0, err[-3000:]
    assert snapshot(run) == before  # same files, same bytes, same modification times
    assert "is finished at step 3" in err


# --- shards against their index ---------------------------------------------------------------


def test_shards_are_checked_against_their_index(shards, tmp_path):
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    flip(copy / "lup-000001.tar", at=0.6, n=1)
    with pytest.raises(UsageError, match=r"lup-000001\.tar does not match .*index\.parquet"):
        pretrain(tiny(copy, run_name="tampered", max_steps=1), tmp_path)
    assert not (tmp_path / "runs" / "tampered" / "checkpoints").exists()

    from pretrain.shardlist import shard_list

    shutil.copy(shards / "lup-000001.tar", copy / "lup-000001.tar")
    (copy / "lup-000009.tar").write_bytes(b"a tar the index does not list")
    assert [Path(u).name for u in shard_list(str(copy), tmp_path).urls] == [
        "lup-000000.tar",
        "lup-000001.tar",
        "lup-000002.tar",
    ]
    with pytest.raises(UsageError, match=r"lup-000009\.tar is not listed"):
        shard_list(str(copy / "lup-000009.tar"), tmp_path)
    with (copy / "lup-000002.tar").open("ab") as f:
        f.write(b"\0" * 512)
    with pytest.raises(UsageError, match=r"lup-000002\.tar is \d+ bytes, .* says \d+"):
        shard_list(str(copy), tmp_path)


# --- shards that can never yield a batch ------------------------------------------------------


def test_unreadable_shards_end_within_seconds(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    for s in range(2):
        (folder / f"lup-{s:06d}.tar").write_bytes(os.urandom(20_000))
    index_shards(folder, n_samples=32)  # the index matches: only reading them tells
    cfg = tiny(folder, run_name="garbage", workers=1)
    status, err, seconds = run_cli("pretrain", "--root", str(tmp_path), *flags(cfg), timeout=90)
    lines = error_lines(err)
    assert status == 2 and len(lines) == 1, err[-3000:]
    assert "none of the 2 shard(s)" in lines[0] and "yields a sample" in lines[0]
    assert seconds < 60


def test_undecodable_images_end_the_stream(tmp_path):
    path = tmp_path / "lup-000000.tar"
    with wds.TarWriter(str(path)) as tar:
        for i in range(40):
            tar.write({"__key__": f"k{i:03d}", "jpg": b"not a jpeg", "json": b"{}"})

    class Hang(BaseException):
        """Not an Exception: webdataset's skip-and-continue handlers cannot swallow it."""

    def timeout(*_):
        raise Hang("the stream did not end in 30 s")

    stream = BatchStream(
        [str(path)], Recipe(height=32, width=16), seed=0, n0=0, steps_per_epoch=3, batch=8, shuffle_buffer=8
    )
    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(30)
    try:
        with pytest.raises(UsageError, match="holds a decodable .jpg"):
            next(iter(stream))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- names and disks --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_run_name_must_be_one_plain_folder(command, tmp_path, capsys):
    root = tmp_path / "a" / "root"
    elsewhere = ["--shards" if command == "pretrain" else "--data-dir", str(tmp_path / "none")]
    assert pipeline.main([command, "--root", str(root), "--run-name", "../../escape", *elsewhere]) == 2
    assert "run_name must be one plain folder name" in capsys.readouterr().err
    assert not (tmp_path / "a" / "escape").exists() and not root.exists()


@contextlib.contextmanager
def small_disk(folder: Path):
    """``folder`` on an 8 MiB tmpfs, yielding None; or, where mounting is not allowed, yielding
    a per-file size limit (RLIMIT_FSIZE) of 8 MiB for the child: writes beyond it fail alike."""
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0  # fmt: skip
    try:
        yield None if mounted else 8 * 2**20
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def test_disk_full_ends_in_one_line(shards, tmp_path):
    cfg = tiny(shards, run_name="full", max_steps=1, checkpoint_every=1)
    run = tmp_path / "runs" / "full"
    with small_disk(run) as limit:
        status, err, _ = run_cli(
            "pretrain", "--root", str(tmp_path), *flags(cfg), timeout=180, limit_file_bytes=limit
        )
        lines = error_lines(err)
        assert status == 2 and len(lines) == 1, err[-3000:]
        assert "cannot write" in lines[0] and "step_00000001.pt" in lines[0]
        assert not [p.name for p in (run / "checkpoints").iterdir()]  # no partial file, no temporary
