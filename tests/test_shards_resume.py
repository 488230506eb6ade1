"""A killed build-shards, rerun, equals an uninterrupted one byte for byte; partial states resume."""

from __future__ import annotations

import dataclasses
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from processes import kill_group_when

from common.errors import UsageError
from shards.build import build_shards
from shards.settings import ShardSettings

REPO = Path(__file__).resolve().parent.parent


def small_tree(unlabeled_dir: Path, dest: Path, n: int) -> Path:
    dest.mkdir()
    for src in sorted((unlabeled_dir / "CUHK").glob("*.jpg"))[:n]:
        shutil.copy(src, dest / src.name)
    return dest


def outputs(root: Path) -> dict[str, bytes]:
    """Every tar plus index.parquet and samples.parquet, by name."""
    shards = root / "shards"
    names = [p.name for p in shards.glob("lup-*.tar")] + ["index.parquet", "samples.parquet"]
    return {name: (shards / name).read_bytes() for name in sorted(names)}


def cli(tree: Path, root: Path) -> list[str]:
    args = ["build-shards", "--from-images", str(tree), "--root", str(root), "--max-samples", "2"]
    return [sys.executable, str(REPO / "pipeline.py"), *args]


def test_killed_build_resumes_to_identical_bytes(unlabeled_dir, tmp_path):
    tree = small_tree(unlabeled_dir, tmp_path / "tree", 300)  # 150 shards of 2
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(cli(tree, whole), cwd=REPO, check=True, capture_output=True)

    fourth = killed / "shards" / "lup-000003.tar"
    # the build and its worker processes, mid-way
    status = kill_group_when(cli(tree, killed), REPO, lambda proc: fourth.exists(), 120)
    assert status == -signal.SIGKILL
    assert fourth.exists() and not (killed / "shards" / "index.parquet").exists()
    assert len(list((killed / "shards").glob("lup-*.tar"))) < 150

    rerun = subprocess.run(cli(tree, killed), cwd=REPO, check=True, capture_output=True, text=True)
    reused = int(re.search(r"shards_reused\s+(\d+)", rerun.stdout).group(1))
    assert reused >= 3
    assert outputs(killed) == outputs(whole)
    assert len(outputs(whole)) == 150 + 2
    assert not list((killed / "shards").rglob("*.tmp"))


def test_partial_states_resume_and_a_changed_plan_is_replaced_only_on_request(unlabeled_dir, tmp_path):
    tree = small_tree(unlabeled_dir, tmp_path / "tree", 60)
    cfg = ShardSettings(from_images=str(tree), max_samples=5, workers=1)
    reference = tmp_path / "ref"
    build_shards(cfg, reference)
    expected = outputs(reference)
    assert len(expected) == 12 + 2

    work = tmp_path / "work"
    shutil.copytree(reference, work)
    first_mtime = (work / "shards" / "lup-000000.tar").stat().st_mtime_ns
    # killed between renaming shard 7 and writing its part file; a stale temporary file
    (work / "shards" / "parts" / "lup-000007.parquet").unlink()
    (work / "shards" / ".lup-000008.tar.999.tmp").write_bytes(b"half a shard")
    assert build_shards(cfg, work)["shards_reused"] == 7
    assert outputs(work) == expected
    # a shard cut short under its part file
    data = (work / "shards" / "lup-000004.tar").read_bytes()
    (work / "shards" / "lup-000004.tar").write_bytes(data[: len(data) // 2])
    assert build_shards(cfg, work)["shards_reused"] == 4
    assert outputs(work) == expected
    assert (work / "shards" / "lup-000000.tar").stat().st_mtime_ns == first_mtime  # reused, not rewritten

    # one more input image: another plan. Refused, the shards untouched; rebuilt when asked
    shutil.copy(sorted((unlabeled_dir / "MIT").glob("*.jpg"))[0], tree / "0000_new.jpg")
    with pytest.raises(UsageError, match=r"another plan \(items 60 -> 61\).*--replace-shards"):
        build_shards(cfg, work)
    assert outputs(work) == expected
    summary = build_shards(dataclasses.replace(cfg, replace_shards=True), work)
    assert summary["shards_reused"] == 0 and summary["samples"] == 61 and summary["replaced"]
    build_shards(cfg, tmp_path / "fresh")
    assert outputs(work) == outputs(tmp_path / "fresh")
    assert sorted(p.name for p in work.iterdir()) == ["shards", "stats.json"]  # no staging left
