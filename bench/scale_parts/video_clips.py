"""Small real clips for the ``videos`` part of ``bench/scale.py``, cut from the sample footage.

Every clip is real street footage (``../shared/data/videos``): a window of ``FRAMES`` consecutive
frames of one of the longer samples, shrunk to ``SIZE`` (above filter's 64x128 minimum) and
encoded with x264, 10-35 KB, so that tens of thousands of downloads and copies fit on a disk.
Windows start at evenly spaced frames, every other one mirrored (which changes every pHash); some
windows of slow footage still look alike: of 200, filter keeps 140 (the rest near duplicates, or
static where the footage barely moves). Two more exercise filter's other rules: one frame
held for ``FRAMES`` frames (``static``) and a window too short (``too_short``). The clips are made
once per scratch folder and reused by every size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.media.frames import count_frames, read_frames

FRAMES = 104  # filter keeps >= 100
SHORT = 60
SIZE = (228, 128)  # width, height: 16:9, as tall as filter's minimum
SOURCES = ("one-by-one-person-detection.mp4", "street-crossing.mp4", "concourse-walkers.mp4")
FPS = 25
CRF = 32


def encode(
    frames: list[np.ndarray], path: Path, size: tuple[int, int] = SIZE, fps: int = FPS, crf: int = CRF
) -> None:
    """``frames`` (BGR, ``size``) as an H.264 mp4 at ``fps``, written to ``path``."""
    import av

    tmp = path.with_name(path.name + ".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)


def windows(data: Path, count: int) -> list[tuple[str, int, bool]]:
    """``count`` (source, first frame, mirrored) windows, spread over the sources by their length."""
    lengths = {name: count_frames(data / name) for name in SOURCES}
    usable = {name: n - FRAMES for name, n in lengths.items() if n > FRAMES}
    total = sum(usable.values())
    chosen: list[tuple[str, int, bool]] = []
    for k, (name, span) in enumerate(usable.items()):
        share = count - len(chosen) if k == len(usable) - 1 else round(count * span / total)
        starts = np.linspace(0, span, max(share, 0) // 2 + max(share, 0) % 2).round().astype(int)
        pairs = [(name, int(s), mirrored) for s in starts for mirrored in (False, True)]
        chosen += pairs[: max(share, 0)]
    return chosen[:count]


def make_clips(folder: Path, data: Path, count: int) -> list[Path]:
    """``count`` distinct moving clips plus a static and a short one under ``folder`` (reused when
    ``folder/clips.json`` already lists them); returns their paths, the moving ones first."""
    import cv2

    listing = folder / "clips.json"
    if listing.is_file():
        names = json.loads(listing.read_text())
        if len(names) == count + 2 and all((folder / n).is_file() for n in names):
            return [folder / n for n in names]
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    by_source: dict[str, list[tuple[int, bool]]] = {}
    for name, start, mirrored in windows(data, count):
        by_source.setdefault(name, []).append((start, mirrored))
    for k, (source, wanted) in enumerate(by_source.items()):
        needed = sorted({s + i for s, _ in wanted for i in range(FRAMES)})
        small = {
            i: cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA)
            for i, f in read_frames(data / source, needed)
        }
        for start, mirrored in wanted:
            frames = [small[start + i] for i in range(FRAMES)]
            names.append(f"{Path(source).stem}-{start:04d}{'-mirrored' if mirrored else ''}.mp4")
            encode([f[:, ::-1].copy() for f in frames] if mirrored else frames, folder / names[-1])
        if k == 0:  # the rule clips, from the first window of the first source
            first = wanted[0][0]
            encode([small[first]] * FRAMES, folder / "static.mp4")
            encode([small[first + i] for i in range(SHORT)], folder / "short.mp4")
    names += ["static.mp4", "short.mp4"]
    listing.write_text(json.dumps(names))
    return [folder / n for n in names]
