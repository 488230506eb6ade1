"""build-shards, verify-shards, stats and export-lmdb never lose a dataset, hang or end in a traceback.

- Another plan on a root with shards (another folder, an empty one, other caps, an unreadable
  ``plan.json``) is refused with one line naming what differs; every byte under ``shards/`` stays.
- ``--replace-shards`` builds beside the old shards: SIGKILLed mid-way the old ones are whole; the
  rerun swaps in exactly a fresh build's bytes. An empty plan replaces nothing; a swap cut short
  is finished by the next run. A ``verify.json`` goes with the shards it describes.
- A FIFO named ``*.jpg`` is recorded ``not_a_file``, never opened for a blocking read.
- A garbage or ill-formed ``index.parquet`` / ``samples.parquet``: one line from verify-shards,
  stats and export-lmdb. A read-only root: verify-shards still verifies; stats prints Table 1 and
  names what it could not write.

A pool worker killed mid-task: ``test_safety_shards_workers.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from processes import kill_group_when

import pipeline
from common.errors import UsageError
from shards.build import build_shards
from shards.checks.stats import stats
from shards.checks.verify import verify_shards
from shards.settings import ShardSettings, StatsSettings, VerifySettings

REPO = Path(pipeline.__file__).resolve().parent
HANG_S = 30  # a command that has not ended this long after its worker died is hung


@dataclasses.dataclass(frozen=True)
class Trees:
    a: Path  # 40 crops
    b: Path  # 60 other crops
    empty: Path


@pytest.fixture(scope="module")
def trees(unlabeled_dir, tmp_path_factory) -> Trees:
    base = tmp_path_factory.mktemp("trees")
    made = Trees(base / "a", base / "b", base / "empty")
    for folder, source, n in ((made.a, "CUHK", 40), (made.b, "MIT", 60), (made.empty, "", 0)):
        folder.mkdir()
        for src in sorted((unlabeled_dir / source).glob("*.jpg"))[:n] if n else []:
            shutil.copy(src, folder / src.name)
    return made


@pytest.fixture()
def built(trees, tmp_path) -> Path:
    """A root built from tree A (5 shards of 8) and verified."""
    root = tmp_path / "ws"
    build_shards(ShardSettings(from_images=str(trees.a), max_samples=8, workers=1), root)
    verify_shards(VerifySettings(workers=1), root)
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def built_outputs(root: Path) -> dict[str, bytes]:
    """The tars, index and manifest of a build (what two builds of one plan share byte for byte)."""
    shards = root / "shards"
    names = sorted(p.name for p in shards.glob("lup-*.tar")) + ["index.parquet", "samples.parquet"]
    return {name: (shards / name).read_bytes() for name in names}


def cli(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "pipeline.py"), *args]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("case", ["other_folder", "empty_folder", "other_caps", "unreadable_plan"])
def test_another_plan_is_refused_and_every_byte_kept(trees, built, capsys, case):
    args = {
        "other_folder": ["--from-images", str(trees.b), "--max-samples", "8"],
        "empty_folder": ["--from-images", str(trees.empty), "--max-samples", "8"],
        "other_caps": ["--from-images", str(trees.a), "--max-samples", "5"],
        "unreadable_plan": ["--from-images", str(trees.a), "--max-samples", "8"],
    }[case]
    named = {
        "other_folder": f"input {trees.a} -> {trees.b}; items 40 -> 60",
        "empty_folder": f"input {trees.a} -> {trees.empty}; items 40 -> 0",
        "other_caps": "max_samples 8 -> 5",
        "unreadable_plan": "plan.json is missing or unreadable",
    }[case]
    if case == "unreadable_plan":
        (built / "shards" / "plan.json").write_text("{half a")
    before = snapshot(built / "shards")
    capsys.readouterr()

    status = pipeline.main(["build-shards", "--root", str(built), "--workers", "1", *args])
    line = error_line(capsys)
    assert status == 2
    assert "holds 5 shard(s) of another plan" in line and named in line and "--replace-shards" in line
    assert snapshot(built / "shards") == before


def test_replace_shards_builds_beside_and_swaps_only_when_complete(trees, built, tmp_path, capsys):
    old = snapshot(built / "shards")
    staging = built / "shards.next"
    replace = ["build-shards", "--root", str(built), "--max-samples", "2", "--replace-shards"]
    # killed while the new plan (30 shards) is being written beside the old one
    new_plan = cli(*replace, "--from-images", str(trees.b))
    status = kill_group_when(new_plan, REPO, lambda _: (staging / "lup-000003.tar").exists(), 120)
    assert status == -signal.SIGKILL and (staging / "lup-000003.tar").exists()
    assert snapshot(built / "shards") == old

    capsys.readouterr()  # an empty plan never replaces anything
    assert pipeline.main([*replace, "--from-images", str(trees.empty)]) == 2
    assert "the new plan has no items, so it replaces nothing" in error_line(capsys)
    assert snapshot(built / "shards") == old

    done = subprocess.run(new_plan, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    build_shards(ShardSettings(from_images=str(trees.b), max_samples=2, workers=1), tmp_path / "fresh")
    assert built_outputs(built) == built_outputs(tmp_path / "fresh")
    assert len(built_outputs(built)) == 30 + 2
    assert not (built / "shards" / "verify.json").exists()  # it described the old shards
    assert not staging.exists() and not (built / ".shards.old").exists()


def test_a_swap_cut_short_is_finished_by_the_next_run(trees, built, tmp_path):
    """Killed between its two renames: ``.shards.old`` (the old plan) and a complete ``shards.next``."""
    cfg = ShardSettings(from_images=str(trees.b), max_samples=8, workers=1, replace_shards=True)
    build_shards(cfg, tmp_path / "fresh")
    shutil.copytree(tmp_path / "fresh" / "shards", built / "shards.next")
    (built / "shards").rename(built / ".shards.old")
    summary = build_shards(cfg, built)
    assert summary["shards_reused"] == 8 and "replaced" not in summary  # recovered, then resumed
    assert built_outputs(built) == built_outputs(tmp_path / "fresh")
    assert sorted(p.name for p in built.iterdir()) == ["shards", "stats.json"]


def test_a_verify_report_goes_with_the_shards_it_describes(trees, built):
    shards = built / "shards"
    report = json.loads((shards / "verify.json").read_text())
    index_digest = hashlib.sha256((shards / "index.parquet").read_bytes()).hexdigest()
    assert report["index_sha256"] == index_digest and report["shards_ok"] == 5

    cfg = ShardSettings(from_images=str(trees.a), max_samples=8, workers=1)
    assert build_shards(cfg, built)["shards_reused"] == 5
    assert json.loads((shards / "verify.json").read_text()) == report  # nothing changed: still true
    cut = (shards / "lup-000002.tar").read_bytes()
    (shards / "lup-000002.tar").write_bytes(cut[: len(cut) // 2])
    assert build_shards(cfg, built)["shards_reused"] == 2  # shards 2.. rewritten: the report is stale
    assert not (shards / "verify.json").exists()


# --- bad inputs -----------------------------------------------------------------------------------


def test_a_fifo_named_jpg_is_recorded_not_read(trees, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(trees.a, tree)
    os.mkfifo(tree / "pipe.jpg")
    args = ["build-shards", "--from-images", str(tree), "--root", str(tmp_path / "ws"), "--workers", "1"]
    try:
        done = subprocess.run(cli(*args), cwd=REPO, capture_output=True, text=True, timeout=HANG_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"build-shards still reading a FIFO after {HANG_S} s")
    assert done.returncode == 0, done.stderr[-2000:]
    records = pd.read_parquet(tmp_path / "ws" / "shards" / "samples.parquet").set_index("source_id")
    assert records.loc["pipe.jpg", "status"] == "not_a_file"
    assert records.loc["pipe.jpg", "reason"] == "not a regular file (a FIFO)"
    assert (records["status"] == "ok").sum() == 40


def garbage(path: Path) -> None:
    path.write_bytes(b"PAR1 this is not a parquet file PAR1")


def foreign_index(path: Path) -> None:
    pd.DataFrame({"shard": ["../../etc/passwd"], "n_samples": [1], "bytes": [1], "sha256": ["0"]}).to_parquet(
        path
    )


@pytest.mark.parametrize("damage", [garbage, foreign_index], ids=["garbage", "foreign"])
@pytest.mark.parametrize("command", ["verify-shards", "stats", "export-lmdb"])
def test_a_bad_index_is_one_line(built, capsys, damage, command):
    damage(built / "shards" / "index.parquet")
    capsys.readouterr()
    assert pipeline.main([command, "--root", str(built)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"pipeline.py {command}: error: {built / 'shards' / 'index.parquet'}")


def test_a_garbage_manifest_is_one_line_for_stats(built, capsys):
    garbage(built / "shards" / "samples.parquet")
    capsys.readouterr()
    assert pipeline.main(["stats", "--root", str(built)]) == 2
    samples = built / "shards" / "samples.parquet"
    assert error_line(capsys).startswith(
        f"pipeline.py stats: error: {samples} is not a readable Parquet file"
    )


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only: a read-only bind mount as root (whom file modes do not stop), else modes."""
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot bind-mount as root here: {mounted.stderr.decode().strip()}")
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    paths = [folder, *folder.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    for p in paths:
        p.chmod(modes[p] & ~0o222)
    try:
        yield
    finally:
        for p in reversed(paths):
            p.chmod(modes[p])


def test_a_read_only_root_still_verifies_and_stats_names_what_it_cannot_write(built, caplog, capsys):
    (built / "shards" / "verify.json").unlink()
    with read_only(built):
        with pytest.raises(OSError):
            (built / "probe").write_text("x")
        summary = verify_shards(VerifySettings(workers=2), built)
        assert summary["shards_ok"] == 5 and summary["samples"] == 40
        assert "could not write" in caplog.text and not (built / "shards" / "verify.json").exists()
        capsys.readouterr()
        with pytest.raises(UsageError, match=r"could not write .*: stats.json and figures/ not written"):
            stats(StatsSettings(), built)
        assert "this build" in capsys.readouterr().out  # Table 1 was printed
