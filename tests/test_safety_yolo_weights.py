"""YOLO weights whose pickle would run code are refused, never loaded, on every route a user has.

The payloads: an ``os.system`` or ``eval`` call (what any pickle can name), and a call of
ultralytics' own ``DetectionModel`` with a cfg whose ``activation`` string ultralytics evals (what
a pickle can do with the very classes a YOLO file must be allowed to name). Each creates a marker
file when unpickled in full, shown first. Through ``detect --detector-weights``, ``build-shards --from-dets
--calibrate-weights`` and a saved ``settings/detect.yaml`` that ``build-shards`` chains, the
command must end with one line and exit 2, and the marker must never appear. Clean files in
ultralytics' own formats (``YOLO.save``, a trainer's ``last.pt`` and its stripped ``best.pt``,
YOLOv5u, v8 and 11 layers) still load and detect exactly as ultralytics' unrestricted load does.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from copy import deepcopy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from common.errors import UsageError
from common.manifests import boxes as box_file
from common.media.frames import read_frames

REPO = Path(__file__).resolve().parent.parent
KEPT = "concourse-walkers.mp4"  # 340 frames: the default filter keeps it


class Calls:
    """Unpickled in full, calls ``func(*args)``: what a hostile pickle does."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payload(kind: str, marker: Path) -> Calls:
    """A call that creates ``marker``. ``DetectionModel(cfg)`` runs it through the model parser's
    eval of the cfg's ``activation``, also under ``weights_only=True`` with the class allowed."""
    from ultralytics.nn.tasks import DetectionModel

    touch = f"__import__('os').system(\"touch '{marker}'\")"
    if kind == "os.system":
        return Calls(os.system, f"touch '{marker}'")
    if kind == "eval":
        return Calls(eval, touch)
    layers = {"backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": [[[-1], 1, "Detect", ["nc"]]]}
    return Calls(
        DetectionModel, {"nc": 1, "activation": f"{touch} or __import__('torch').nn.SiLU()", **layers}
    )


PAYLOADS = ("os.system", "eval", "DetectionModel(cfg)")


def payload_weights(path: Path, marker: Path, kind: str = "os.system") -> Path:
    """A ``.pt`` shaped like an ultralytics checkpoint whose model is the payload."""
    torch.save({"model": payload(kind, marker), "ema": None, "date": "2024-01-01", "version": "8.1.0"}, path)
    return path


@pytest.fixture(scope="module")
def yolo_config(tmp_path_factory):
    """Keep ultralytics' settings file out of the home directory."""
    mp = pytest.MonkeyPatch()
    mp.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics_config")))
    yield
    mp.undo()


@pytest.fixture
def conv_activation():
    """The payload's parse sets ``Conv.default_act`` for the whole process: put it back."""
    from ultralytics.nn.modules import Conv

    before = Conv.default_act
    yield
    Conv.default_act = before


