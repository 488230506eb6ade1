"""The models of one detect worker: the person detector, the keypoint model and the rules.

Both engines (local processes, Ray actors) build them here; the detector and keypoint model
modules import their heavy libraries (OpenCV, torch, ultralytics) only when chosen.
"""

from __future__ import annotations

import logging

from common.detectors.blazepose import BlazePoseKeypoints
from common.detectors.build import build_detector as build
from common.detectors.yolo import resolve_device
from detect.person_rules import PersonRules
from detect.pose import HRNetKeypoints, MMPoseKeypoints
from detect.settings import DetectSettings, TrackSettings

log = logging.getLogger(__name__)


def rules_for(cfg: DetectSettings) -> PersonRules:
    """The validity thresholds; the score threshold depends on the detector (YOLO probability or
    HOG SVM margin), the keypoint threshold on the keypoint model (HRNet heatmap peak or
    BlazePose confidence)."""
    return PersonRules(
        min_score=cfg.min_score if cfg.detector == "yolo" else cfg.hog_min_score,
        min_width=cfg.min_width,
        min_aspect=cfg.min_aspect,
        max_aspect=cfg.max_aspect,
        keypoint_threshold=(
            cfg.blazepose_keypoint_threshold if cfg.keypoints == "blazepose" else cfg.keypoint_threshold
        ),
    )


def track_settings(cfg: DetectSettings) -> TrackSettings | None:
    """What ``--tracks`` needs (None without it: plain sampling, the paper's default)."""
    if not cfg.tracks:
        return None
    return cfg.track


def build_detector(cfg: DetectSettings):
    return build(cfg.detector, cfg.detector_weights, cfg.device, cfg.record_score)


def build_pose(cfg: DetectSettings):
    """The keypoint adapter, or None for ``--keypoints none`` (said loudly: rules are skipped)."""
    if cfg.keypoints == "none":
        log.warning("detect: --keypoints none: the head / upper-body / lower-body rules are skipped")
        return None
    if cfg.keypoints == "blazepose":
        return BlazePoseKeypoints(cfg.pose_weights)
    if cfg.keypoints == "mmpose":
        return MMPoseKeypoints(cfg.pose_weights, resolve_device(cfg.device))
    return HRNetKeypoints(
        cfg.pose_weights, resolve_device(cfg.device), cfg.pose_batch_size, cfg.pose_flip_test
    )
