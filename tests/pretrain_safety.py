"""Helpers of the pretrain safety tests (``test_safety_pretrain.py``,
``test_safety_pretrain_inputs.py``): tiny settings, real-crop shards, the command line, damage."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds

from pretrain.settings import PretrainSettings

REPO = Path(__file__).resolve().parent.parent
TINY = dict(
    arch="resnet18", height=32, width=16, batch_size=16, queue_size=32, epochs=1, warmup_epochs=0,
    bn_groups=2, workers=0, device="cpu", log_every=1, checkpoint_every=2, shuffle_buffer=16,
)  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def index_shards(folder: Path, n_samples: int = 16) -> None:
    """``index.parquet`` of every tar in ``folder``, as build-shards writes it."""
    rows = [
        {"shard": p.name, "n_samples": n_samples, "bytes": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted(folder.glob("*.tar"))
    ]
    pd.DataFrame(rows).to_parquet(folder / "index.parquet")


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


def write_shards(unlabeled_dir: Path, out: Path) -> Path:
    """48 real crops in 3 shards of 16 with their index: 3 steps of 16 per epoch."""
    files = sorted(unlabeled_dir.glob("*/*.jpg"))[::50][:48]
    for s in range(3):
        with wds.TarWriter(str(out / f"lup-{s:06d}.tar")) as tar:
            for f in files[s * 16 : (s + 1) * 16]:
                tar.write({"__key__": f"{f.parent.name}_{f.stem}", "jpg": f.read_bytes(), "json": b"{}"})
    index_shards(out)
    return out
