"""bench/shards.py --smoke: every method handles every sample and the result file is complete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_smoke(unlabeled_dir, tmp_path):
    out = tmp_path / "shards.json"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "shards.py"),
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
    names = [r["name"] for r in result["rows"]]
    assert len(names) == 8 and sum("baseline" in n for n in names) == 4
    assert all(r["samples"] == 300 and r["samples_per_s"] > 0 for r in result["rows"])
    assert all((r["ratio"] is None) == ("baseline" in r["name"]) for r in result["rows"])
    assert "vs baseline" in run.stdout and "loader workers=1" in run.stdout and "export-lmdb" in run.stdout
