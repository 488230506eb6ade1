"""The same task function inline, on the local pool and on a local Ray instance gives the same results."""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from common.actors import actor_shape, run_actors
from common.engine import ordered_map, run_tasks
from common.manifests.shard_index import (
    sha256_file,  # a real per-file task, importable by pool and Ray workers
)


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
    assert _digests("threads", 2, files) == expected
    assert _digests("local", 2, files) == expected


def test_ray_agrees_with_hashlib(files, expected, local_ray):
    assert _digests("ray", 2, files) == expected


def test_ray_actors_agree_with_hashlib(files, expected, local_ray):
    """Each actor builds the callable once (here a partial of the task function) and maps items."""
    results = run_actors(functools.partial, (sha256_file,), files, workers=2, desc="sha256 actors")
    assert dict(results) == expected


def test_a_failing_actor_call_raises_in_the_caller(files, tmp_path, local_ray):
    with pytest.raises(FileNotFoundError):
        list(run_actors(functools.partial, (sha256_file,), [*files, str(tmp_path / "missing.mp4")]))


def test_a_usage_error_in_a_worker_reaches_the_caller_as_itself(tmp_path, local_ray):
    """A bad path seen by a Ray task, or by an actor building its model, is the user's one-line
    error, not Ray's remote traceback (pipeline.py prints it and exits 2)."""
    from common.errors import UsageError, require_path
    from filter.videos import load_videos

    with pytest.raises(UsageError) as task_error:  # a stage's reader on a workspace without a crawl
        list(run_tasks(load_videos, [tmp_path], engine="ray", workers=2))
    assert type(task_error.value) is UsageError
    assert str(task_error.value) == f"{tmp_path / 'videos.parquet'} does not exist: run crawl first"
    missing = str(tmp_path / "weights.pt")
    with pytest.raises(UsageError) as actor_error:  # the factory itself fails in each actor
        list(run_actors(require_path, (missing, "weights"), ["a", "b"], workers=2))
    assert type(actor_error.value) is UsageError
    assert str(actor_error.value) == f"weights: {missing} does not exist"


@pytest.mark.parametrize(
    ("resources", "num_gpus", "num_cpus", "actors", "shape"),
    [
        ({"CPU": 16.0, "GPU": 4.0}, None, 2.0, None, (1.0, 4)),  # one actor per GPU
        ({"CPU": 16.0, "GPU": 4.0}, 0.5, 1.0, None, (0.5, 8)),
        ({"CPU": 16.0, "GPU": 4.0}, 0.0, 4.0, None, (0.0, 4)),  # CPU actors asked for
        ({"CPU": 6.0}, None, 2.0, None, (0.0, 3)),  # no GPU: CPU actors
        ({"CPU": 1.0}, None, 2.0, None, (0.0, 1)),  # at least one
        ({"CPU": 6.0}, None, 1.0, 2, (0.0, 2)),
    ],
)
def test_actor_shape(resources, num_gpus, num_cpus, actors, shape):
    assert actor_shape(resources, num_gpus, num_cpus, actors) == shape


def test_a_failing_task_raises_in_the_caller(files, tmp_path):
    with pytest.raises(FileNotFoundError):
        list(run_tasks(sha256_file, [*files, str(tmp_path / "missing.mp4")], engine="local", workers=2))


