"""Atomic writes and the summary table."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from common.atomic import atomic_path, write_json, write_parquet
from common.summary import flatten, format_table


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text().strip().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_parquet_written_atomically_reads_back_with_pyarrow(tmp_path):
    df = pd.DataFrame({"video_id": ["a", "b"], "keep": [True, False]})
    write_parquet(tmp_path / "sub" / "v.parquet", df)
    table = pq.read_table(tmp_path / "sub" / "v.parquet")
    assert table.column("video_id").to_pylist() == ["a", "b"]
    assert table.column("keep").to_pylist() == [True, False]


def test_summary_table_flattens_nested_figures():
    assert flatten({"dropped": {"too_short": 1, "vr": 0}, "kept": 4}) == [
        ("dropped.too_short", 1),
        ("dropped.vr", 0),
        ("kept", 4),
    ]
    table = format_table({"filter": {"kept": 1234}, "evaluate": {"status": "skipped: no benchmark"}})
    lines = table.splitlines()
    assert lines[0].split() == ["stage", "figure", "value"]
    assert "1,234" in lines[2] and lines[2].startswith("filter")
    assert lines[3].split() == ["evaluate", "status", "skipped:", "no", "benchmark"]
