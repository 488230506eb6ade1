"""bench/scale.py: its measuring core against independent references, and every part's smoke run.

The core is checked on commands whose cost is known: a child that allocates a known number of
bytes (peak PSS of the tree), a tree of processes (counted once each, not per page shared), files
written (counted by ``os.walk`` here), and the fits against values computed by hand.
"""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bench.scale_parts.measure as measure
from bench.scale_parts.measure import exponent, linear, project, run_measured
from bench.scale_parts.report import growth

REPO = Path(__file__).resolve().parent.parent


def test_doctests_of_the_fits():
    assert doctest.testmod(measure).failed == 0


def test_fits_against_hand_computed_values():
    # time = 3 * size**1.5: the slope in log-log is 1.5 whatever the constant
    sizes = [10, 100, 1000]
    assert exponent(sizes, [3 * s**1.5 for s in sizes]) == pytest.approx(1.5)
    assert project(sizes, [3 * s**1.5 for s in sizes], 10_000) == pytest.approx(3 * 10_000**1.5)
    # memory = 200 MiB + 1.5 KiB per crop, the build-shards line of the issue
    intercept, slope = linear(sizes, [200 + 1.5 / 1024 * s for s in sizes])
    assert (intercept, slope * 1024) == (pytest.approx(200), pytest.approx(1.5))
    assert exponent([5], [1.0]) is None and linear([5, 5], [1.0, 2.0]) is None


def rows(stage: str, unit: str, sizes, seconds, mib, folder_files=10):
    return [
        {
            "stage": stage,
            "unit": unit,
            "size": s,
            "seconds": t,
            "peak_mib": m,
            "rc": 0,
            "max_files_per_folder": folder_files,
        }
        for s, t, m in zip(sizes, seconds, mib, strict=True)
    ]


def test_growth_names_each_defect_of_the_issue():
    flat = rows("verify", "crops", [41_802, 418_024], [3.0, 30.0], [130, 130])
    quadratic = rows("crawl", "videos", [730, 7_300], [1.0, 100.0], [100, 110])
    hungry = rows("build", "crops", [41_802, 418_024], [3.0, 30.0], [260, 860])  # 1.5 KiB a crop
    crowded = rows("detect", "videos", [462, 46_260], [1.0, 100.0], [100, 100], folder_files=60_000)
    found = {g["stage"]: g for g in growth(flat + quadratic + hungry + crowded)}
    assert found["verify"]["breaks"] == []
    assert found["verify"]["time_exponent"] == pytest.approx(1.0, rel=1e-4)
    assert found["crawl"]["breaks"] == ["time exponent 2.00 > 1.15"]
    # 600 MiB over 376,222 crops, 1.63 KiB a crop: 6.7 GiB at 4.18M (under 8), 15.8 GiB at 10M (under 16)
    assert found["build"]["kib_per_unit"] == pytest.approx(600 / 376_222 * 1024)
    assert found["build"]["breaks"] == []
    steeper = rows("build", "crops", [41_802, 418_024], [3.0, 30.0], [260, 1260])
    assert [b.split(" > ")[1] for b in growth(steeper)[0]["breaks"]] == ["8 GiB", "16 GiB"]
    assert found["detect"]["breaks"] == ["60,000 files in one folder"]


def test_a_measured_command_counts_its_tree_and_its_files(tmp_path):
    """A parent that starts two children, each holding 64 MiB of touched memory, and writes 3 files."""
    root = tmp_path / "root"
    root.mkdir()
    child = "import time; b = bytearray(64 << 20); b[::4096] = bytes(len(b[::4096])) ; time.sleep(1.5)"
    script = (
        "import subprocess, sys, pathlib\n"
        f"kids = [subprocess.Popen([sys.executable, '-c', {child!r}]) for _ in range(2)]\n"
        f"for i in range(3): (pathlib.Path({str(root)!r}) / 'sub' ).mkdir(exist_ok=True); "
        f"(pathlib.Path({str(root)!r}) / 'sub' / f'f{{i}}').write_bytes(b'x' * 1000)\n"
        "[k.wait() for k in kids]\n"
    )
    got = run_measured("tree", 1, "crops", ["python", "-c", script], root)
    assert got.rc == 0
    assert (got.files, got.bytes, got.max_files_per_folder, got.folder) == (3, 3000, 3, "sub")
    # bytearray(64 MiB) zero-filled by calloc: touching one byte a page makes every page resident
    assert 2 * 64 <= got.peak_mib < 2 * 64 + 120


