"""bench/shard_throughput.py --smoke: every method handles every sample and the result file is complete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_bench_smoke(unlabeled_dir, tmp_path):
    out = tmp_path / "shards.json"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "shard_throughput.py"),
            "--smoke",
            "--images",
            str(unlabeled_dir),
            "--out",
            str(out),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.read_text())
    rows = {r["name"].split(":")[0]: [] for r in result["rows"]}
    for r in result["rows"]:
        rows[r["name"].split(":")[0]].append(r)
    assert [len(v) for v in rows.values()] == [2, 2, 2, 2]  # write, export, read+decode, decode+resize
    assert all(r["samples_per_s"] > 0 for r in result["rows"])
    assert all((r["ratio"] is None) == ("baseline" in r["name"]) for r in result["rows"])
    assert all(r["samples"] == 300 for r in rows["write"] + rows["export"])
    assert all(r["samples"] == 256 and len(r["round_rates"]) == 2 for r in rows["read+decode"])  # 4 batches
    assert "pretrain loader, 1 process" in rows["read+decode"][1]["name"]
    assert "decode_jpeg on cpu" in rows["decode+resize"][1]["name"]
    assert "vs baseline" in run.stdout and "export-lmdb" in run.stdout and "round_rates=" in run.stdout


def test_measure_decode_signature(unlabeled_dir, tmp_path):
    """What bench/gpu.py calls: crops/s of one worker and of the batched decode, here on the CPU."""
    from bench.shard_throughput import measure_decode
    from shards.build import build_shards
    from shards.settings import ShardSettings

    crops = tmp_path / "crops" / "a"
    crops.mkdir(parents=True)
    for f in sorted(unlabeled_dir.glob("*/*.jpg"))[:40]:
        (crops / f.name).write_bytes(f.read_bytes())
    build_shards(ShardSettings(from_images=str(crops.parent), max_samples=16, workers=1), tmp_path / "ws")
    m = measure_decode(str(tmp_path / "ws" / "shards"), "cpu", 16, 0.05)
    assert m["device"] == "cpu" and m["batch"] == 16 and m["images"] == 32  # 2 whole batches of 40
    assert m["cpu_worker_crops_per_s"] > 0 and m["device_crops_per_s"] > 0
    assert m["device_over_cpu"] == pytest.approx(
        m["device_crops_per_s"] / m["cpu_worker_crops_per_s"], rel=1e-3
    )
