"""Shards swapped under a running pretrain (issue 22 item 5): ``pretrain --shards`` reading another
root holds that root's lock shared, so a ``build-shards`` there is refused while it runs; a swap
made behind the lock's back (by hand) stops the run with one line instead of training on
unchecked tars."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import webdataset as wds
from pretrain_safety import error_lines, flags, run_cli, tiny
from test_safety_runs import start_cli, wait_for

from pretrain.logs import read_metrics

CROPS = 48


def crops(unlabeled_dir: Path, folder: Path, offset: int) -> Path:
    """``CROPS`` real crops of TownCentre (every 100th from ``offset``) copied into ``folder``."""
    folder.mkdir()
    for src in sorted((unlabeled_dir / "TownCentre").glob("*.jpg"))[offset::100][:CROPS]:
        shutil.copy(src, folder / src.name)
    return folder


def test_a_shard_swap_under_a_running_pretrain_is_refused_or_stops_it(unlabeled_dir, tmp_path):
    other_root = tmp_path / "other"  # the root that owns the shards
    status, err, _ = run_cli(
        "build-shards", "--from-images", str(crops(unlabeled_dir, tmp_path / "a", 0)),
        "--root", str(other_root), "--workers", "1", timeout=120,
    )  # fmt: skip
    assert status == 0, err[-3000:]
    shards = other_root / "shards"
    cfg = tiny(shards, run_name="swap", workers=1, epochs=1000)  # 3 steps an epoch, a tar reopened each
    metrics = tmp_path / "train" / "runs" / "swap" / "metrics.csv"
    proc = start_cli("pretrain", "--root", str(tmp_path / "train"), *flags(cfg), stderr=tmp_path / "err")
    try:
        wait_for(lambda: len(read_metrics(metrics)) > 2, 120, proc)
        status, err, _ = run_cli(
            "build-shards", "--from-images", str(crops(unlabeled_dir, tmp_path / "b", 50)),
            "--root", str(other_root), "--replace-shards", "--workers", "1", timeout=120,
        )  # fmt: skip
        lines = error_lines(err)
        assert status == 2 and len(lines) == 1, err[-3000:]
        assert f"in use by pretrain pid={proc.pid}" in lines[0]
        assert not (other_root / "shards.next").exists() and proc.poll() is None

        by_hand = other_root / "by-hand"  # the same tar name, other crops
        by_hand.mkdir()
        with wds.TarWriter(str(by_hand / "lup-000000.tar")) as tar:
            for f in sorted((unlabeled_dir / "CUHK").glob("*.jpg"))[:CROPS]:
                tar.write({"__key__": f.stem, "jpg": f.read_bytes()})
        os.rename(shards, other_root / "old")
        os.rename(by_hand, shards)
        assert proc.wait(timeout=120) == 2
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = error_lines((tmp_path / "err").read_text())
    assert len(lines) == 1 and f"{shards / 'lup-000000.tar'} was replaced" in lines[0], lines
    assert "during the run" in lines[0]
