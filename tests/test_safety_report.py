"""``stats`` (Table 1, figures, ``report.html``) on tampered or unwritable workspaces: issue 22,
items 4, 7 (a TeX city name) and 9 (a read-only root), each through ``python pipeline.py stats``.

- A ``status`` in ``detections/<id>.parquet`` names the report's example images; a tampered one
  (``../../../x``, an absolute path) is one line naming the file, and nothing is written outside
  the root. A ``shard`` in ``samples.parquet`` (or ``tracklets.parquet``) that leaves ``shards/``
  is refused the same way.
- A city named ``$\\undefinedmacro{x}^{$`` (which matplotlib's mathtext cannot parse) is drawn
  literally: the figures and ``report.html`` are written.
- On a read-only root, stats prints Table 1, then one line naming what it could not write.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipeline
from common.errors import UsageError
from common.manifests import boxes, tracklets, video_filter
from shards.build import build_shards
from shards.settings import ShardSettings

TEX_CITY = "$\\undefinedmacro{x}^{$"
VIDEO = "street-crossing.mp4"  # 640x360; the box below lies inside its first frame


@pytest.fixture(scope="module")
def built(unlabeled_dir, tmp_path_factory) -> Path:
    """A root of 16 crops in 2 shards, built once; each test works on a copy."""
    base = tmp_path_factory.mktemp("report")
    tree = base / "crops"
    tree.mkdir()
    for crop in sorted((unlabeled_dir / "CUHK").glob("*.jpg"))[:16]:
        shutil.copy(crop, tree / crop.name)
    build_shards(ShardSettings(from_images=str(tree), max_samples=8, workers=1), base / "root")
    return base / "root"


def workspace(built: Path, root: Path, videos_dir: Path, status: str, city: str = "boston") -> Path:
    """A copy of ``built`` whose one video (kept by filter, in ``city``) has one box of ``status``,
    written as a tamperer would: straight with pyarrow, past the writer's checks."""
    shutil.copytree(built, root)
    row = {"video_id": "street", "path": str(videos_dir / VIDEO), "city": city, "keep": True}
    row |= {"status": "ok", "reason": "", "n_frames": 671, "fps": 30.0, "width": 640, "height": 360}
    video_filter.write(root, pd.DataFrame([row]))
    box = {"video_id": "street", "frame": 0, "box": 0, "x1": 100.0, "y1": 50.0, "x2": 160.0, "y2": 250.0}
    box |= {"score": 0.9, "keypoints": [], "valid": False, "status": status, "detector": "hog"}
    box |= {"keypoint_model": "", "pose_present": None, "tracklet": None}
    boxes.path_of(root, "street").parent.mkdir(parents=True)
    table = pa.table({k: [v] for k, v in box.items()}, schema=boxes.schema(frames_sampled="1"))
    pq.write_table(table, boxes.path_of(root, "street"))
    return root


def stats(root: Path) -> int:
    return pipeline.main(["stats", "--root", str(root), "--report-examples", "1", "--grid-size", "2"])


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err[-2000:]
    return errors[0]


def files(folder: Path, leaving: Path) -> set[str]:
    """Every file under ``folder`` outside ``leaving``."""
    return {str(p) for p in folder.rglob("*") if p.is_file() and leaving not in p.parents}


@pytest.mark.parametrize("where", ["climbing", "absolute"])
def test_a_tampered_status_never_writes_outside_the_root(built, tmp_path, videos_dir, capsys, where):
    root = tmp_path / "a" / "b" / "root"  # report_files/../../../x lands in tmp_path/a
    workspace(built, root, videos_dir, "no_head")
    assert stats(root) == 0  # the untampered file: its example is drawn, inside the root
    assert sorted(p.name for p in (root / "report_files").iterdir()) == ["no_head_000.jpg", "per_video.csv"]

    status = "../../../escaped" if where == "climbing" else str(tmp_path / "abs" / "escaped")
    table = pq.read_table(boxes.path_of(root, "street"))
    table = table.set_column(table.schema.get_field_index("status"), "status", pa.array([status]))
    pq.write_table(table, boxes.path_of(root, "street"))
    before = files(tmp_path, root)
    capsys.readouterr()
    assert stats(root) == 2
    line = one_line(capsys)
    assert str(boxes.path_of(root, "street")) in line and "status" in line
    assert files(tmp_path, root) == before
    assert not [p for p in tmp_path.rglob("*escaped*")]


def test_a_shard_name_in_samples_that_leaves_the_shards_is_one_line(built, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(built, root)
    path = root / "shards" / "samples.parquet"
    samples = pd.read_parquet(path)
    samples.loc[0, "shard"] = "../../outside.tar"
    samples.to_parquet(path, index=False)
    capsys.readouterr()
    assert stats(root) == 2
    assert str(path) in one_line(capsys)


def test_a_tracklet_list_naming_a_path_is_refused_when_read(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    row = {"tracklet": "t1", "key": "k", "shard": "/etc/passwd", "video_id": "", "frame": -1}
    tracklets.frame([row]).to_parquet(shards / tracklets.FILE, index=False)  # written past the writer
    with pytest.raises(UsageError, match="not a file name"):
        tracklets.read(shards)


def test_a_city_named_like_tex_is_drawn_literally(built, tmp_path, videos_dir, capsys):
    root = workspace(built, tmp_path / "root", videos_dir, "ok", city=TEX_CITY)
    assert stats(root) == 0
    assert (root / "figures" / "per_city.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (root / "report.html").read_text()
    assert "<td>$\\undefinedmacro{x}^{$</td>" in page  # the per-city table, escaped as text


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only. As root (file modes do not stop root, and the tests run as root) a
    read-only bind mount of the folder onto itself; as anyone else, modes without write bits."""
    if os.geteuid() != 0:
        paths = [folder, *folder.rglob("*")]
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p in reversed(paths):
                p.chmod(modes[p])
        return
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount as root here (no CAP_SYS_ADMIN)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_stats_on_a_read_only_root_prints_table1_then_one_line(built, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(built, root)
    (root / ".luperson.lock").unlink(missing_ok=True)
    before = {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with read_only(root):
        assert not os.access(root, os.W_OK)
        capsys.readouterr()
        assert stats(root) == 2
        out = capsys.readouterr()
    assert "this build" in out.out and "LUPerson (paper)" in out.out  # Table 1 was printed
    errors = [line for line in out.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in out.err, out.err[-2000:]
    assert f"could not write {root / 'figures'}" in errors[0]
    assert {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
