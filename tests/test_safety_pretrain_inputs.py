"""pretrain on bad shards, bad names and a full disk: it never trains on damaged bytes, never
hangs, and ends in one line.

A damaged checkpoint, kills and a finished run: ``test_safety_pretrain.py``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import webdataset as wds
from pretrain_safety import error_lines, flags, flip, index_shards, run_cli, tiny, write_shards

import pipeline
from common.errors import UsageError
from pretrain.data import BatchStream
from pretrain.launch import pretrain
from pretrain.settings import Recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(unlabeled_dir: Path, tmp_path_factory) -> Path:
    """48 real crops in 3 shards of 16 with their index: 3 steps of 16 per epoch."""
    return write_shards(unlabeled_dir, tmp_path_factory.mktemp("shards"))


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
