"""Settings of the shard writer, the statistics and the verifier."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from common.errors import SettingsError
from common.settings import EngineSettings, check_nonnegative, check_positive, check_range, group, setting
from shards.write.faces import Encoding, FaceBlur

# The build-shards settings that name something to import (a folder of crops, the LUPerson LMDB,
# the released boxes): one at most; with none, the build cuts the root's own detections and the
# command line runs filter and detect first.
IMPORTER_FIELDS = ("from_images", "from_lmdb", "from_dets")
SIZE_PATTERN = re.compile(r"^([1-9][0-9]*)x([1-9][0-9]*)$")


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)`` (width, height); ``SettingsError`` when malformed."""
    m = SIZE_PATTERN.match(text.strip().lower())
    if not m:
        raise SettingsError(f"dets_size must be WIDTHxHEIGHT in pixels, e.g. 1280x720, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def check_tracklet_pattern(text: str, from_images: str | None) -> None:
    """``SettingsError`` unless ``text`` is a regex with a named group ``tracklet`` given with
    ``--from-images``."""
    if not from_images:
        raise SettingsError("tracklet_pattern applies to --from-images only")
    try:
        groups = re.compile(text).groupindex
    except re.error as e:
        raise SettingsError(f"tracklet_pattern {text!r} is not a regular expression: {e}") from None
    if "tracklet" not in groups:
        raise SettingsError(f"tracklet_pattern {text!r} needs a named group (?P<tracklet>...)")


@dataclass(frozen=True)
class Calibration:
    """How ``--from-dets`` checks each video against a person detector before cutting it
    (``shards/release/calibrate.py``); flags ``--calibrate-*`` and ``--cut-unverified``."""

    detector: Literal["hog", "yolo"] = setting(
        "hog", "calibration's person detector (hog: CPU, no weights, deterministic; yolo: the release's kind)"
    )
    weights: str = setting("yolov5xu.pt", "with --calibrate-detector yolo: weight name or local .pt")
    device: str = setting("auto", "with --calibrate-detector yolo: auto, cpu, cuda or cuda:N")
    frames: int = setting(4, "released frames per video calibration decodes (each at offsets -2..+2)")
    height: int = setting(
        720,
        "frames are resized to this height for the detector (HOG finds people >= 128 px tall; 0: as decoded)",
    )
    min_agreement: float = setting(
        0.4, "mean best IoU of released boxes with detections a video needs to be verified"
    )
    min_margin: float = setting(
        0.1, "lead over the runner-up scale (and over offset 0 for a shift) a video needs to be verified"
    )
    rescale: bool = setting(
        True, "let calibration rescale the boxes (no: a video another scale fits clearly is a mismatch)"
    )
    cut_unverified: bool = setting(
        False, "also cut videos calibration did not verify, as --calibrate none would", flag="cut_unverified"
    )

    def __post_init__(self) -> None:
        check_positive(self, "frames")
        check_nonnegative(self, "height")
        check_range(self, "min_agreement", 0, 1)
        check_range(self, "min_margin", 0, 1)


@dataclass(frozen=True)
class ShardSettings(EngineSettings):
    from_images: str | None = setting(None, "import a folder tree of person crops instead of detections")
    tracklet_pattern: str | None = setting(
        None,
        "with --from-images: a regex with a named group 'tracklet' matched against each image's path "
        "relative to the folder; crops of one tracklet share its text (docs/shards.md)",
    )
    from_lmdb: str | None = setting(None, "import the official LUPerson LMDB release (with keys.pkl)")
    from_dets: str | None = setting(
        None, "cut the released LUPerson boxes: a bundled dets.pkl or a folder of <country>+<city>+<id>.pkl"
    )
    dets_size: str | None = setting(
        None,
        "WIDTHxHEIGHT the released boxes were found at (when a pickle states none): rescale to the video",
    )
    calibrate: Literal["detector", "none"] = setting(
        "detector",
        "--from-dets: check each video against a person detector before cutting it and cut with the scale "
        "and frame offset that agree (none: cut the boxes as they are)",
    )
    calibration: Calibration = group(
        Calibration, "calibrate", "--from-dets with --calibrate detector: how each video is checked"
    )
    jpeg_quality: int = setting(95, "JPEG quality of re-encoded crops")
    blur_faces: bool = setting(
        False, "blur every face found (BlazeFace, and detect's head keypoints) before a crop is encoded"
    )
    face: FaceBlur = group(FaceBlur, "face", "--blur-faces: how the faces are found")
    max_samples: int = setting(10000, "samples per shard at most")
    max_bytes: int = setting(1_000_000_000, "bytes per shard at most")
    workers: int = setting(2, "worker processes (with --engine ray and no --address: the local Ray's CPUs)")
    replace_shards: bool = setting(
        False,
        "when the root holds shards of another plan: build this plan in shards.next, then swap it in "
        "(without it the build is refused and nothing changes)",
        saved=False,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "max_samples", "max_bytes", "workers")
        check_range(self, "jpeg_quality", 1, 100)
        given = [name for name in IMPORTER_FIELDS if getattr(self, name)]
        if len(given) > 1:
            raise SettingsError(
                f"give one of --from-images, --from-lmdb, --from-dets, not {' and '.join(given)}"
            )
        if self.dets_size is not None:
            if not self.from_dets:
                raise SettingsError("--dets-size applies to --from-dets only")
            parse_size(self.dets_size)
        if self.tracklet_pattern is not None:
            check_tracklet_pattern(self.tracklet_pattern, self.from_images)

    def calibrated(self) -> Calibration | None:
        """The calibration ``--from-dets`` cuts with (``None`` for ``--calibrate none``)."""
        return None if self.calibrate == "none" else self.calibration

    def dets_plan(self) -> dict[str, Any]:
        """What of ``--from-dets`` a plan fingerprints beyond the boxes: the stated size and the
        calibration, its settings whole."""
        return {
            "dets_size": self.dets_size,
            "calibrate": self.calibrate,
            "calibration": asdict(self.calibration),
        }

    def encoding(self) -> Encoding:
        """How the workers encode crops: the JPEG quality and the face blurring."""
        return Encoding(self.jpeg_quality, self.blur_faces, self.face)

    def encoding_plan(self) -> dict[str, Any]:
        """What of the encoding the shards' plan fingerprints (blurring only when on: a build
        without it keeps the fingerprint of the plain encoding)."""
        plan: dict[str, Any] = {"jpeg_quality": self.jpeg_quality}
        if self.blur_faces:
            plan["blur_faces"] = self.face.plan()
        return plan


@dataclass(frozen=True)
class ExportLmdbSettings:
    output: str | None = setting(None, "folder for lmdb/ and keys.pkl (default: <root>/lup_lmdb)")
    keys_format: Literal["dict", "list"] = setting(
        "dict", "keys.pkl as {'keys': [...]} (lup_moco's loader) or a plain list (LUP/convert_lmdb.py)"
    )
    map_size: int = setting(0, "LMDB map size in bytes (0: enough for the shards, computed)")

    def __post_init__(self) -> None:
        check_nonnegative(self, "map_size")


@dataclass(frozen=True)
class StatsSettings:
    grid_size: int = setting(8, "example crops per side of the figure grid (paper's Figure 2)")
    seed: int = setting(0, "which crops the example grid shows")
    report_examples: int = setting(8, "example boxes per detection status in report.html")

    def __post_init__(self) -> None:
        check_positive(self, "grid_size")
        check_nonnegative(self, "report_examples")


@dataclass(frozen=True)
class VerifySettings:
    decode: bool = setting(True, "decode every image, not only check sha256")
    workers: int = setting(2, "shards checked in parallel")

    def __post_init__(self) -> None:
        check_positive(self, "workers")


@dataclass(frozen=True)
class TakedownSettings:
    videos: tuple[str, ...] = setting((), "video ids: every crop of each is taken down")
    keys: tuple[str, ...] = setting(
        (), "crop keys to take down (<video_id>_<frame:08d>_<box:03d>, or any key of samples.parquet)"
    )
    from_file: str | None = setting(
        None, "a file of video ids and crop keys, one a line ('#' starts a comment)"
    )
    reason: str = setting("", "why (required with ids): kept in samples.parquet and <root>/takedowns.jsonl")
