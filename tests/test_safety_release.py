"""The release formats from outside, as a user meets them: issue 22, items 3 and 7.

- ``export-lmdb --output DIR`` deletes or replaces nothing it did not write: a folder without its
  marker (the official release, say), or a marked one holding a foreign file, keeps every byte;
  a SIGKILLed export's leftovers lie behind the marker and the next run finishes like a clean one.
- Hostile ``keys.pkl`` / ``dets.pkl`` (a 2**62-byte ``BINBYTES8``, ``bytes(2**62)``, 5,000 nested
  lists, ``numpy.ndarray((2**40,))``, an object array shorter than its shape, a non-UTF-8 key) and a
  garbage or cut-short ``data.mdb`` end in one line naming the file, exit 2: never a
  ``MemoryError``, ``RecursionError`` or crash.
"""

from __future__ import annotations

import json
import pickle
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pandas as pd
import pytest
from conftest import REPO

import pipeline
from shards.build import build_shards
from shards.release.lmdb_keys import format_key
from shards.settings import ShardSettings

MARKER = ".luperson-export"  # what export-lmdb writes first into a folder it takes (docs/shards.md)
# What CPython 3.11's unpickler would allocate before reading a byte of data: BINBYTES8 stating
# 2**62 bytes, followed by three.
BYTES8 = b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"abc."
# builtins.bytes(2**62) through REDUCE: the call itself allocates.
BYTES_CALL = b"\x80\x02cbuiltins\nbytes\n\x8a\x08" + struct.pack("<q", 2**62) + b"\x85R."
# 5,000 nested lists (EMPTY_LIST x 5,000, then APPEND x 4,999) as the boxes of frame 1 of a video:
# {1: [[[...]]]}, and a bundle holding that video.
NESTED_FRAME = b"}K\x01" + b"]" * 5000 + b"a" * 4999 + b"s"
NESTED_VIDEO = b"\x80\x02" + NESTED_FRAME + b"."
NESTED_BUNDLE = b"\x80\x02}X\x0d\x00\x00\x00usa+ny+nested" + NESTED_FRAME + b"s."
# numpy.ndarray(2**40): a terabyte of float64 through REDUCE.
NDARRAY_CALL = b"\x80\x02cnumpy\nndarray\n\x8a\x06" + (2**40).to_bytes(6, "little") + b"\x85R."


def object_array(shape: int, keys: list[str]) -> bytes:
    """A numpy object array as numpy pickles one: ``_reconstruct(ndarray, (0,), b"b")``, then BUILD
    with ``(1, (shape,), dtype("O8"), False, keys)``; ``shape != len(keys)`` crashes numpy 2.x."""
    dtype = b"cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNN"
    dtype += b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb"
    items = b"".join(b"X" + struct.pack("<I", len(k)) + k.encode() for k in keys)
    head = b"\x80\x03cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
    return head + b"(K\x01J" + struct.pack("<i", shape) + b"\x85" + dtype + b"\x89(" + items + b"ltb."


