"""Perceptual hashes on real frames, and the near-duplicate decision at its boundary."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from common.media.frames import read_frames
from filter.phash import dct_matrix, hamming, mean_distances, phash
from filter.probe import Probe
from filter.settings import FilterSettings
from filter.videos import mark_near_duplicates


@pytest.fixture(scope="module")
def frames(videos_dir):
    """Frame 300 of two different street clips."""
    a = dict(read_frames(videos_dir / "street-crossing.mp4", [300]))[300]
    b = dict(read_frames(videos_dir / "concourse-walkers.mp4", [300]))[300]
    return a, b


def test_dct_matrix_matches_opencv():
    x = np.random.default_rng(0).uniform(0, 255, (32, 32))
    d = dct_matrix(32)
    np.testing.assert_allclose(d @ x @ d.T, cv2.dct(x), atol=1e-9)


def test_hash_survives_rescale_and_recompression(frames):
    a, _ = frames
    small = cv2.resize(a, (320, 180), interpolation=cv2.INTER_AREA)
    jpeg = cv2.imdecode(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 40])[1], cv2.IMREAD_COLOR)
    assert hamming(phash(a), phash(jpeg)) <= 4


def test_different_content_is_far(frames):
    a, b = frames
    assert hamming(phash(a), phash(b)) >= 16
    assert hamming(phash(a), phash(cv2.flip(a, 1))) >= 16  # a mirror is different content


def test_mean_distances_frame_by_frame():
    others = np.array([[0b1111, 0], [0, 0]], dtype=np.uint64)
    np.testing.assert_allclose(mean_distances([0, 0b11], others), [3.0, 1.0])


@pytest.mark.parametrize(("bits", "reason"), [(6, "near_duplicate"), (7, "ok")])
def test_near_duplicate_distance_boundary(bits, reason):
    cfg = FilterSettings()
    assert cfg.near_duplicate_distance == 6
    flipped = (1 << bits) - 1  # the same `bits` bits differ in all five frame hashes
    base = [0x0123456789ABCDEF] * 5
    rows = [{"video_id": v, "status": "ok", "reason": ""} for v in ("a", "b", "c")]
    probes = {
        "a": Probe(hashes=[f"{h:016x}" for h in base]),
        "b": Probe(hashes=[f"{h ^ flipped:016x}" for h in base]),
        "c": Probe(hashes=[f"{~h & (2**64 - 1):016x}" for h in base]),
    }
    mark_near_duplicates(rows, probes, cfg)
    assert [r["status"] for r in rows] == ["ok", reason, "ok"]
    if reason != "ok":
        assert rows[1]["reason"].startswith("like a")