def spawned_workers() -> list[int]:
    """This process's ``spawn`` pool workers (``/proc``; the resource tracker is not one)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


TASK_S = 120  # each task of the kill tests sleeps this long: a run that waits for one is seen


def kill_a_worker_soon() -> tuple[threading.Thread, list[float]]:
    """A thread that SIGKILLs one spawned pool worker once they exist; the kill's time lands in the list."""
    killed_at: list[float] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while not (workers := spawned_workers()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the workers have (usually) started their tasks; the test holds either way
        os.kill(workers[0], signal.SIGKILL)
        killed_at.append(time.monotonic())

    killer = threading.Thread(target=kill_one)
    killer.start()
    return killer, killed_at


def test_a_killed_local_worker_ends_the_run_with_one_line():
    """A pool worker SIGKILLed mid-task (as the OOM killer would) fails the run at once, with one
    line naming the unfinished tasks (not a BrokenProcessPool traceback, never a hang)."""
    from common.errors import UsageError

    killer, killed_at = kill_a_worker_soon()
    with pytest.raises(
        UsageError, match=r"^a worker process died \(killed, e.g. out of memory\) with 3 sleep"
    ):
        list(run_tasks(time.sleep, [TASK_S] * 3, engine="local", workers=2))
    ended = time.monotonic()
    killer.join()
    # Timed from the kill, not from the start (spawning is slow on a busy machine): a pool that
    # waited for the surviving worker's task would end TASK_S after its start, past this bound.
    assert ended - killed_at[0] < TASK_S / 2
    assert not spawned_workers()  # the other worker ended too


def test_threads_run_any_callable_and_report_their_index():
    release = threading.Event()

    def slow_first(x: int) -> int:  # a closure: threads need no pickling
        if x == 0:
            assert release.wait(10)  # held until the second task's result has come back
        return x * 10

    results = run_tasks(slow_first, [0, 1], engine="threads", workers=2)
    first = next(results)
    release.set()
    assert [first, *results] == [(1, 10), (0, 0)]


def test_an_interrupted_thread_run_stops_the_running_tasks_and_waits_for_them():
    """Closing the iterator (or Ctrl-C, an error) sets ``stop``, cancels what has not started
    and returns only once the running tasks have ended."""
    stop = threading.Event()
    started, ended = [], []

    def task(x: int) -> int:
        started.append(x)
        if x:
            assert stop.wait(10)
            time.sleep(0.2)
            ended.append(x)
        return x

    results = run_tasks(task, list(range(6)), engine="threads", workers=2, stop=stop)
    assert next(results) == (0, 0)
    results.close()
    assert stop.is_set()
    # A task that timed out on ``stop`` fails its assert and never reaches ``ended``; so this also
    # says that the running tasks were released by ``stop`` and that close() waited for them.
    assert sorted(ended) == sorted(x for x in started if x)  # every running task has ended
    assert len(started) < 6  # the rest never started


@pytest.mark.parametrize(("workers", "context"), [(1, "spawn"), (2, "spawn"), (2, "forkserver")])
def test_ordered_map_keeps_the_order_of_the_items(files, expected, workers, context):
    items = files * 3  # more than 2 * workers in flight
    got = list(
        ordered_map(sha256_file, items, workers=workers, context=context, preload=["common.integrity"])
    )
    assert got == [expected[i % len(files)] for i in range(len(items))]


def test_ordered_map_on_ray_keeps_the_order_of_the_items(files, expected, local_ray, monkeypatch):
    import common.engine

    monkeypatch.setattr(common.engine, "RAY_WINDOW_PER_CPU", 1)  # several windows
    items = files * 3
    got = list(ordered_map(sha256_file, items, engine="ray", workers=2))
    assert got == [expected[i % len(files)] for i in range(len(items))]


def test_ray_waits_on_a_bounded_window_not_on_every_task(local_ray, monkeypatch):
    """Each finished Ray task costs a scan of the refs in flight: over all N tasks at once that
    was quadratic (46,260 tasks: 713 s, against 39 s with the window; docs/scale.md), so at most
    ``RAY_WINDOW_PER_CPU`` per CPU are in flight and a finished burst costs one scan."""
    import ray

    import common.engine
    from bench.scale_parts.ray_tasks import checksum, video_ids

    scanned: list[int] = []
    real_wait = ray.wait

    def counting_wait(refs, **kw):
        scanned.append(len(refs))
        return real_wait(refs, **kw)

    monkeypatch.setattr(ray, "wait", counting_wait)
    monkeypatch.setattr(common.engine, "RAY_WINDOW_PER_CPU", 3)  # 2 CPUs: 6 in flight
    items = video_ids(120)
    assert dict(run_tasks(checksum, items, engine="ray", workers=2)) == dict(enumerate(map(checksum, items)))
    assert max(scanned) == 6  # the window, not the 120 tasks
    assert len(scanned) <= 2 * len(items)  # at most a scan and a blocking wait per finished task
    scanned.clear()
    assert list(ordered_map(checksum, items, engine="ray", workers=2)) == list(map(checksum, items))
    assert scanned == []  # in item order: one ray.get each, no scan at all


def test_a_killed_ordered_map_worker_names_the_first_unfinished_item():
    from common.errors import UsageError

    killer, killed_at = kill_a_worker_soon()
    with pytest.raises(UsageError, match=rf"^a worker process died .* with job {TASK_S} unfinished"):
        list(ordered_map(time.sleep, [TASK_S] * 3, workers=2, label=lambda s: f"job {s}"))
    ended = time.monotonic()
    killer.join()
    assert ended - killed_at[0] < TASK_S / 2  # it did not wait for the surviving worker's task
    assert not spawned_workers()


@pytest.mark.parametrize(("engine", "workers"), [("spark", 2), ("local", 0), ("threads", 0)])
def test_bad_engine_arguments(engine: str, workers: int):
    with pytest.raises(ValueError):
        list(run_tasks(sha256_file, ["x"], engine=engine, workers=workers))


def test_cluster_workers_get_the_stage_packages():
    """What a cluster's workers receive as py_modules: every stage package, each a package folder."""
    from common.ray_cluster import project_packages

    folders = [Path(p) for p in project_packages()]
    assert {"collect", "common", "detect", "filter", "shards"} <= {f.name for f in folders}
    assert all((f / "__init__.py").is_file() and f.parent == folders[0].parent for f in folders)
