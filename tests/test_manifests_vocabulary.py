"""One vocabulary in every workspace file: ``status`` (a closed set of codes) and ``reason`` (a line).

Writers refuse a code outside their set; a file naming its columns otherwise (no release wrote
one) is refused with one line naming it, never read under other names.
"""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from common.errors import UsageError
from common.manifests import boxes, video_filter
from detect.boxes import BoxRows, read_video_summary, write_video_boxes
from detect.person_rules import BOX_REASONS, PersonRules
from filter.probe import Probe
from filter.settings import FilterSettings
from filter.videos import decide


def test_a_video_filter_file_with_other_column_names_is_refused(tmp_path):
    other = pd.DataFrame(
        {"video_id": ["a", "b"], "path": ["videos/a.mp4", "videos/b.mp4"], "keep": [True, False]}
        | {"reason": ["ok", "static"], "detail": ["", "max frame difference 0.001"]}
    )
    other.to_parquet(tmp_path / video_filter.FILE)
    with pytest.raises(
        UsageError, match=r"video_filter\.parquet lacks columns \['status'\]; run filter again"
    ):
        video_filter.read(tmp_path, ("video_id", "keep", "status", "reason"))


def test_todays_video_filter_file_round_trips(tmp_path):
    rows = pd.DataFrame(
        {"video_id": ["a"], "path": ["videos/a.mp4"], "city": ["Oslo"], "keep": [False]}
        | {"status": ["vr"], "reason": ["metadata:spherical"], "n_frames": [300]}
    )
    video_filter.write(tmp_path, rows)
    assert pq.read_schema(tmp_path / video_filter.FILE).names == video_filter.COLUMNS  # read by pyarrow
    table = video_filter.read(tmp_path)
    assert (table.loc[0, "status"], table.loc[0, "reason"]) == ("vr", "metadata:spherical")


def test_writers_refuse_a_status_outside_their_set(tmp_path):
    rows = pd.DataFrame({"video_id": ["a"], "path": ["a.mp4"], "keep": [False], "status": ["blurry"]})
    with pytest.raises(ValueError, match="blurry"):
        video_filter.write(tmp_path, rows)
    assert not (tmp_path / video_filter.FILE).exists()
    box_rows = BoxRows("hog", "none")
    box_rows.add_frame(0, [[0, 0, 60, 150, 2.0]], [None], PersonRules(min_score=1.0))
    box_rows.columns["status"][0] = "blurry"
    with pytest.raises(ValueError, match="blurry"):
        write_video_boxes(tmp_path / "v.parquet", "v", box_rows, 1)


def test_a_box_file_with_other_column_names_is_refused(tmp_path):
    box_rows = BoxRows("hog", "none")
    box_rows.add_frame(
        0, [[0, 0, 60, 150, 2.0], [0, 0, 30, 150, 2.0]], [None, None], PersonRules(min_score=1.0)
    )
    write_video_boxes(tmp_path / "v.parquet", "v", box_rows, 3)
    summary = read_video_summary(tmp_path / "v.parquet")
    assert summary["reasons"] == {"ok": 1, "too_narrow": 1} and summary["frames_sampled"] == 3
    table = pq.read_table(tmp_path / "v.parquet")
    other = table.rename_columns(["reason" if n == "status" else n for n in table.column_names])
    pq.write_table(other, tmp_path / "v.parquet")
    with pytest.raises(
        UsageError, match=r"v\.parquet lacks columns \['status'\]; delete it and run detect again"
    ):
        read_video_summary(tmp_path / "v.parquet")


def test_each_code_a_stage_gives_is_in_its_files_set():
    cfg = FilterSettings()
    probes = {
        "unreadable": Probe(error="cannot open"),
        "too_short": Probe(n_frames=10),
        "too_small": Probe(n_frames=500, width=2, height=2),
        "static": Probe(n_frames=500, width=640, height=360, static_diff=0.0),
        "ok": Probe(n_frames=500, width=640, height=360, static_diff=cfg.static_tolerance + 1),
    }
    for want, probe in probes.items():
        assert decide(probe, "street walk", cfg)[0] == want
    assert {*probes, "vr", "duplicate", "near_duplicate"} == set(video_filter.STATUSES)
    assert set(BOX_REASONS) < set(boxes.STATUSES)  # the rules give codes the box files take


def test_an_unlisted_sample_status_fails_and_writes_nothing(tmp_path):
    from common.manifests import samples

    rows = samples.frame([samples.DEFAULTS | {"key": "a", "status": "blurry"}])
    with pytest.raises(ValueError, match="blurry"):
        samples.write(tmp_path, rows)
    with pytest.raises(ValueError, match="blurry"), samples.writer(tmp_path) as write:
        write(samples.table([samples.DEFAULTS | {"key": "b", "status": "blurry"}]))
    assert not (tmp_path / samples.FILE).exists()
