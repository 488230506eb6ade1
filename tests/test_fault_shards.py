"""SIGKILL ``python pipeline.py build-shards`` at three points, rerun: the same bytes, every sample once.

The workspace is the sample footage through the real crawl (``--urls``) and filter, with seeded
person boxes as detections (``seeded_detections.write_detections``); each run is the full command,
so filter and detect run first (they find their work done). The kill points:

- ``cutting``: ``shards/plan.json`` has appeared, the workers are cutting the first videos and no
  shard is final yet;
- ``some_final``: ``lup-000003.tar`` has appeared, later shards are still to come;
- ``index_write``: every shard is final and ``index.parquet`` is written under its temporary name
  but not yet renamed. No file appears for long enough to catch this moment, so this run is the
  same command started through a launcher that stops the process (SIGSTOP) right there; the test
  waits for the stop and kills it. No hook in the pipeline's code.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds
from processes import kill_group_when
from seeded_detections import write_detections

import pipeline

REPO = Path(pipeline.__file__).resolve().parent
DEMO = REPO / "configs" / "demo.yaml"
MAX_SAMPLES = 8
DEADLINE_S = 120

STOP_IN_INDEX_WRITE = """
import os, signal, sys
from pathlib import Path
import pipeline
import common.manifests.shard_index
from common.atomic import atomic_path

def write_parquet(path, df):
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow")
        if Path(path).name == "index.parquet":
            os.kill(os.getpid(), signal.SIGSTOP)  # written, not renamed: the test kills it here

common.manifests.shard_index.write_parquet = write_parquet
sys.exit(pipeline.main(sys.argv[1:]))
"""


def command(root: Path, launcher: str | None = None) -> list[str]:
    start = (
        [sys.executable, "-c", launcher, "build-shards"]
        if launcher
        else [sys.executable, "pipeline.py", "build-shards"]
    )
    return [*start, "--root", str(root), "--config", str(DEMO), "--max-samples", str(MAX_SAMPLES)]


def run(root: Path) -> str:
    """One uninterrupted command; its printed summary."""
    done = subprocess.run(command(root), cwd=REPO, capture_output=True, text=True, timeout=DEADLINE_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def figure(summary: str, name: str) -> int:
    return int(re.search(rf"{name}\s+([\d,]+)", summary).group(1).replace(",", ""))


def outputs(root: Path) -> dict[str, bytes]:
    shards = root / "shards"
    names = sorted(p.name for p in shards.glob("lup-*.tar")) + ["index.parquet", "samples.parquet"]
    return {name: (shards / name).read_bytes() for name in names} | {
        "stats.json": (root / "stats.json").read_bytes()
    }


def stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (Linux ``/proc``)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"


def kill_when(root: Path, point: str) -> None:
    """Start the command, SIGKILL it and its workers at ``point``."""
    shards = root / "shards"
    launcher = STOP_IN_INDEX_WRITE if point == "index_write" else None
    trigger = {
        "cutting": lambda proc: (shards / "plan.json").exists(),
        "some_final": lambda proc: (shards / "lup-000003.tar").exists(),
        "index_write": lambda proc: stopped(proc.pid),
    }[point]
    status = kill_group_when(command(root, launcher), REPO, trigger, DEADLINE_S)
    assert status == -signal.SIGKILL, f"the run ended before {point}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, videos_dir) -> tuple[Path, list[str]]:
    """crawl --urls + filter on the sample footage, seeded detections; the keys that must come out."""
    root = tmp_path_factory.mktemp("ws")
    urls = root.parent / "urls.txt"
    urls.write_text("".join(f"{p}\n" for p in sorted(videos_dir.iterdir())))
    for stage, extra in (("crawl", ["--urls", str(urls)]), ("filter", [])):
        assert pipeline.main([stage, "--root", str(root), "--config", str(DEMO), *extra]) == 0
    kept = pd.read_parquet(root / "video_filter.parquet").query("keep")
    valid = write_detections(root, {r.video_id: root / r.path for r in kept.itertuples()})
    keys = sorted(f"{r.video_id}_{r.frame:08d}_{r.box:03d}" for r in valid.itertuples())
    return root, keys


@pytest.fixture(scope="module")
def reference(workspace) -> dict[str, bytes]:
    """An uninterrupted run's shards, index, manifest and stats, read back with webdataset."""
    root, keys = workspace
    summary = run(root)
    assert figure(summary, "samples") == len(keys) and figure(summary, "shards_reused") == 0
    index = pd.read_parquet(root / "shards" / "index.parquet")
    urls = [str(root / "shards" / name) for name in index["shard"]]
    assert [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)] == keys
    assert len(index) == -(-len(keys) // MAX_SAMPLES) > 8
    return outputs(root)


@pytest.mark.parametrize("point", ["cutting", "some_final", "index_write"])
def test_killed_build_reruns_to_identical_bytes(workspace, reference, point):
    root, keys = workspace
    shards = root / "shards"
    shutil.rmtree(shards)
    (root / "stats.json").unlink()
    n_shards = len([name for name in reference if name.endswith(".tar")])

    kill_when(root, point)
    final = sorted(p.name for p in shards.glob("lup-*.tar"))
    temporary = sorted(p.name for p in shards.glob(".*.tmp"))
    assert not (shards / "index.parquet").exists() and not (root / "stats.json").exists()
    if point == "cutting":
        assert final == []
    elif point == "some_final":
        assert 4 <= len(final) < n_shards
    else:
        assert len(final) == n_shards and len(list((shards / "parts").glob("*.parquet"))) == n_shards
        assert len(temporary) == 1 and temporary[0].startswith(".index.parquet.")

    summary = run(root)
    reused = figure(summary, "shards_reused")
    if point == "cutting":
        assert reused == 0
    elif point == "some_final":
        assert 3 <= reused <= len(final)  # the last shard renamed may lack its part file
    else:
        assert reused == n_shards
    kept = pd.read_parquet(shards / "index.parquet")["n_samples"][:reused].sum()
    assert figure(summary, "samples_written_now") == len(keys) - kept
    assert outputs(root) == reference
    assert not list(shards.rglob("*.tmp"))
    urls = [str(shards / name) for name in sorted(reference) if name.endswith(".tar")]
    read = [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)]
    assert read == keys and len(set(read)) == len(keys)  # none lost, none twice
