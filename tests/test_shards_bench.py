"""bench/shard_throughput.py --smoke: every method handles every sample and the result file is complete;
what the baselines write reads back with tarfile and lmdb; measure_decode times whole batches."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TABLE = {"name", "samples", "seconds", "samples_per_s", "ratio"}


def test_bench_smoke(unlabeled_dir, tmp_path):
    out = tmp_path / "shards.json"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "shard_throughput.py"),
            "--smoke",
            "--images",
            str(unlabeled_dir),
            "--out",
            str(out),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.read_text())
    rows = {r["name"].split(":")[0]: [] for r in result["rows"]}
    for r in result["rows"]:
        rows[r["name"].split(":")[0]].append(r)
    assert [len(v) for v in rows.values()] == [2, 2, 2, 2]  # write, export, read+decode, decode+resize
    assert all(set(r) >= TABLE for r in result["rows"])  # what table() prints
    assert all((r["ratio"] is None) == ("baseline" in r["name"]) for r in result["rows"])  # set beside one
    # Counts, not rates: each baseline and its measured method handled the same crops. build-shards
    # and export-lmdb count what they wrote; the loose-file and shard readers must yield the same
    # number of images (read_rows asserts it) in 4 whole batches of 64 from the 300 crops.
    assert all(r["samples"] == 300 for r in rows["write"] + rows["export"])
    assert all(r["samples"] == 256 and len(r["round_rates"]) == 2 for r in rows["read+decode"])
    assert all(
        r["samples"] >= 256 and r["samples"] % 256 == 0 for r in rows["decode+resize"]
    )  # whole batches
    assert "pretrain loader, 1 process" in rows["read+decode"][1]["name"]
    assert "decode_jpeg on cpu" in rows["decode+resize"][1]["name"]
    assert "vs baseline" in run.stdout and "export-lmdb" in run.stdout and "round_rates=" in run.stdout


@pytest.fixture(scope="module")
def crops(unlabeled_dir, tmp_path_factory) -> Path:
    """20 crops from each of two folders of unlabeled/, as a folder tree."""
    root = tmp_path_factory.mktemp("crops")
    for folder in sorted(p for p in unlabeled_dir.iterdir() if p.is_dir())[:2]:
        (root / folder.name).mkdir()
        for f in sorted(folder.glob("*.jpg"))[:20]:
            shutil.copy(f, root / folder.name / f.name)
    return root


def tar_members(shards: list[Path]) -> dict[str, bytes]:
    """Every member of the shards, read with Python's tarfile (not the project's reader)."""
    members: dict[str, bytes] = {}
    for shard in shards:
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                assert m.name not in members, m.name  # no sample twice
                members[m.name] = tar.extractfile(m).read()
    return members


def test_baselines_write_every_crop_once(crops, tmp_path):
    """The baselines return their input's count, so read back what they wrote: every crop once,
    under its own key (a writer that dropped the sample at a shard boundary fails here)."""
    from bench.shard_read import mixed_shards
    from bench.shard_throughput import convert_lmdb_loop, write_reencode

    files = sorted(crops.glob("*/*.jpg"))
    originals = {f"{f.parent.name}_{f.stem}": f for f in files}
    assert write_reencode(crops, tmp_path / "reencoded", 16) == 40
    members = tar_members(sorted((tmp_path / "reencoded").glob("lup-*.tar")))
    assert sorted(members) == sorted(f"{key}.{ext}" for key in originals for ext in ("jpg", "json"))
    for key, f in originals.items():  # re-encoded: the same image, not the same bytes
        ours = cv2.imdecode(np.frombuffer(members[f"{key}.jpg"], np.uint8), cv2.IMREAD_COLOR)
        theirs = cv2.imread(str(f), cv2.IMREAD_COLOR)
        assert ours.shape == theirs.shape and np.abs(ours.astype(int) - theirs).mean() < 3, key
        assert json.loads(members[f"{key}.json"]) == {"path": f"{f.parent.name}/{f.name}"}

    assert convert_lmdb_loop(crops, tmp_path / "lmdb") == 40
    with lmdb.open(str(tmp_path / "lmdb"), readonly=True, lock=False) as env, env.begin() as txn:
        stored = [value for _, value in txn.cursor()]
    assert sorted(stored) == sorted(f.read_bytes() for f in files)  # byte for byte, 40 distinct keys

    urls = mixed_shards(files, tmp_path / "mixed", 16)
    members = tar_members([Path(u) for u in urls])
    jpgs = [data for name, data in members.items() if name.endswith(".jpg")]
    assert len(urls) == 3 and sorted(jpgs) == sorted(f.read_bytes() for f in files)  # the files' crops


def test_measure_decode_signature(crops, tmp_path):
    """What bench/gpu.py calls, here on the CPU: both methods decode whole batches of the shards'
    crops for at least the seconds asked, and the keys the decode part reads are there."""
    from bench.shard_read import measure_decode, mixed_shards

    mixed_shards(sorted(crops.glob("*/*.jpg")), tmp_path / "shards", 16)
    m = measure_decode(str(tmp_path / "shards"), "cpu", 16, 0.05)
    assert m["device"] == "cpu" and m["batch"] == 16 and m["images"] == 32  # 2 whole batches of 40
    assert {"cpu_worker_crops_per_s", "device_crops_per_s", "device_over_cpu"} <= set(m)
    assert set(m["timed"]) == {"cpu_worker", "device"}
    for crops_done, seconds in m["timed"].values():
        assert crops_done >= 16 and crops_done % 16 == 0 and seconds >= 0.05
