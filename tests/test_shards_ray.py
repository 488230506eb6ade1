"""build-shards on the local pool and as Ray tasks (one local Ray, 2 CPUs): the same bytes.

Two sources: person boxes on the sample footage (plus two truncated videos), and a folder of
unlabeled crops (plus a broken JPEG). Both engines must write identical shards, index and
samples manifest, and record the corrupt inputs with the same reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds
import yaml
from reference import readable_frames
from seeded_detections import write_detections

import common.engine
import pipeline
from shards.build import build_shards
from shards.settings import ShardSettings

FOOTAGE = ("concourse-walkers.mp4", "one-by-one-person-detection.mp4", "street-crossing.mp4")


def outputs(root: Path) -> dict[str, bytes]:
    """Every tar plus index.parquet, samples.parquet and stats.json, by name."""
    shards = root / "shards"
    names = sorted(p.name for p in shards.glob("lup-*.tar")) + ["index.parquet", "samples.parquet"]
    files = {name: (shards / name).read_bytes() for name in names}
    return files | {"stats.json": (root / "stats.json").read_bytes()}


def read_keys(root: Path) -> list[str]:
    """Sample keys of every shard in index order, read back with webdataset."""
    index = pd.read_parquet(root / "shards" / "index.parquet")
    urls = [str(root / "shards" / s) for s in index["shard"]]
    return [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)]


@pytest.fixture(scope="module")
def footage(tmp_path_factory, videos_dir) -> tuple[Path, pd.DataFrame, dict[str, int]]:
    """A workspace: the three clips, a faststart clip cut in half and a clip whose index (moov,
    at the end) was cut off; returns it, the valid boxes and each video's readable frames."""
    cut = tmp_path_factory.mktemp("cut")
    half = (videos_dir / "street-crossing.mp4").read_bytes()
    (cut / "street-crossing-half.mp4").write_bytes(half[: len(half) // 2])
    tail = (videos_dir / "pedestrians.mp4").read_bytes()  # its moov atom is at the end
    (cut / "pedestrians-cut.mp4").write_bytes(tail[: len(tail) // 2])
    videos = {Path(name).stem: videos_dir / name for name in FOOTAGE}
    # detections were found on the whole files, which were damaged afterwards
    videos |= {
        "street-crossing-half": cut / "street-crossing-half.mp4",
        "pedestrians-cut": cut / "pedestrians-cut.mp4",
    }
    root = tmp_path_factory.mktemp("footage")
    whole = {
        "street-crossing-half": videos_dir / "street-crossing.mp4",
        "pedestrians-cut": videos_dir / "pedestrians.mp4",
    }
    valid = write_detections(root, {vid: whole.get(vid, p) for vid, p in videos.items()})
    filt = pd.DataFrame(
        [(vid, str(p.resolve()), "Oxford", True, "ok") for vid, p in videos.items()],
        columns=["video_id", "path", "city", "keep", "status"],
    )
    filt.to_parquet(root / "video_filter.parquet", index=False)
    readable = {vid: readable_frames(p) for vid, p in videos.items()}
    return root, valid, readable


def test_detections_build_identical_on_ray(footage, tmp_path, local_ray, monkeypatch):
    source, valid, readable = footage
    roots = {engine: tmp_path / engine for engine in ("local", "ray")}
    for root in roots.values():
        shutil.copytree(source, root)
    calls: list[tuple[str, int]] = []
    real = common.engine.ordered_map

    def spy(fn, items, **kw):
        calls.append((kw["engine"], len(items)))
        return real(fn, items, **kw)

    monkeypatch.setattr(common.engine, "ordered_map", spy)  # the name shards.write.writer calls
    monkeypatch.setattr(common.engine, "RAY_WINDOW_PER_CPU", 1)  # 2 tasks in flight: reordered
    summaries = {
        engine: build_shards(ShardSettings(engine=engine, max_samples=16, workers=2), root)
        for engine, root in roots.items()
    }
    assert calls == [("local", 5), ("ray", 5)]  # one task per video, on the engine asked for
    assert summaries["ray"]["engine"] == "ray" and summaries["local"]["engine"] == "local"
    assert outputs(roots["local"]) == outputs(roots["ray"])

    # independent reference: a box is cut when OpenCV can read its frame, else recorded
    expected_ok = sorted(
        f"{r.video_id.replace('.', '_')}_{r.frame:08d}_{r.box:03d}"
        for r in valid.itertuples()
        if r.frame < readable[r.video_id]
    )
    keys = read_keys(roots["ray"])
    assert keys == expected_ok and len(set(keys)) == len(keys)
    assert summaries["ray"]["samples"] == len(keys) and summaries["ray"]["shards"] == -(-len(keys) // 16)
    records = pd.read_parquet(roots["ray"] / "shards" / "samples.parquet")
    assert len(records) == len(valid)
    bad = records[records["status"] != "ok"].groupby(["video_id", "status"]).size().to_dict()
    half = valid[valid["video_id"] == "street-crossing-half"]
    assert readable["pedestrians-cut"] == 0 and 0 < readable["street-crossing-half"] < 671
    assert bad == {
        ("pedestrians-cut", "video_unreadable"): (valid["video_id"] == "pedestrians-cut").sum(),
        ("street-crossing-half", "frame_unreadable"): (
            half["frame"] >= readable["street-crossing-half"]
        ).sum(),
    }
    assert records.loc[records["video_id"] == "pedestrians-cut", "reason"].str.contains("cannot open").all()


@pytest.fixture(scope="module")
def crops(tmp_path_factory, unlabeled_dir) -> Path:
    """300 crops from two folders, a JPEG cut in half and a text file named .jpg."""
    tree = tmp_path_factory.mktemp("crops")
    for folder in ("TownCentre", "INRIA"):
        (tree / folder).mkdir()
        for src in sorted((unlabeled_dir / folder).glob("*.jpg"))[:150]:
            shutil.copy(src, tree / folder / src.name)
    data = next((unlabeled_dir / "MIT").glob("*.jpg")).read_bytes()
    (tree / "broken").mkdir()
    (tree / "broken" / "half.jpg").write_bytes(data[: len(data) // 2])
    (tree / "broken" / "text.jpg").write_text("not an image\n")
    return tree


def test_image_import_identical_on_ray(crops, tmp_path, local_ray):
    roots = {engine: tmp_path / engine for engine in ("local", "ray")}
    for engine, root in roots.items():
        args = ["build-shards", "--from-images", str(crops), "--root", str(root), "--max-samples", "64"]
        assert pipeline.main([*args, "--engine", engine]) == 0
        saved = yaml.safe_load((root / "settings" / "shards.yaml").read_text())["shards"]
        assert saved["engine"] == engine and saved["address"] is None
    assert outputs(roots["local"]) == outputs(roots["ray"])

    keys = read_keys(roots["ray"])
    files = sorted(p.relative_to(crops) for p in crops.rglob("*.jpg") if p.parent.name != "broken")
    assert keys == sorted(f"{p.parent}_{p.stem}" for p in files) and len(keys) == 300
    records = pd.read_parquet(roots["ray"] / "shards" / "samples.parquet").set_index("source_id")
    assert records.loc["broken/half.jpg", "status"] == "corrupt"
    assert records.loc["broken/text.jpg", "status"] == "corrupt"
    assert records.loc["broken/half.jpg", "reason"].startswith("OpenCV")
    assert (records["status"] == "ok").sum() == 300


def test_address_needs_the_ray_engine(tmp_path, capsys):
    assert (
        pipeline.main(
            ["build-shards", "--root", str(tmp_path), "--from-images", str(tmp_path), "--address", "auto"]
        )
        == 2
    )
    assert "needs --engine ray" in capsys.readouterr().err


def test_bench_engine_rows(footage, crops, tmp_path, local_ray):
    """bench/shard_throughput.py --engines on this module's Ray: both sources, both engines, costs per item."""
    from bench.shard_throughput import engine_rows

    source, valid, readable = footage
    ok = sum(1 for r in valid.itertuples() if r.frame < readable[r.video_id])
    rows = engine_rows(crops, source, tmp_path, workers=2, max_samples=64)
    assert [r["samples"] for r in rows] == [300, 300, ok, ok]
    assert [r["ratio"] is None for r in rows] == [True, False, True, False]
    assert all(r["worker_ms_per_image"] > 0 for r in rows[:2])
    assert all(r["videos"] == 5 and r["worker_s_per_video"] > 0 for r in rows[2:])
