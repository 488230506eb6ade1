"""A task that kills its worker process takes only its own item down, when the stage asks for it.

``run_tasks(..., isolate=f)`` (``common.local_pool``): the pool gives each worker one task at a
time, so the tasks running when a worker vanished are the suspects; each runs again alone, and
the one whose process dies again becomes ``f(item, why)``. filter uses it: a video whose probe
crashes (here ``os.abort``, as a heap corruption in a decoder ends) is its own ``unreadable`` row,
and every other video's row equals a run without it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from crashing_tasks import doubled_or_abort, probe_or_abort

import filter.videos
from collect.crawl import crawl
from collect.settings import CrawlSettings
from common.engine import ordered_map, run_tasks
from common.errors import UsageError
from common.local_pool import DIED_ALONE
from filter.settings import FilterSettings
from filter.videos import filter_videos

ITEMS = ["a", "crash-1", "b", "c", "d"]


def isolated(item: str, why: str) -> str:
    return f"isolated {item}: {why}"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_crashing_task_is_isolated_and_the_others_finish(workers: int):
    got = dict(run_tasks(doubled_or_abort, ITEMS, workers=workers, isolate=isolated, progress=False))
    assert got == {0: "aa", 1: f"isolated crash-1: {DIED_ALONE}", 2: "bb", 3: "cc", 4: "dd"}


def test_two_crashing_tasks_each_become_their_own_row():
    items = ["crash-a", "x", "crash-b", "y"]
    got = dict(run_tasks(doubled_or_abort, items, workers=2, isolate=isolated, progress=False))
    assert got == {
        0: f"isolated crash-a: {DIED_ALONE}",
        1: "xx",
        2: f"isolated crash-b: {DIED_ALONE}",
        3: "yy",
    }


def test_without_isolate_a_crash_ends_the_run_with_one_line():
    with pytest.raises(UsageError, match=r"^a worker process died .* with \d doubled_or_abort task\(s\)"):
        list(run_tasks(doubled_or_abort, ITEMS, workers=2, progress=False))


def test_on_ray_a_crashing_task_is_isolated_after_rays_retries(local_ray):
    import crashing_tasks
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(crashing_tasks)  # Ray's workers cannot import tests/
    got = dict(run_tasks(doubled_or_abort, ITEMS, engine="ray", workers=2, isolate=isolated, progress=False))
    assert got == {0: "aa", 1: f"isolated crash-1: {DIED_ALONE}", 2: "bb", 3: "cc", 4: "dd"}


REAL = ("one-by-one-person-detection.mp4", "street-crossing.mp4")


@pytest.fixture(scope="module")
def crawled(videos_dir: Path, tmp_path_factory) -> Path:
    """A root whose videos are two real clips and a copy of the first named ``zz-crash.mp4`` (its
    id sorts after the original's: of two copies filter keeps the one earlier in plan order)."""
    base = tmp_path_factory.mktemp("probe-crash")
    shutil.copy(videos_dir / REAL[0], base / "zz-crash.mp4")
    urls = base / "urls.txt"
    urls.write_text(
        "".join(f"{p}\n" for p in [videos_dir / REAL[0], base / "zz-crash.mp4", videos_dir / REAL[1]])
    )
    crawl(CrawlSettings(urls=str(urls), workers=1), base / "root")
    return base / "root"


def filtered(crawled: Path, into: Path) -> pd.DataFrame:
    shutil.copytree(crawled, into)
    filter_videos(FilterSettings(workers=2), into)
    table = pd.read_parquet(into / "video_filter.parquet")  # it carries crawl's url
    return table.assign(name=[Path(u).name for u in table["url"]]).set_index("name")


def test_a_video_whose_probe_crashes_is_its_own_unreadable_row(crawled, tmp_path, monkeypatch):
    clean = filtered(crawled, tmp_path / "clean")
    monkeypatch.setattr(filter.videos, "_probe_task", probe_or_abort)
    crashed = filtered(crawled, tmp_path / "crashed")
    assert clean.loc["zz-crash.mp4", "status"] != "unreadable"  # a copy: probed, then a (near-)duplicate
    assert (crashed.loc["zz-crash.mp4", "status"], crashed.loc["zz-crash.mp4", "reason"]) == (
        "unreadable",
        f"probing crashed: {DIED_ALONE}",
    )
    others = list(REAL)
    columns = ["video_id", "status", "reason", "n_frames", "width", "height"]
    pd.testing.assert_frame_equal(crashed.loc[others, columns], clean.loc[others, columns])
    assert set(crashed.loc[others, "status"]) == {"ok"}


@pytest.mark.parametrize(("workers", "window"), [(1, None), (2, None), (2, 3)])
def test_in_item_order_a_crashing_task_is_isolated_and_the_order_kept(workers: int, window: int | None):
    """``ordered_map(..., isolate=f)``, as the streaming build runs its videos: the results come in
    item order, a crash is its own ``f(item, why)``, and every other item finishes."""
    items = ["a", "crash-1", "b", "c", "crash-2", "d", "e"]
    got = list(ordered_map(doubled_or_abort, items, workers=workers, window=window, isolate=isolated))
    crashed = f"isolated crash-1: {DIED_ALONE}", f"isolated crash-2: {DIED_ALONE}"
    assert got == ["aa", crashed[0], "bb", "cc", crashed[1], "dd", "ee"]


def test_in_item_order_on_ray_a_crash_is_isolated_after_rays_retries(local_ray):
    import crashing_tasks
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(crashing_tasks)
    got = list(ordered_map(doubled_or_abort, ITEMS, engine="ray", workers=2, window=2, isolate=isolated))
    assert got == ["aa", f"isolated crash-1: {DIED_ALONE}", "bb", "cc", "dd"]
