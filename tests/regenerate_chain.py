"""The LUPerson regeneration chain of ``test_lup_regenerate.py`` and ``test_lup_regenerate_lmdb.py``:
release-format ``vnames.txt`` and detection pickles for the sample footage, ``crawl --from-vnames``
(from a loopback HTTP server), ``build-shards --from-dets`` and ``export-lmdb``."""

from __future__ import annotations

import functools
import http.server
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import webdataset as wds

from bench.scale_parts.loopback import QuietFiles

REPO = Path(__file__).resolve().parent.parent
SOURCES = {  # vnames.txt line -> sample file served on loopback (None: the server has no such file)
    "usa+newyork+one-by-one-person-detection": "one-by-one-person-detection.mp4",  # 768x432
    "usa+newyork+concourse-walkers": "concourse-walkers.mp4",  # 640x360
    "uk+london+pedestrians": "pedestrians.mp4",  # 1920x1080, 96 frames
    "usa+boston+street-crossing": "street-crossing.mp4",  # 640x360
    "uk+london+doesnotexist": None,
}


def det(x1, y1, x2, y2, score=0.9):
    return {
        "bbox": np.array([x1, y1, x2, y2], np.float32),
        "score": np.float32(score),
        "kpts": np.zeros((17, 3)),
    }


# Released-format detections: {frame_id (1-based): [(obj_idx, {"bbox": ...}), ...]}.
DETS = {
    "usa+newyork+one-by-one-person-detection": {
        101: [(0, det(459.4, 68.6, 530.2, 209.5)), (1, det(351.0, 65.0, 472.0, 306.0))],
        401: [(0, det(375.5, 46.5, 466.5, 227.5))],  # .5 edges: NumPy rounds half to even, like the release
        801: [(2, det(350.0, 66.0, 426.0, 218.0)), (5, det(432.0, 249.0, 517.0, 418.0))],
        5000: [(0, det(10.0, 10.0, 60.0, 110.0))],  # past the last frame (1,394)
    },
    "usa+newyork+concourse-walkers": {  # one box reaches x = 700 in a 640 px wide video
        11: [(0, det(100.0, 50.0, 160.0, 200.0))],
        31: [(0, det(500.0, 40.0, 700.0, 300.0))],
    },
    "uk+london+pedestrians": {  # found on a 1280x720 copy: rescaled to the 1920x1080 download
        "size": (1280, 720),
        11: [(0, det(600.2, 100.4, 680.6, 330.0))],
        51: [(0, det(100.0, 200.0, 180.0, 420.0)), (1, det(900.0, 150.0, 990.0, 400.0))],
    },
    "usa+boston+street-crossing": {
        1: [(0, det(20.0, 30.0, 80.0, 200.0))],
        300: [(2, det(300.4, 100.6, 350.5, 250.5))],
    },
    "uk+london+doesnotexist": {11: [(0, det(1.0, 1.0, 30.0, 90.0))]},  # not downloadable
    "fr+paris+notlisted": {11: [(0, det(1.0, 1.0, 30.0, 90.0))]},  # not in vnames.txt
}
SCALE = {"uk+london+pedestrians": 1.5}
WRITTEN = ["usa+newyork+one-by-one-person-detection", "uk+london+pedestrians", "usa+boston+street-crossing"]


def run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "pipeline.py", *args], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def build_chain(base: Path, videos_dir: Path) -> dict:
    """Run the chain in ``base``: its root, ``base``, build-shards' stdout and every sample written."""
    (base / "vnames.txt").write_text("\n".join(SOURCES) + "\n")
    (base / "dets").mkdir()
    for vname, dets in DETS.items():
        with open(base / "dets" / f"{vname}.pkl", "wb") as f:
            pickle.dump(dets, f)
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietFiles, directory=videos_dir)
    )
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    root = base / "root"
    try:
        template = f"http://127.0.0.1:{srv.server_address[1]}/{{id}}.mp4"
        run(
            "crawl",
            "--from-vnames",
            str(base / "vnames.txt"),
            "--vnames-url-template",
            template,
            "--root",
            str(root),
        )
    finally:
        srv.shutdown()
        srv.server_close()
    build = run(
        "build-shards",
        "--from-dets",
        str(base / "dets"),
        "--root",
        str(root),
        "--max-samples",
        "3",
        "--calibrate",
        "none",
    )
    run("export-lmdb", "--root", str(root))
    index = pd.read_parquet(root / "shards" / "index.parquet")
    samples = list(wds.WebDataset([str(root / "shards" / s) for s in index["shard"]], shardshuffle=False))
    return {"root": root, "base": base, "stdout": build.stdout, "samples": samples}
