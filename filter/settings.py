"""Settings of the video filter stage; defaults are the paper's §3.1 values."""

from __future__ import annotations

from dataclasses import dataclass

from common.detectors.hog import WINDOW
from common.errors import SettingsError
from common.settings import EngineSettings, check_nonnegative, check_positive, setting


@dataclass(frozen=True)
class FilterSettings(EngineSettings):
    min_frames: int = setting(100, "drop videos with fewer frames (the paper: 100)")
    min_frame_width: int = setting(
        WINDOW[0], "drop videos whose frames are narrower (default: the HOG detector's 64x128 window)"
    )
    min_frame_height: int = setting(
        WINDOW[1], "drop videos whose frames are shorter (default: the HOG detector's 64x128 window)"
    )
    static_frames: int = setting(5, "evenly spaced frames compared for the static test (paper: 5)")
    static_width: int = setting(64, "frames are shrunk to this width before comparing (averages out noise)")
    static_tolerance: float = setting(
        1.0,
        "mean absolute pixel difference (0-255) at or under which two shrunk frames count as identical"
        " (docs/filter.md: re-encoded stills 0.03-0.68, real footage >= 1.80)",
    )
    near_duplicate: bool = setting(True, "flag re-uploads by perceptual hashes of a few frames")
    near_duplicate_distance: int = setting(
        6, "max mean Hamming distance (bits of 64) between frame hashes of near duplicates"
    )
    vr_title_keywords: tuple[str, ...] = setting(
        ("360", "vr", "virtual reality", "equirectangular", "3d sbs"),
        "title words that mark a 360/VR video",
    )
    workers: int = setting(2, "parallel worker processes")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(
            self,
            "min_frames",
            "min_frame_width",
            "min_frame_height",
            "static_frames",
            "static_width",
            "workers",
        )
        check_nonnegative(self, "static_tolerance", "near_duplicate_distance")
        if self.static_frames < 2:
            raise SettingsError(f"static_frames must be >= 2 (frames compared), got {self.static_frames}")
