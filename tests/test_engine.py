"""The same task function inline, on the local pool and on a local Ray instance gives the same results."""

from __future__ import annotations

import hashlib

import pytest

from common.engine import run_tasks
from shards.tarshard import sha256_file  # a real per-file task, importable by pool and Ray workers


def _digests(engine: str, workers: int, items: list[str]) -> dict[int, str]:
    return dict(run_tasks(sha256_file, items, engine=engine, workers=workers, desc="sha256"))


@pytest.fixture(scope="module")
def files(videos_dir) -> list[str]:
    return sorted(str(p) for p in videos_dir.iterdir())


@pytest.fixture(scope="module")
def expected(files) -> dict[int, str]:
    """Digests computed independently with hashlib in this process."""
    return {i: hashlib.sha256(open(p, "rb").read()).hexdigest() for i, p in enumerate(files)}


def test_inline_and_local_pool_agree_with_hashlib(files, expected):
    assert _digests("local", 1, files) == expected
    assert _digests("local", 2, files) == expected


def test_ray_agrees_with_hashlib(files, expected):
    ray = pytest.importorskip("ray")
    try:
        assert _digests("ray", 2, files) == expected
    finally:
        ray.shutdown()


def test_a_failing_task_raises_in_the_caller(files, tmp_path):
    with pytest.raises(FileNotFoundError):
        list(run_tasks(sha256_file, [*files, str(tmp_path / "missing.mp4")], engine="local", workers=2))


@pytest.mark.parametrize(("engine", "workers"), [("spark", 2), ("local", 0)])
def test_bad_engine_arguments(engine: str, workers: int):
    with pytest.raises(ValueError):
        list(run_tasks(sha256_file, ["x"], engine=engine, workers=workers))
