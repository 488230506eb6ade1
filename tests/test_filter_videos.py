"""The filter stage end to end on the real sample videos plus clips this test makes from them."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from reference import opencv_frames

import pipeline
from common.fanout import fanned_files, fanned_path
from filter.settings import FilterSettings
from filter.videos import filter_videos


def encode(path: Path, frames: list[np.ndarray], crf: int, size: tuple[int, int] | None = None) -> Path:
    """H.264 MP4 of ``frames`` (moov box at the end, as FFmpeg writes by default)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": str(crf), "preset": "ultrafast"})
        stream.height, stream.width = (frames[0].shape[:2]) if size is None else (size[1], size[0])
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            image = frame if size is None else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def add_spherical_box(src: Path, dst: Path) -> Path:
    """Copy of an MP4 with a Spherical Video v2 ``sv3d`` box (equirectangular) in its sample entry.

    The moov box is at the end, so growing it moves no sample data; every enclosing box's size
    grows by the inserted bytes.
    """
    data = src.read_bytes()
    full = b"\0\0\0\0"  # version + flags of a full box
    sv3d = box(
        b"sv3d",
        box(b"svhd", full + b"test\0")
        + box(b"proj", box(b"prhd", full + bytes(12)) + box(b"equi", full + bytes(16))),
    )
    parents, offset, end = [], 0, len(data)
    while True:  # walk moov/trak/mdia/minf/stbl down to the first stsd entry
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
            parents.append(offset)
            offset, end = offset + 8, offset + size
        elif kind == b"stsd":
            parents += [offset, offset + 16]
            break
        else:
            offset += size
            assert offset < end, "no stsd box"
    entry = parents[-1]
    insert_at = entry + struct.unpack(">I", data[entry : entry + 4])[0]
    out = bytearray(data[:insert_at] + sv3d + data[insert_at:])
    for p in parents:
        out[p : p + 4] = struct.pack(">I", struct.unpack(">I", out[p : p + 4])[0] + len(sv3d))
    dst.write_bytes(bytes(out))
    return dst


