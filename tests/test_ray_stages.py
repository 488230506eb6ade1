"""crawl, filter and detect write the same manifests on the local pool and on a local Ray instance.

The demo chain (configs/demo.yaml: HOG, BlazePose keypoints, its frame_step) runs once per engine on
the sample footage: crawl ``--urls`` of the local files, then filter, then detect. One Ray
instance (2 CPUs) serves the whole module.
"""

from __future__ import annotations

import filecmp
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

import pipeline
from common.manifests import boxes as box_file

DEMO = Path(pipeline.__file__).resolve().parent / "configs" / "demo.yaml"
ENGINES = ("local", "ray")
STAGES = ("crawl", "filter", "detect")
STEP = yaml.safe_load(DEMO.read_text())["detect"]["frame_step"]


@pytest.fixture(scope="module")
def sources(videos_dir) -> list[Path]:
    return sorted(videos_dir.iterdir())


@pytest.fixture(scope="module")
def roots(sources, tmp_path_factory, local_ray) -> dict[str, Path]:
    """One workspace per engine, each through crawl -> filter -> detect with that engine."""
    urls = tmp_path_factory.mktemp("urls") / "urls.txt"
    urls.write_text("".join(f"{p}\n" for p in sources))
    out = {}
    for engine in ENGINES:
        root = tmp_path_factory.mktemp(engine)
        for stage in STAGES:
            extra = ["--urls", str(urls)] if stage == "crawl" else []
            args = [stage, "--root", str(root), "--config", str(DEMO), "--engine", engine, *extra]
            assert pipeline.main(args) == 0
        out[engine] = root
    return out


def same_table(roots: dict[str, Path], name: str) -> pd.DataFrame:
    """The two engines' ``name`` as DataFrames (asserted equal) and as bytes (asserted equal)."""
    local, ray = (pd.read_parquet(roots[e] / name) for e in ENGINES)
    pd.testing.assert_frame_equal(local, ray)
    assert (roots["local"] / name).read_bytes() == (roots["ray"] / name).read_bytes()
    return local


def test_each_stage_ran_on_its_engine(roots):
    for engine, root in roots.items():
        for stage in STAGES:
            saved = yaml.safe_load((root / "settings" / f"{stage}.yaml").read_text())
            assert saved[stage]["engine"] == engine and saved[stage]["address"] is None


def test_crawl_manifests_identical(roots, sources):
    videos = same_table(roots, "videos.parquet")
    assert videos["url"].tolist() == [str(p) for p in sources]
    assert (videos["status"] == "ok").all()
    for row, source in zip(videos.itertuples(), sources, strict=True):
        assert not Path(row.path).is_absolute()  # relative to the workspace in both
        assert row.bytes == source.stat().st_size
        for root in roots.values():  # the Ray tasks copied the files into the workspace too
            assert filecmp.cmp(root / row.path, source, shallow=False)


def test_filter_manifests_identical(roots):
    table = same_table(roots, "video_filter.parquet")
    videos = pd.read_parquet(roots["local"] / "videos.parquet")
    assert table["video_id"].tolist() == videos["video_id"].tolist()
    # the sample footage: three clips >= 100 frames kept, the two GIFs and a 96-frame clip too short
    assert table["keep"].tolist() == (table["n_frames"] >= 100).tolist()
    assert table["keep"].sum() == 3 and set(table["status"]) == {"ok", "too_short"}


def test_detections_identical(roots):
    kept = pd.read_parquet(roots["local"] / "video_filter.parquet").query("keep")
    names = sorted(f"{v}.parquet" for v in kept["video_id"])
    for root in roots.values():
        assert sorted(p.name for p in box_file.files(root)) == names
    boxes = [same_table(roots, box_file.path_of(Path(), v).as_posix()) for v in kept["video_id"]]
    summary = same_table(roots, "detections.parquet").set_index("video_id")
    for vid, n_frames, table in zip(kept["video_id"], kept["n_frames"], boxes, strict=True):
        assert summary.loc[vid, "frames_sampled"] == len(range(0, n_frames, STEP))
        assert set(table["frame"]) <= set(range(0, n_frames, STEP))
        assert (
            summary.loc[vid, "boxes"] == len(table)
            and summary.loc[vid, "valid_boxes"] == table["valid"].sum()
        )
    assert sum(len(t) for t in boxes) > 0 and sum(t["valid"].sum() for t in boxes) > 0


def test_ray_detect_resumes_a_lost_video(roots):
    """A video whose file is gone (a killed run) is redone on Ray and comes back byte-identical."""
    root = roots["ray"]
    summary = pd.read_parquet(root / "detections.parquet")
    smallest = summary.sort_values("frames_sampled")["video_id"].iloc[0]
    target = box_file.path_of(root, smallest)
    before = {p.name: p.read_bytes() for p in box_file.files(root)}
    target.unlink()
    args = ["detect", "--root", str(root), "--config", str(DEMO), "--engine", "ray"]
    assert pipeline.main(args) == 0
    assert {p.name: p.read_bytes() for p in box_file.files(root)} == before
    assert pq.read_table(root / "detections.parquet").equals(
        pq.read_table(roots["local"] / "detections.parquet")
    )


@pytest.mark.gpu
def test_gpu_actors_write_the_same_detections(roots, tmp_path):
    """With a GPU, Ray detection runs one actor per GPU that decodes in its own worker processes."""
    import shutil

    import torch

    from detect.run import detect
    from detect.settings import DetectSettings

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    shutil.copytree(roots["local"] / "videos", tmp_path / "videos")
    shutil.copy(roots["local"] / "video_filter.parquet", tmp_path)
    cfg = DetectSettings(detector="hog", keypoints="none", frame_step=25, batch_size=8, engine="ray")
    summary = detect(cfg, tmp_path)
    assert summary["ray_actors"]["gpus_each"] == 1 and summary["ray_actors"]["cpus_each"] == cfg.workers
    for path in sorted(box_file.files(roots["local"])):
        assert (box_file.path_of(tmp_path, path.stem)).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("stage", STAGES)
def test_address_needs_the_ray_engine(stage, tmp_path, capsys):
    assert pipeline.main([stage, "--root", str(tmp_path), "--address", "auto"]) == 2
    assert "needs --engine ray" in capsys.readouterr().err
