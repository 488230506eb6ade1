"""Face blurring (``--blur-faces``, issue 26) on real images: BlazeFace against the model's README
reference, the blur's effect inside and outside the face regions, head keypoints from the real
BlazePose model, and build-shards writing blurred crops read back with PIL."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import pipeline
from shards.write.faces import BlazeFace, Encoding, FaceBlur, blur_regions, face_regions, keypoint_heads

FACE_CROP = "CUHK03/0160_1_05.jpg"  # a frontal walker, face ~15 px wide
BACK_VIEW = "PRID/0001_a.png"  # a walker seen from behind, ~50 px wide: no face BlazeFace finds


@pytest.fixture(scope="module")
def face_model(shared_data: Path) -> Path:
    path = shared_data / "models" / "face_detection_full_range_sparse.tflite"
    if not path.is_file():
        pytest.skip(f"{path} is missing (python pipeline.py fetch-samples)")
    return path


def detail(pixels: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: how much fine detail a patch holds."""
    grey = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def test_blazeface_finds_the_two_faces_the_model_readme_names(face_model, shared_data):
    """The data README: on zidane.jpg, two faces (scores 0.85 and 0.66) where the two men's heads are."""
    image = cv2.imread(str(shared_data / "images" / "zidane.jpg"))
    faces = BlazeFace(face_model, min_score=0.5)(image)
    assert len(faces) == 2
    assert faces[:, 4] == pytest.approx([0.85, 0.66], abs=0.05)
    for x1, y1, x2, y2, _ in faces:  # head-sized boxes in the top two thirds of the 1280x720 frame
        assert 100 < x2 - x1 < 250 and 100 < y2 - y1 < 250 and y2 < 480


def test_blurring_removes_detail_in_the_face_and_nothing_elsewhere(face_model, reid_dir):
    crop = cv2.imread(str(reid_dir / FACE_CROP))
    pixels, record = Encoding(blur_faces=True, face=FaceBlur(model=str(face_model))).blur(crop)
    faces = record["faces"]
    assert faces["blazeface"] >= 1 and faces["blazepose"] == 1 and faces["keypoints"] == 0
    assert faces["blurred"] >= 1
    outside = np.ones(crop.shape[:2], bool)
    for x1, y1, x2, y2 in faces["regions"]:
        assert y2 <= crop.shape[0] / 3  # the head of a standing person
        assert detail(pixels[y1:y2, x1:x2]) < 0.2 * detail(crop[y1:y2, x1:x2])
        outside[y1:y2, x1:x2] = False
    assert np.array_equal(pixels[outside], crop[outside])
    assert not np.array_equal(pixels, crop)