@pytest.fixture(scope="module")
def workspace(videos_dir, tmp_path_factory):
    """A workspace whose videos.parquet lists the sample videos and the made clips."""
    root = tmp_path_factory.mktemp("filter_ws")
    clips = root / "videos"
    clips.mkdir()
    street = opencv_frames(videos_dir / "street-crossing.mp4")
    data = (videos_dir / "street-crossing.mp4").read_bytes()  # moov first: a cut keeps the index
    (clips / "truncated.mp4").write_bytes(data[: len(data) // 2])
    data = (videos_dir / "pedestrians.mp4").read_bytes()  # moov last: a cut loses it
    (clips / "truncated_tail.mp4").write_bytes(data[: len(data) // 2])
    (clips / "notavideo.mp4").write_text("this is not a video\n")
    encode(clips / "static.mp4", [street[300]] * 120, crf=23)
    encode(clips / "street120.mp4", street[:120], crf=20)
    encode(clips / "street120_small.mp4", street[:120], crf=32, size=(320, 180))
    add_spherical_box(clips / "street120.mp4", clips / "street120_vr.mp4")
    rows = [{"video_id": p.stem, "path": str(p.resolve())} for p in sorted(videos_dir.iterdir())]
    rows += [{"video_id": p.stem, "path": f"videos/{p.name}"} for p in sorted(clips.iterdir())]
    rows.append({"video_id": "one-by-one-person-detection", "path": str(videos_dir / "pedestrians.mp4")})
    rows.append({"video_id": "failed_download", "path": "videos/missing.mp4", "status": "http_error"})
    table = pd.DataFrame(rows)
    table["status"] = table.get("status").fillna("ok")
    table["city"] = "Sample City"
    table["title"] = "street walk"
    table.loc[table["video_id"] == "street-crossing", "title"] = "London street crossing 4K"
    table["reason"] = ""
    table.to_parquet(root / "videos.parquet")
    return root


@pytest.fixture(scope="module")
def result(workspace):
    """The filter run through the command line (2 worker processes), read back with pandas."""
    assert pipeline.main(["filter", "--root", str(workspace), "--workers", "2"]) == 0
    table = pd.read_parquet(workspace / "video_filter.parquet")
    return {r.video_id if i != len(table) - 1 else "dup": r for i, r in enumerate(table.itertuples())}


def test_every_ok_row_once_in_input_order(workspace, result):
    inputs = pd.read_parquet(workspace / "videos.parquet")
    table = pd.read_parquet(workspace / "video_filter.parquet")
    assert table["video_id"].tolist() == inputs.loc[inputs["status"] == "ok", "video_id"].tolist()
    assert "failed_download" not in set(table["video_id"])
    assert table["keep"].tolist() == (table["status"] == "ok").tolist()


def test_short_and_long_sample_videos(result, videos_dir):
    assert result["pedestrians"].status == "too_short"
    assert result["pedestrians"].n_frames == len(opencv_frames(videos_dir / "pedestrians.mp4")) == 96
    assert result["one-by-one-person-detection"].keep
    assert result["one-by-one-person-detection"].n_frames == 1394
    assert (result["one-by-one-person-detection"].width, result["one-by-one-person-detection"].height) == (
        768,
        432,
    )
    assert result["street-crossing"].keep and result["concourse-walkers"].keep


@pytest.mark.parametrize("gif", ["people-detection", "person-bicycle-car-detection"])
def test_gifs_are_read(result, videos_dir, gif):
    assert result[gif].status == "too_short"
    assert result[gif].n_frames == len(opencv_frames(videos_dir / f"{gif}.gif"))


@pytest.mark.parametrize("clip", ["truncated", "truncated_tail", "notavideo"])
def test_broken_files_are_unreadable(result, clip):
    assert result[clip].status == "unreadable" and not result[clip].keep
    if clip == "truncated":
        assert "truncated" in result[clip].reason


def test_static_clip_from_one_real_frame(result, workspace, videos_dir):
    assert result["static"].status == "static"
    # both sides of the tolerance, measured independently with OpenCV on the probe frames
    tolerance = FilterSettings().static_tolerance
    for name, path, below in [
        ("static", workspace / "videos" / "static.mp4", True),
        ("one-by-one-person-detection", videos_dir / "one-by-one-person-detection.mp4", False),
    ]:
        frames = opencv_frames(path)
        picks = np.linspace(0, len(frames) - 1, 5).round().astype(int)
        small = [cv2.resize(frames[i], (64, 36), interpolation=cv2.INTER_AREA).astype(int) for i in picks]
        diffs = [np.abs(s - small[0]).mean() for s in small[1:]]
        assert (max(diffs) <= tolerance) == below, (name, diffs)
        assert f"{max(diffs):.3f}" in result[name].reason


def test_reupload_is_near_duplicate(result):
    assert result["street120"].keep
    assert result["street120_small"].status == "near_duplicate"
    assert result["street120_small"].reason.startswith("like street120 ")


def test_spherical_metadata_is_vr(result):
    assert (result["street120_vr"].status, result["street120_vr"].reason) == ("vr", "metadata:spherical")


def test_same_id_is_duplicate(result):
    assert result["dup"].status == "duplicate" and result["dup"].video_id == "one-by-one-person-detection"


def test_rerun_resumes_from_probe_cache(workspace, result):
    first = pd.read_parquet(workspace / "video_filter.parquet")
    (workspace / "video_filter.parquet").unlink()  # as if killed before the end
    cached = sorted(p.name for p in fanned_files(workspace / "filter_probes"))
    assert "street120.json" in cached and "failed_download.json" not in cached
    assert list((workspace / "filter_probes").glob("*.json")) == []  # one bucket folder per id hash
    fanned_path(workspace / "filter_probes", "street120", "street120.json").unlink()
    summary = filter_videos(FilterSettings(workers=1), workspace)
    pd.testing.assert_frame_equal(pd.read_parquet(workspace / "video_filter.parquet"), first)
    assert summary["kept"] == 4 and summary["dropped"]["unreadable"] == 3


def test_missing_manifest_is_a_usage_error(tmp_path, capsys):
    assert pipeline.main(["filter", "--root", str(tmp_path)]) == 2
    assert "run crawl first" in capsys.readouterr().err