def test_a_command_of_a_fraction_of_a_second_still_has_a_peak(tmp_path):
    child = "b = bytearray(32 << 20); b[::4096] = bytes(len(b[::4096]))"
    got = run_measured("short", 1, "crops", ["python", "-c", child], tmp_path)
    assert got.rc == 0 and got.seconds < 2
    assert got.peak_mib >= 5  # the interpreter, at least: sampled before it ended


def test_a_command_past_its_time_is_stopped_and_recorded(tmp_path):
    got = run_measured(
        "sleep", 1, "crops", ["python", "-c", "import time; time.sleep(60)"], tmp_path, timeout_s=1
    )
    assert got.rc == 124 and got.seconds < 15


def test_smoke_runs_every_part(tmp_path):
    out, md = tmp_path / "s.json", tmp_path / "s.md"
    done = subprocess.run(
        [
            sys.executable,
            "bench/scale.py",
            "--smoke",
            "--work",
            str(tmp_path / "w"),
            "--out",
            str(out),
            "--md",
            str(md),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    table = json.loads(out.read_text())["rows"]
    from bench.scale import PARTS

    assert {r["part"] for r in table} == set(PARTS)
    bad = [r for r in table if not (r["rc"] == 0 and r["seconds"] > 0 and r["peak_mib"] > 0)]
    assert not bad, bad  # the rows themselves, to say which part and why
    assert "## Growth and projection" in md.read_text()
    stream = {r["stage"]: r["note"] for r in table if r["part"] == "stream"}
    assert ", 0 raw videos left" in stream["stream"]  # every fetched video deleted once cut
    assert ", 0 video requests over loopback, " in stream["stream rerun"]  # nothing fetched again


def test_whole_job_on_paper_multiplies_the_measured_costs():
    """bench/scale_parts/job.py against the same products worked out here from its inputs."""
    from bench.scale_parts import job

    per_video = json.loads(job.PER_VIDEO.read_text())
    steps = {s["step"].split(" (")[0]: s for s in job.rows(per_video)}
    # 73,000 videos x 10 min x 60 s x 2 Mbit/s / 8 bits = 150 MB a video: 10.95 TB
    assert steps["download"]["tb"] == pytest.approx(10.95)
    assert steps["download"]["node_h"] == pytest.approx(10.95e12 * 8 / 1e9 / 3600)
    detect_s_per_min = per_video["clips"][job.CLIP]["per_minute"]["detect"]
    assert 1 < detect_s_per_min < 60  # HOG on 720p: seconds of CPU per minute of video
    assert steps["detect: persons"]["cpu_h"] == pytest.approx(50_534 * 10 * detect_s_per_min / 3600)
    # 200 epochs of 4,180,243 pairs at DESIGN.md's 3,973 pairs/s on one H100, over 8 GPUs
    assert steps["pretrain"]["gpu_h"] == pytest.approx(200 * 4_180_243 / 3_973 / 3600)
    assert steps["pretrain"]["node_h"] == pytest.approx(steps["pretrain"]["gpu_h"] / 8)
    for s in steps.values():
        assert s["cluster_h"] == pytest.approx(s["node_h"] / 10)
    text = job.table(job.rows(per_video))
    assert text.count("\n") == len(steps) + 2 and "**total**" in text