def test_blur_regions_is_strong_for_any_face_size():
    """Sigma is a quarter of the region's side: a face-sized checkerboard keeps ~no contrast."""
    board = (np.indices((64, 64)).sum(axis=0) // 4 % 2 * 255).astype(np.uint8)
    image = np.dstack([board] * 3)
    for side in (8, 16, 32):
        out = blur_regions(image, [(8, 8, 8 + side, 8 + side)])
        patch = out[8 + side // 4 : 8 + 3 * side // 4, 8 + side // 4 : 8 + 3 * side // 4]
        assert patch.std() < 0.1 * image.std()
        assert np.array_equal(out[40:], image[40:])


def test_head_keypoints_of_the_real_pose_model_cover_the_face(face_model, shared_data, reid_dir):
    """BlazePose's nose, eyes and ears on a frontal crop give a head box over BlazeFace's face."""
    from common.detectors.blazepose import BlazePoseKeypoints

    pose_model = shared_data / "models" / "pose_landmark_full.tflite"
    if not pose_model.is_file():
        pytest.skip(f"{pose_model} is missing")
    crop = cv2.imread(str(reid_dir / FACE_CROP))
    h, w = crop.shape[:2]
    [kps] = BlazePoseKeypoints(str(pose_model))([(crop, np.array([[0, 0, w, h, 1.0]]))])
    [head] = keypoint_heads(kps[0].ravel().tolist(), (0, 0), h, 0.3)
    [face] = BlazeFace(face_model, min_score=0.5)(crop)[:1, :4]
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    assert head[0] <= cx <= head[2] and head[1] <= cy <= head[3]
    [region] = face_regions(head[None], w, h)
    assert region[3] <= h / 3  # still the head, not the body
    # stored keypoints are in frame pixels: the crop's origin moves them into the crop
    moved = keypoint_heads((kps[0] + [100, 50, 0]).ravel().tolist(), (100, 50), h, 0.3)
    assert moved[0] == pytest.approx(head, abs=1e-3)


def test_a_crop_without_keypoints_gets_its_head_from_blazepose(face_model, reid_dir, shared_data):
    """Seen from behind, no face for BlazeFace; BlazePose places the head at the top of the crop."""
    crop = cv2.imread(str(reid_dir / BACK_VIEW))
    alone = Encoding(blur_faces=True, face=FaceBlur(model=str(face_model), pose=False)).blur(crop)[1]["faces"]
    assert alone["blurred"] == 0
    pixels, record = Encoding(blur_faces=True, face=FaceBlur(model=str(face_model))).blur(crop)
    [(x1, y1, x2, y2)] = record["faces"]["regions"]
    assert record["faces"]["blazepose"] == 1
    assert y2 <= crop.shape[0] / 3 and x1 < crop.shape[1] / 2 < x2
    scene = cv2.imread(str(shared_data / "images" / "bus.jpg"))[880:1080, 300:400]  # road, no one
    assert (
        Encoding(blur_faces=True, face=FaceBlur(model=str(face_model))).blur(scene)[1]["faces"]["blurred"]
        == 0
    )


def test_build_shards_writes_blurred_crops_and_records_them(face_model, reid_dir, shared_data, tmp_path):
    images = tmp_path / "crops"
    images.mkdir()
    shutil.copy(reid_dir / FACE_CROP, images / "face.jpg")
    road = cv2.imread(str(shared_data / "images" / "bus.jpg"))[880:1080, 300:400]
    cv2.imwrite(str(images / "plain.jpg"), road, [cv2.IMWRITE_JPEG_QUALITY, 95])
    settings = {"from_images": str(images), "blur_faces": True, "face.model": str(face_model), "workers": 1}
    root = tmp_path / "root"
    pipeline.run_stage("build-shards", pipeline.resolve("build-shards", None, settings), root)
    with tarfile.open(root / "shards" / "lup-000000.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    meta = {k: json.loads(files[f"{k}.json"]) for k in ("face", "plain")}
    assert meta["plain"]["faces"]["blurred"] == 0 and not meta["plain"]["reencoded"]
    assert files["plain.jpg"] == (images / "plain.jpg").read_bytes()  # no face: the bytes as they were
    assert meta["face"]["faces"]["blurred"] >= 1 and meta["face"]["reencoded"]
    written = np.asarray(Image.open(io.BytesIO(files["face.jpg"])).convert("RGB"), np.float64)
    source = np.asarray(Image.open(images / "face.jpg").convert("RGB"), np.float64)
    far = np.ones(source.shape[:2], bool)
    for x1, y1, x2, y2 in meta["face"]["faces"]["regions"]:
        assert detail(written[y1:y2, x1:x2].astype(np.uint8)) < 0.3 * detail(
            source[y1:y2, x1:x2].astype(np.uint8)
        )
        far[max(0, y1 - 8) : y2 + 8, max(0, x1 - 8) : x2 + 8] = False  # JPEG blocks near the edge
    assert np.abs(written[far] - source[far]).mean() < 2.0  # re-encoded at quality 95, same pixels
    assert pipeline.main(["stats", "--root", str(root)]) == 0
    page = (root / "report.html").read_text()
    assert page.count('class="face"') == 1 and (root / "report_files" / "faces_000.jpg").is_file()
    stats = json.loads((root / "stats.json").read_text())
    assert stats["faces"]["crops_checked"] == 2
    assert stats["faces"]["crops_with_faces"] == 1
    assert stats["faces"]["regions"] == meta["face"]["faces"]["blurred"]


def test_report_examples_are_blurred_like_the_crops(face_model, shared_data):
    """report.html's example boxes are drawn on frames: with blurring on, their faces are blurred."""
    from shards.checks.report_examples import draw

    frame = cv2.imread(str(shared_data / "images" / "zidane.jpg"))
    box = (840, 60, 1160, 720)  # the man on the right, his face at about (920-1068, 120-268)
    plain, outline = draw(frame, box, None, 0.3, True)
    blurred, same = draw(
        frame, box, None, 0.3, True, Encoding(blur_faces=True, face=FaceBlur(model=str(face_model)))
    )
    assert outline == same
    scale = (outline[3] - outline[1]) / (box[3] - box[1])
    x1, y1 = outline[0] + round(90 * scale), outline[1] + round(70 * scale)
    face = (slice(y1, y1 + round(140 * scale)), slice(x1, x1 + round(140 * scale)))
    assert detail(blurred[face]) < 0.3 * detail(plain[face])


def test_the_report_blurs_with_the_builds_own_settings(face_model, reid_dir, tmp_path):
    """report.html's examples use the face settings build-shards saved, not the defaults."""
    from shards.checks.report_examples import blurring

    images = tmp_path / "crops"
    images.mkdir()
    shutil.copy(reid_dir / FACE_CROP, images / "face.jpg")
    root = tmp_path / "root"
    settings = {"from_images": str(images), "blur_faces": True, "workers": 1}
    settings |= {
        "face.model": str(face_model),
        "face.min_score": 0.9,
        "face.pose": False,
    }  # as the flags give
    pipeline.run_stage("build-shards", pipeline.resolve("build-shards", None, settings), root)
    encoding = blurring(root, {"crops_checked": 1})
    assert encoding.face == FaceBlur(model=str(face_model), min_score=0.9, pose=False)
    # and the build itself ran without BlazePose: with it, this walker's head is always found
    assert json.loads((root / "stats.json").read_text())["faces"]["crops_with_faces"] == 0
    assert blurring(root, None) is None  # the build did not blur: nothing to apply
