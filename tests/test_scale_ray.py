"""bench/scale.py's ``ray`` part: the engine's cost per task, measured as a user runs a command."""

from __future__ import annotations

import json

from bench.scale_parts.context import Context
from bench.scale_parts.measure import run_measured
from bench.scale_parts.ray_tasks import APIS, checksum, run, timed, video_ids


def test_smoke_part_measures_both_apis_on_the_local_pool(tmp_path):
    """The test suite's run: local engine only (Ray's start is longer than the smoke budget),
    every command checked its results against the driver's and wrote its timings."""
    rows = run(Context(work=tmp_path, fractions=(0.01, 0.1), smoke=True))
    assert [(r.stage, r.size) for r in rows] == [
        (f"{api} local", n) for n in (2, 5) for api in APIS
    ]  # 46,260 x fraction x 0.001, at least 2
    assert all(r.rc == 0 and r.unit == "tasks" and r.files == 0 for r in rows)
    for r in rows:
        timings = json.loads(
            (tmp_path / "ray.timings" / f"local-{r.stage.split()[0]}-{r.size}.json").read_text()
        )
        assert timings["items"] == r.size and timings["loop_s"] < r.seconds
        assert f"{timings['us_per_task']:.0f} us/task" in r.note


def test_ray_command_holds_its_whole_ray_in_the_measured_memory(tmp_path):
    """The Ray command starts its own Ray: GCS, Raylet and workers are in the peak PSS, several
    times the ~20 MiB of a driver alone, and the 30 results come back right in item order."""
    out = tmp_path / "t.json"
    command = ["python", "-m", "bench.scale_parts.ray_tasks", "--engine", "ray", "--api", "ordered_map"]
    row = run_measured(
        "ordered_map ray", 30, "tasks", [*command, "--items", "30", "--out", str(out)], tmp_path / "ws"
    )
    timings = json.loads(out.read_text())
    assert row.rc == 0 and timings["items"] == 30  # timed() raises unless all 30 came back right
    assert (timings["engine"], timings["api"]) == ("ray", "ordered_map")  # not the local pool
    assert row.peak_mib > 100


def test_a_lost_or_wrong_result_fails_the_command(monkeypatch):
    """The timing counts only when every result came back right: an engine that loses one fails."""
    import pytest

    import common.engine

    assert len(set(map(checksum, video_ids(1000)))) == 1000 and len(video_ids(3)[2]) == 11
    real = common.engine.ordered_map
    monkeypatch.setattr(
        common.engine, "ordered_map", lambda fn, items, **kw: list(real(fn, items, **kw))[:-1]
    )
    with pytest.raises(RuntimeError, match="1 of 3 results wrong or missing"):
        timed("local", "ordered_map", 3, 1)
