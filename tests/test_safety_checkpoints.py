"""A checkpoint whose pickle would run code is refused, never loaded, wherever a command reads one.

The payload is a real ``os.system`` call that creates a marker file when unpickled in full; the
first test shows it does. Each command must then end with status 2 and one error line naming
the file, and the marker must never appear.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import webdataset as wds

REPO = Path(__file__).resolve().parent.parent


class Payload:
    """Unpickled in full, runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def payload_file(path: Path, marker: Path, **extra) -> Path:
    """A ``.pt`` that looks like a checkpoint and carries the payload."""
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "meta": Payload(marker), **extra}, path)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "pipeline.py", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def assert_refused(result: subprocess.CompletedProcess, path: Path, marker: Path) -> None:
    assert not marker.exists(), "the payload ran"
    errors = [line for line in result.stderr.splitlines() if line.startswith("pipeline.py")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert len(errors) == 1 and str(path) in errors[0] and "refused" in errors[0], errors


def test_the_payload_runs_when_unpickled_in_full(tmp_path):
    """The other tests could not fail if this payload were inert."""
    marker = tmp_path / "ran"
    torch.load(payload_file(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def test_finetune_init_refuses_a_payload(tmp_path, reid_dir):
    marker, evil = tmp_path / "ran", tmp_path / "evil.pt"
    payload_file(evil, marker)
    result = run_cli(
        "finetune", "--root", str(tmp_path / "root"), "--dataset", "viper", "--data-dir",
        str(reid_dir / "VIPeR"), "--init", str(evil), "--arch", "resnet18", "--workers", "0",
        "--device", "cpu", "--id-share", "0.1",
    )  # fmt: skip
    assert_refused(result, evil, marker)


def test_evaluate_weights_refuses_a_payload(tmp_path, reid_dir):
    marker, evil = tmp_path / "ran", tmp_path / "evil.pt"
    payload_file(evil, marker)
    result = run_cli(
        "evaluate", "--root", str(tmp_path / "root"), "--dataset", "viper", "--data-dir",
        str(reid_dir / "VIPeR"), "--weights", str(evil), "--arch", "resnet18", "--workers", "0",
        "--device", "cpu",
    )  # fmt: skip
    assert_refused(result, evil, marker)


def test_detect_pose_weights_refuses_a_payload(tmp_path, videos_dir):
    marker, evil = tmp_path / "ran", tmp_path / "evil.pth"
    payload_file(evil, marker)
    root = tmp_path / "root"
    root.mkdir()
    row = {
        "video_id": "street",
        "path": str(videos_dir / "street-crossing.mp4"),
        "keep": True,
        "n_frames": 671,
    }
    pd.DataFrame([row]).to_parquet(root / "video_filter.parquet")
    result = run_cli(
        "detect", "--root", str(root), "--detector", "hog", "--pose-weights", str(evil),
        "--workers", "0", "--device", "cpu",
    )  # fmt: skip
    assert_refused(result, evil, marker)


def test_detect_refuses_weights_whose_mmpose_hash_tag_differs(tmp_path):
    """A file under the default download's name whose bytes are not mmpose's is never loaded."""
    from common.errors import UsageError
    from detect.hrnet import read_mmpose_state
    from detect.settings import MMPOSE_HRNET_W32_COCO

    marker = tmp_path / "ran"
    substituted = payload_file(tmp_path / MMPOSE_HRNET_W32_COCO.rsplit("/", 1)[-1], marker)
    with pytest.raises(UsageError, match="c78dce93"):
        read_mmpose_state(substituted)
    assert not marker.exists()


def test_pretrain_resume_refuses_a_planted_checkpoint(tmp_path, unlabeled_dir):
    """Planted as the newest checkpoint of the run, with a matching sha256 sidecar (as a
    planter who read the code would write it)."""
    shards = tmp_path / "shards"
    shards.mkdir()
    with wds.TarWriter(str(shards / "lup-000000.tar")) as tar:
        for f in sorted(unlabeled_dir.glob("*/*.jpg"))[:32]:
            tar.write({"__key__": f"{f.parent.name}_{f.stem}", "jpg": f.read_bytes(), "json": b"{}"})
    tar = shards / "lup-000000.tar"
    row = {"shard": tar.name, "n_samples": 32, "bytes": tar.stat().st_size, "sha256": sha256(tar)}
    pd.DataFrame([row]).to_parquet(shards / "index.parquet")  # as build-shards writes it
    marker, root = tmp_path / "ran", tmp_path / "root"
    folder = root / "runs" / "planted" / "checkpoints"
    folder.mkdir(parents=True)
    evil = payload_file(folder / "step_00000099.pt", marker, step=99)
    evil.with_name(evil.name + ".sha256").write_text(f"{sha256(evil)}  {evil.name}\n")
    result = run_cli(
        "pretrain", "--root", str(root), "--shards", str(shards), "--run-name", "planted",
        "--arch", "resnet18", "--height", "32", "--width", "16", "--batch-size", "16",
        "--queue-size", "32", "--bn-groups", "2", "--epochs", "1", "--warmup-epochs", "0",
        "--workers", "0", "--device", "cpu", "--cpu-threads", "1",
    )  # fmt: skip
    assert_refused(result, evil, marker)
    assert sorted(p.name for p in folder.iterdir()) == ["step_00000099.pt", "step_00000099.pt.sha256"]
