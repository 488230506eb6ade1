"""Shared fixtures: the real sample data (``common.data``: LUPERSON_DATA, ../shared/data, or the
user cache fetch-samples fills), and a hermetic environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.data import data_root

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = data_root()[0]

os.environ.setdefault("YOLO_OFFLINE", "1")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(
            f"sample data missing: {path} (CI always has ../shared/data; fetch-samples fetches the footage and models)"
        )
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real videos, images, Re-ID benchmarks and unlabeled crops."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def videos_dir(shared_data: Path) -> Path:
    return _require(shared_data / "videos")


@pytest.fixture(scope="session")
def unlabeled_dir(shared_data: Path) -> Path:
    return _require(shared_data / "unlabeled")


@pytest.fixture(scope="session")
def reid_dir(shared_data: Path) -> Path:
    return _require(shared_data / "reid")


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray instance (2 CPUs) for every Ray test of the session; ``run_tasks`` joins it."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread: on a busy 2-core machine, OpenMP barriers across cores cost
    ~100x the work of tiny convolutions."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