@pytest.mark.parametrize("name", PAYLOADS)
def test_the_payloads_run_when_unpickled_in_full(tmp_path, yolo_config, conv_activation, name):
    """The other tests could not fail if these payloads were inert."""
    from ultralytics.nn.tasks import DetectionModel

    marker = tmp_path / "ran"
    evil = payload_weights(tmp_path / "evil.pt", marker, name)
    torch.load(evil, weights_only=False)
    assert marker.exists()
    if name == "DetectionModel(cfg)":  # also through weights_only=True with the class allowed
        marker.unlink()
        with torch.serialization.safe_globals([DetectionModel]):
            torch.load(evil, weights_only=True)
        assert marker.exists()


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "pipeline.py", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def assert_refused(result: subprocess.CompletedProcess, path: Path, marker: Path) -> None:
    assert not marker.exists(), "the payload ran"
    errors = [line for line in result.stderr.splitlines() if line.startswith("pipeline.py")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert len(errors) == 1 and str(path) in errors[0] and "refused" in errors[0], errors


@pytest.fixture(scope="module")
def filtered_root(tmp_path_factory, videos_dir: Path) -> Path:
    """A root with ``videos.parquet`` and ``video_filter.parquet`` keeping one video."""
    from collect.crawl import crawl
    from collect.settings import CrawlSettings
    from filter.settings import FilterSettings
    from filter.videos import filter_videos

    base = tmp_path_factory.mktemp("filtered")
    (base / "urls.txt").write_text(f"{videos_dir / KEPT}\n")
    crawl(CrawlSettings(urls=str(base / "urls.txt"), workers=1), base / "root")
    filter_videos(FilterSettings(workers=1), base / "root")
    assert pd.read_parquet(base / "root" / "video_filter.parquet")["keep"].tolist() == [True]
    return base / "root"


def detect_flag(root: Path, evil: Path) -> subprocess.CompletedProcess:
    """``detect --detector yolo --detector-weights FILE``."""
    return run_cli(
        "detect", "--root", str(root), "--detector", "yolo", "--detector-weights", str(evil),
        "--keypoints", "none", "--workers", "0", "--device", "cpu",
    )  # fmt: skip


def calibration_flag(root: Path, evil: Path) -> subprocess.CompletedProcess:
    """``build-shards --from-dets dets.pkl --calibrate-detector yolo --calibrate-weights FILE``."""
    stem = Path(KEPT).stem
    dets = root.parent / "dets.pkl"
    box = {"bbox": np.array([100.0, 50.0, 160.0, 200.0]), "score": 0.9}
    with open(dets, "wb") as f:
        pickle.dump({f"usa+boston+{stem}": {10: [(0, box)], 200: [(0, box)]}}, f)
    videos = pd.read_parquet(root / "videos.parquet")  # as crawl --from-vnames writes it: with vnames
    videos.assign(vname=f"usa+boston+{stem}").to_parquet(root / "videos.parquet", index=False)
    return run_cli(
        "build-shards", "--root", str(root), "--from-dets", str(dets), "--calibrate-detector", "yolo",
        "--calibrate-weights", str(evil), "--calibrate-device", "cpu", "--workers", "1",
    )  # fmt: skip


def saved_settings(root: Path, evil: Path) -> subprocess.CompletedProcess:
    """``settings/detect.yaml`` naming the file, then a plain ``build-shards`` (it chains detect)."""
    import pipeline
    from common.settings import save_settings

    mine = pipeline.resolve(
        "detect", None, {"detector_weights": str(evil), "keypoints": "none", "workers": 0}
    )
    save_settings(mine, pipeline.settings_file("detect", root), "detect")
    return run_cli("build-shards", "--root", str(root), "--workers", "1")


@pytest.mark.parametrize(
    ("route", "payload"),
    [
        (detect_flag, "os.system"),
        (calibration_flag, "os.system"),
        (saved_settings, "os.system"),
        (saved_settings, "DetectionModel(cfg)"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_payload_weights_never_run(tmp_path, filtered_root, route, payload):
    root = tmp_path / "root"
    shutil.copytree(filtered_root, root)
    marker, evil = tmp_path / "ran", tmp_path / "yolov5xu.pt"
    payload_weights(evil, marker, payload)
    result = route(root, evil)
    assert_refused(result, evil, marker)
    assert not box_file.files(root) and not (root / "shards").exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_files_are_refused_before_anything_runs(tmp_path, yolo_config, payload):
    """Each through the loader itself: ``os.system`` and ``eval`` are refused by name, the
    ``DetectionModel`` call is made without its ``__init__``, then refused as no model."""
    from common.detectors.yolo_weights import read_checkpoint

    marker, evil = tmp_path / "ran", tmp_path / "evil.pt"
    payload_weights(evil, marker, payload)
    with pytest.raises(UsageError, match="refused") as refusal:
        read_checkpoint(evil)
    assert not marker.exists() and str(evil) in str(refusal.value)


def test_classes_another_library_allowed_process_wide_are_not_used(tmp_path, yolo_config):
    """ultralytics' opt-in safe mode registers its classes for the whole process; with
    ``DetectionModel`` so registered, a pickle that names it could call it."""
    from ultralytics.nn.tasks import DetectionModel

    from common.detectors.yolo_weights import read_checkpoint

    marker, evil = tmp_path / "ran", tmp_path / "evil.pt"
    payload_weights(evil, marker, "DetectionModel(cfg)")
    before = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([DetectionModel])
    try:
        registered = set(torch.serialization.get_safe_globals())
        with pytest.raises(UsageError, match="no whole model"):
            read_checkpoint(evil)
        assert not marker.exists()
        assert set(torch.serialization.get_safe_globals()) == registered  # put back as it was
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def test_an_ultralytics_name_is_read_by_the_same_loader(tmp_path, yolo_config, monkeypatch):
    """The default ``yolov5xu.pt`` names a file ultralytics looks for in the working folder (then
    downloads): a payload found there is refused like a path."""
    from common.detectors.build import build_detector

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran"
    payload_weights(tmp_path / "yolov5xu.pt", marker)
    with pytest.raises(UsageError, match="refused"):
        build_detector("yolo", device="cpu")
    assert not marker.exists()


def trainer_checkpoints(folder: Path, yaml: str) -> tuple[Path, Path]:
    """A trainer's ``last.pt`` (model as EMA, optimizer state, numpy metrics, namespace args) as
    ``BaseTrainer.save_model`` writes it, and the ``best.pt`` ultralytics' ``strip_optimizer`` makes."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import DEFAULT_CFG
    from ultralytics.utils.torch_utils import strip_optimizer

    model = DetectionModel(yaml, verbose=False)
    model.args = get_cfg(DEFAULT_CFG)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    last, best = folder / "last.pt", folder / "best.pt"
    torch.save(
        {
            "epoch": 0, "best_fitness": np.float64(0.3), "model": None, "ema": deepcopy(model).half(),
            "updates": 10, "optimizer": optimizer.state_dict(), "train_args": vars(model.args),
            "train_metrics": {"metrics/mAP50(B)": np.float64(0.5), "fitness": np.float64(0.4)},
            "date": "2024-01-01", "version": "8.1.0",
        },
        last,
    )  # fmt: skip
    strip_optimizer(last, best)
    return last, best


@pytest.fixture(scope="module")
def clean_files(tmp_path_factory, yolo_config) -> list[Path]:
    """Real-format files of random weights: ``YOLO(yaml).save`` of YOLOv5nu and YOLO11n, a YOLOv8n
    trainer's ``last.pt`` and ``best.pt``."""
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("clean")
    torch.manual_seed(0)
    for yaml in ("yolov5nu.yaml", "yolo11n.yaml"):
        YOLO(yaml).save(folder / yaml.replace(".yaml", ".pt"))
    return [folder / "yolov5nu.pt", folder / "yolo11n.pt", *trainer_checkpoints(folder, "yolov8n.yaml")]


def test_real_yolo_files_detect_as_ultralytics_own_load(clean_files, videos_dir):
    """Same boxes and scores, to the bit, as ultralytics' unrestricted load of the same file."""
    from ultralytics import YOLO

    from common.detectors.yolo import IMAGE_SIZE, YoloDetector

    frame = dict(read_frames(videos_dir / "street-crossing.mp4", [300]))[300]
    for path in clean_files:
        boxes = YoloDetector(str(path), device="cpu", record_score=0.0)([frame])[0]
        found = (
            YOLO(str(path), task="detect")
            .predict([frame], classes=[0], conf=0.0, imgsz=IMAGE_SIZE, device="cpu", verbose=False)[0]
            .boxes
        )
        reference = np.concatenate([found.xyxy.numpy(), found.conf.numpy()[:, None]], axis=1)
        reference = reference[np.argsort(-reference[:, 4], kind="stable")]
        assert len(boxes) > 0, path.name
        np.testing.assert_array_equal(boxes, reference.astype(np.float32), err_msg=path.name)
