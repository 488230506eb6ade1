"""Settings of the detection stage; defaults are the paper's §3.1 values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.errors import SettingsError
from common.settings import EngineSettings, check_nonnegative, check_positive, check_range, group, setting

# mmpose's published HRNet-W32 COCO 256x192 top-down model (mmpose 0.x key layout). Its name pins
# the first 8 hex digits of its sha256 (c78dce93): detect.hrnet checks them before loading it.
MMPOSE_HRNET_W32_COCO = (
    "https://download.openmmlab.com/mmpose/top_down/hrnet/hrnet_w32_coco_256x192-c78dce93_20200708.pth"
)


@dataclass(frozen=True)
class TrackSettings:
    """How ``--tracks`` links boxes into tracklets (``detect/track_windows.py``); flags ``--track-*``."""

    step: int = setting(5, "with --tracks: detect every N-th frame around each sampled frame")
    window: int = setting(
        25, "with --tracks: frames before and after each sampled frame that are tracked (< frame_step / 2)"
    )
    max_crops: int = setting(4, "with --tracks: crops a tracklet keeps at most (its sampled box included)")
    min_gap: int = setting(10, "with --tracks: frames between two crops of a tracklet at least")

    def __post_init__(self) -> None:
        check_positive(self, "step", "max_crops")
        check_nonnegative(self, "window", "min_gap")


@dataclass(frozen=True)
class DetectSettings(EngineSettings):
    frame_step: int = setting(100, "sample every N-th frame (the paper: 100)")
    detector: Literal["yolo", "hog"] = setting("yolo", "person detector")
    detector_weights: str = setting(
        "yolov5xu.pt", "ultralytics weight name or local .pt file (YOLOv5 COCO), read without running code"
    )
    keypoints: Literal["hrnet", "mmpose", "blazepose", "none"] = setting(
        "hrnet",
        "keypoint model (hrnet: the paper's HRNet-W32; blazepose: offline BlazePose GHUM on LiteRT); "
        "'none' skips the head/body rules (recorded in the outputs)",
    )
    pose_weights: str | None = setting(
        MMPOSE_HRNET_W32_COCO,
        "mmpose HRNet-W32 COCO 256x192 checkpoint: a .pth path or URL (downloaded once); "
        "with --keypoints blazepose: the pose_landmark_full.tflite path",
    )
    pose_batch_size: int = setting(64, "person crops per keypoint-model batch")
    pose_flip_test: bool = setting(True, "average heatmaps with the mirrored crop's (mmpose's test setting)")
    min_score: float = setting(0.72, "keep boxes with detector score > this (paper: 0.72, YOLO probability)")
    hog_min_score: float = setting(
        1.0, "score threshold when --detector hog (SVM margin, not a probability; docs/detect.md)"
    )
    record_score: float = setting(
        0.25, "YOLO boxes scoring above this are recorded (<= min_score: low_score)"
    )
    min_width: float = setting(48.0, "keep boxes wider than this many pixels (paper: 48)")
    min_aspect: float = setting(1.5, "keep boxes with height/width > this (paper: 1.5)")
    max_aspect: float = setting(5.0, "keep boxes with height/width < this (paper: 5)")
    keypoint_threshold: float = setting(
        0.3, "HRNet / mmpose: a keypoint is visible when its heatmap peak > this"
    )
    blazepose_keypoint_threshold: float = setting(
        0.8, "with --keypoints blazepose: a keypoint is visible when its confidence > this (docs/detect.md)"
    )
    batch_size: int = setting(32, "frames per detector batch")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    workers: int = setting(
        2, "decoding worker processes (0: decode in the main process); with --engine ray: per GPU actor"
    )
    ray_actors: int | None = setting(
        None, "with --engine ray: detection actors (none: one per GPU of the cluster, else one per CPU)"
    )
    ray_videos_per_call: int = setting(
        4, "with --engine ray: videos an actor takes at a time (their frames share detector batches)"
    )
    tracks: bool = setting(
        False, "also link each sampled frame's boxes into tracklets over nearby frames (docs/detect.md)"
    )
    track: TrackSettings = group(TrackSettings, "track", "with --tracks: how the tracklets are made")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(
            self,
            "frame_step",
            "min_width",
            "min_aspect",
            "max_aspect",
            "batch_size",
            "pose_batch_size",
            "ray_actors",
            "ray_videos_per_call",
        )
        check_nonnegative(self, "workers")
        if self.tracks and 2 * self.track.window >= self.frame_step:
            raise SettingsError(
                f"--track-window ({self.track.window}) must be below half of --frame-step ({self.frame_step}): "
                "the windows of two sampled frames would overlap"
            )
        check_range(self, "min_score", 0.0, 1.0)
        check_range(self, "record_score", 0.0, 1.0)
        check_range(self, "keypoint_threshold", 0.0, 1.0)
        check_range(self, "blazepose_keypoint_threshold", 0.0, 1.0)
        if self.keypoints == "blazepose" and not str(self.pose_weights or "").endswith(".tflite"):
            raise SettingsError(
                f"--keypoints blazepose needs --pose-weights PATH/pose_landmark_full.tflite, "
                f"not {self.pose_weights} (docs/detect.md)"
            )
        if self.max_aspect <= self.min_aspect:
            raise SettingsError(
                f"max_aspect ({self.max_aspect}) must be greater than min_aspect ({self.min_aspect})"
            )