def one_line(capsys) -> str:
    """The single stderr line of a command that exited 2."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err[-2000:]
    return errors[0]


def cli_line(*args: str) -> str:
    """The single stderr line of ``python pipeline.py ARGS`` exiting 2, run apart: on the code
    before this fix a hostile file could crash the process (SIGSEGV in numpy, SIGBUS in LMDB)."""
    done = subprocess.run([sys.executable, "pipeline.py", *args], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def lmdb_items(folder: Path) -> dict[bytes, bytes]:
    env = lmdb.open(str(folder), readonly=True, lock=False)
    with env.begin() as txn:
        items = {bytes(k): bytes(v) for k, v in txn.cursor()}
    env.close()
    return items


@pytest.fixture(scope="module")
def crops(unlabeled_dir) -> list[Path]:
    return sorted((unlabeled_dir / "MIT").glob("*.jpg"))[:12]


@pytest.fixture(scope="module")
def built(crops, tmp_path_factory) -> Path:
    """A root with 12 crops in 3 shards (the input of export-lmdb)."""
    root = tmp_path_factory.mktemp("built") / "root"
    tree = root.parent / "crops"
    tree.mkdir()
    for crop in crops:
        shutil.copy(crop, tree / crop.name)
    build_shards(ShardSettings(from_images=str(tree), max_samples=5, workers=1), root)
    return root


@pytest.fixture()
def lup(crops, tmp_path) -> Path:
    """``lup/lmdb`` with 4 crops under official keys (a ``keys.pkl`` is the test's to write)."""
    folder = tmp_path / "lup"
    (folder / "lmdb").mkdir(parents=True)
    env = lmdb.open(str(folder / "lmdb"), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for n, crop in enumerate(crops[:4]):
            txn.put(format_key(0, 0, 0, n).encode(), crop.read_bytes())
    env.close()
    return folder


def export(root: Path, out: Path, *flags: str) -> int:
    return pipeline.main(["export-lmdb", "--root", str(root), "--output", str(out), *flags])


def release_folder(out: Path) -> None:
    """The official release as downloaded: ``lmdb/data.mdb`` and ``keys.pkl``."""
    (out / "lmdb").mkdir(parents=True)
    (out / "lmdb" / "data.mdb").write_bytes(b"the official database")
    (out / "keys.pkl").write_bytes(pickle.dumps(["00_00_0000_00000000"]))


def marked_with(path: str):
    def make(out: Path, root: Path) -> None:
        assert export(root, out) == 0  # an export of its own, then someone's file in it
        (out / path).write_text("my notes")

    return make


@pytest.mark.parametrize("case", ["release", "notes.txt", "lmdb/notes.txt"])
def test_export_keeps_every_byte_of_what_it_did_not_write(built, tmp_path, capsys, case):
    out = tmp_path / "out"
    if case == "release":
        release_folder(out)
    else:
        marked_with(case)(out, built)
    before = snapshot(out)
    capsys.readouterr()
    # --keys-format list: a new fingerprint, so an export of its own would be redone in full
    assert export(built, out, "--keys-format", "list") == 2
    line = one_line(capsys)
    assert str(out) in line and "nothing was changed" in line
    assert snapshot(out) == before


def test_export_takes_a_new_or_empty_folder_and_marks_it_first(built, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export(built, empty) == 0 and export(built, tmp_path / "new" / "deeper") == 0
    for out in (empty, tmp_path / "new" / "deeper"):
        assert {p.name for p in out.iterdir()} == {MARKER, "lmdb", "keys.pkl", "keys.parquet", "export.json"}
        assert len(pickle.loads((out / "keys.pkl").read_bytes())["keys"]) == 12


KILLED_EXPORT = """
import os, signal, sys
from pathlib import Path
from shards.release import export_lmdb as ex
from shards.settings import ExportLmdbSettings

def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[3] == "database":  # the database is whole in .lmdb.tmp, not yet renamed
    real = ex.write_database
    ex.write_database = lambda *args: (real(*args), die())
else:  # keys.pkl is written to its temporary name, not yet renamed
    os.replace = die
ex.export_lmdb(ExportLmdbSettings(output=sys.argv[2]), Path(sys.argv[1]))
"""


@pytest.mark.parametrize("where", ["database", "keys"])
def test_a_killed_export_is_its_own_and_the_next_run_finishes_it(built, tmp_path, where):
    out, clean = tmp_path / "out", tmp_path / "clean"
    done = subprocess.run(
        [sys.executable, "-c", KILLED_EXPORT, str(built), str(out), where], cwd=REPO, capture_output=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    left = {p.name for p in out.iterdir()}
    assert MARKER in left  # written before anything else
    assert (".lmdb.tmp" in left) if where == "database" else any(n.startswith(".keys.pkl.") for n in left)

    assert export(built, out) == 0 and export(built, clean) == 0
    assert {p.name for p in out.iterdir()} == {p.name for p in clean.iterdir()}  # no temporaries
    assert (out / "keys.pkl").read_bytes() == (clean / "keys.pkl").read_bytes()
    assert lmdb_items(out / "lmdb") == lmdb_items(clean / "lmdb") and len(lmdb_items(out / "lmdb")) == 12


HOSTILE_KEYS = {
    "bytes8": BYTES8,
    "bytes_call": BYTES_CALL,
    "ndarray_call": NDARRAY_CALL,
    "not_utf8": pickle.dumps(["00_00_0000_00000000", b"00_00_0000_\xff\xfe"]),
}


@pytest.mark.parametrize("case", HOSTILE_KEYS)
def test_a_hostile_keys_pkl_is_one_line(lup, tmp_path, capsys, case):
    (lup / "keys.pkl").write_bytes(HOSTILE_KEYS[case])
    capsys.readouterr()
    assert pipeline.main(["build-shards", "--from-lmdb", str(lup), "--root", str(tmp_path / "ws")]) == 2
    assert str(lup / "keys.pkl") in one_line(capsys)


def test_an_object_array_of_keys_loads_and_a_short_one_is_refused(lup, tmp_path):
    keys = [format_key(0, 0, 0, n) for n in range(4)]
    (lup / "keys.pkl").write_bytes(object_array(4, keys))  # well formed: a numpy array of the keys
    assert pipeline.main(["build-shards", "--from-lmdb", str(lup), "--root", str(tmp_path / "ok")]) == 0
    samples = pd.read_parquet(tmp_path / "ok" / "shards" / "samples.parquet")
    assert sorted(samples.loc[samples["status"] == "ok", "key"]) == keys

    (lup / "keys.pkl").write_bytes(object_array(5_000_000, keys))  # numpy itself crashes on it
    line = cli_line("build-shards", "--from-lmdb", str(lup), "--root", str(tmp_path / "ws"))
    assert str(lup / "keys.pkl") in line


@pytest.mark.parametrize("damage", ["garbage", "cut_short"])
def test_a_damaged_data_mdb_is_one_line(lup, tmp_path, damage):
    data = lup / "lmdb" / "data.mdb"
    if damage == "garbage":
        data.write_bytes(bytes(range(256)) * 64)
    else:  # the header pages only: reading a record would be a SIGBUS in the LMDB mapping
        data.write_bytes(data.read_bytes()[: 2 * 4096])
    assert str(data) in cli_line("build-shards", "--from-lmdb", str(lup), "--root", str(tmp_path / "ws"))


def listed_videos(root: Path, videos_dir: Path) -> None:
    """``videos.parquet`` as ``crawl --from-vnames`` leaves it: both lines downloaded."""
    video = str(videos_dir / "street-crossing.mp4")
    rows = [("street-crossing", "usa+boston+street-crossing", video), ("nested", "usa+ny+nested", video)]
    root.mkdir(parents=True)
    frame = pd.DataFrame(rows, columns=["video_id", "vname", "path"]).assign(status="ok", reason="")
    frame.to_parquet(root / "videos.parquet", index=False)


@pytest.mark.parametrize(
    "content", [BYTES8, BYTES_CALL, NESTED_BUNDLE], ids=["bytes8", "bytes_call", "nested"]
)
def test_a_hostile_dets_pkl_is_one_line(tmp_path, videos_dir, capsys, content):
    dets = tmp_path / "dets.pkl"
    dets.write_bytes(content)
    listed_videos(tmp_path / "ws", videos_dir)
    capsys.readouterr()
    args = ["build-shards", "--from-dets", str(dets), "--calibrate", "none", "--root", str(tmp_path / "ws")]
    assert pipeline.main(args) == 2
    assert str(dets) in one_line(capsys)


def test_a_nested_file_of_a_dets_folder_is_its_videos_bad_dets_only(tmp_path, videos_dir):
    root, folder = tmp_path / "root", tmp_path / "dets"
    folder.mkdir()
    listed_videos(root, videos_dir)
    good = {3: [(0, {"bbox": np.array([20.0, 30.0, 80.0, 200.0]), "score": 0.8})]}
    (folder / "usa+boston+street-crossing.pkl").write_bytes(pickle.dumps(good))
    (folder / "usa+ny+nested.pkl").write_bytes(NESTED_VIDEO)
    args = ["build-shards", "--from-dets", str(folder), "--calibrate", "none", "--workers", "1"]
    assert pipeline.main([*args, "--root", str(root)]) == 0
    report = json.loads((root / "dets_report.json").read_text())
    (bad,) = report["videos_not_cut"]
    assert bad["vname"] == "usa+ny+nested" and bad["status"] == "bad_dets" and "64 deep" in bad["reason"]
    assert report["crops"]["written"] == 1
