"""The inputs of part ``detections`` of ``bench/scale.py``: one real clip, linked as many videos.

Every video is a hard link to one short clip cut from ``street-crossing.mp4``: frames 100-220
(121 frames, so detect's every-100th sampling decodes two), the 192x320 column of the crossing
where walkers pass, H.264 with a keyframe every 50 frames. OpenCV's HOG finds the walkers on it at
about 15 ms a frame, so detect and calibration run on real pixels at a cost a benchmark can pay.
The links sit outside the measured roots (manifests name them by absolute path, which readers
accept: ``root / path``), 1,000 to a folder, a fresh copy of the clip every ``LINKS_PER_COPY``
links (ext4 allows 65,000 links to one file).

- :func:`detect_inputs`: ``video_filter.parquet`` naming N kept videos, as filter writes it.
- :func:`release_inputs`: a release bundle ``dets.pkl`` of N videos in the official format (a dict
  keyed by ``country+city+id``, each ``{frame_id: [(obj_idx, {"bbox", "score"})]}``, 60-120 boxes a
  video, 90 on average: LUPerson has 4,180,243 crops of 46,260 videos, 90.4) and the
  ``videos.parquet`` ``crawl --from-vnames`` would write for it: every ``DOWNLOADED_EVERY``-th video
  downloaded (a link to the clip), the others ``unavailable``, so real pixels are cut for a tenth
  of the videos while the plan, the samples and the report hold every released box.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np

from common.detectors.build import build_detector
from common.manifests import video_filter, videos
from common.media.frames import read_frames

SOURCE = "street-crossing.mp4"
FIRST_FRAME, N_FRAMES, FPS = 100, 121, 30
COLUMNS, ROWS = (240, 432), (40, 360)  # x and y ranges of the crop: 192x320
LINKS_PER_COPY = 10_000
DOWNLOADED_EVERY = 10
PLACES = [("usa", "boston"), ("uk", "london"), ("fr", "paris"), ("jp", "tokyo"), ("br", "riodejaneiro")]
RELEASE_IDS = range(3, N_FRAMES - 1, 4)  # released frame ids with boxes: offsets -2..+2 stay in the clip
JITTER = ((0.0, 0.0), (2.0, -2.0), (-2.0, 2.0))  # each HOG box and two shifted copies, as obj_idx


def cut_clip(data: Path, out: Path) -> Path:
    """The clip of the module doc at ``out`` (made once)."""
    import av

    if out.is_file():
        return out
    tmp = out.with_suffix(".tmp.mp4")
    with av.open(str(data / "videos" / SOURCE)) as inp, av.open(str(tmp), "w") as dst:
        stream = dst.add_stream("libx264", rate=FPS, options={"crf": "23", "preset": "ultrafast", "g": "50"})
        stream.width, stream.height, stream.pix_fmt = COLUMNS[1] - COLUMNS[0], ROWS[1] - ROWS[0], "yuv420p"
        for i, frame in enumerate(inp.decode(video=0)):
            if i >= FIRST_FRAME + N_FRAMES:
                break
            if i >= FIRST_FRAME:
                pixels = frame.to_ndarray(format="bgr24")[slice(*ROWS), slice(*COLUMNS)]
                image = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="bgr24")
                dst.mux(stream.encode(image))
        dst.mux(stream.encode())
    os.replace(tmp, out)
    return out


def video_id(i: int) -> str:
    """An 11-character YouTube-like id, the same for ``i`` in every run."""
    return base64.urlsafe_b64encode(hashlib.sha256(str(i).encode()).digest()).decode()[:11]


def link_videos(clip: Path, folder: Path, ids: list[str]) -> list[str]:
    """Absolute paths of hard links (copies where links fail) to ``clip``, one per id."""
    paths, source = [], clip
    for i, vid in enumerate(ids):
        target = folder / f"{i // 1000:03d}" / f"{vid}.mp4"
        if i % 1000 == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
        if i % LINKS_PER_COPY == 0:
            source = folder / f"clip-{i // LINKS_PER_COPY:03d}.mp4"
            shutil.copyfile(clip, source)
        if not target.exists():
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        paths.append(str(target))
    return paths


def detect_inputs(clip: Path, base: Path, root: Path, n: int) -> None:
    """``root/video_filter.parquet`` naming ``n`` kept videos linked under ``base/videos``."""
    import pandas as pd

    ids = [video_id(i) for i in range(n)]
    paths = link_videos(clip, base / "videos", ids)
    width, height = COLUMNS[1] - COLUMNS[0], ROWS[1] - ROWS[0]
    rows = pd.DataFrame({"video_id": ids, "path": paths, "city": [PLACES[i % 5][1] for i in range(n)]})
    rows = rows.assign(keep=True, status="ok", reason="", n_frames=N_FRAMES, fps=float(FPS))
    root.mkdir(parents=True, exist_ok=True)
    video_filter.write(root, rows.assign(width=width, height=height))


def release_boxes(clip: Path) -> list[tuple[int, int, np.ndarray, float]]:
    """``(frame_id, obj_idx, bbox, score)``: HOG's boxes on the released frames of the clip, each with
    its shifted copies (the release's boxes came from a detector too; calibration's HOG agrees)."""
    hog = build_detector("hog")
    frames = dict(read_frames(clip, [f - 1 for f in RELEASE_IDS]))
    boxes = []
    for f in RELEASE_IDS:
        for n, found in enumerate(hog([frames[f - 1]])[0]):
            for k, (dx, dy) in enumerate(JITTER):
                bbox = np.clip(found[:4] + [dx, dy, dx, dy], 0, [191, 319, 192, 320]).astype(np.float32)
                boxes.append((f, n * len(JITTER) + k, bbox, float(found[4])))
    return boxes


def release_inputs(clip: Path, base: Path, roots: list[Path], n: int) -> Path:
    """``base/dets.pkl`` of ``n`` videos and, in each of ``roots``, the ``videos.parquet`` of
    ``crawl --from-vnames`` for them (see the module doc); returns the bundle's path."""
    template = release_boxes(clip)
    counts = np.random.default_rng(0).integers(60, 121, n)
    ids = [video_id(i) for i in range(n)]
    vnames = [
        f"{c}+{city}+{vid}" for vid, (c, city) in zip(ids, (PLACES[i % 5] for i in range(n)), strict=True)
    ]
    bundle: dict[str, dict] = {}
    for vname, count in zip(vnames, counts, strict=True):
        dets: dict[int, list] = {}
        for k in range(count):
            frame_id, obj_idx, bbox, score = template[k % len(template)]
            obj_idx += k // len(template) * 1000  # past the template: the same boxes again, new indices
            det = {"bbox": bbox.copy(), "score": np.float32(score)}  # its own objects, as in a real bundle
            dets.setdefault(frame_id, []).append((obj_idx, det))
        bundle[vname] = dets
    bundle_path = base / "dets.pkl"
    with open(bundle_path, "wb") as f:
        pickle.dump(bundle, f, protocol=4)
    downloaded = [i for i in range(n) if i % DOWNLOADED_EVERY == 0]
    paths = dict(
        zip(downloaded, link_videos(clip, base / "videos", [ids[i] for i in downloaded]), strict=True)
    )
    rows = [
        videos.new_row(vid, f"https://www.youtube.com/watch?v={vid}", vname=vname, country=c, city=city)
        | (
            {"status": "ok", "path": paths[i]}
            if i in paths
            else {"status": "unavailable", "reason": "Video unavailable"}
        )
        for i, (vid, vname) in enumerate(zip(ids, vnames, strict=True))
        for c, city, _ in [vname.split("+")]
    ]
    for root in roots:
        root.mkdir(parents=True, exist_ok=True)
        videos.save(root, rows)
    return bundle_path
