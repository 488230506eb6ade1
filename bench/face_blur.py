#!/usr/bin/env python
"""What ``--blur-faces`` costs per crop, and sheets to count by eye the faces it leaves.

Crops: ``--per-set`` of each Re-ID set (VIPeR, PRID, GRID, CUHK03: every ``len // per-set``-th
file) and every crop of ``--shards`` (default the demo's, cut from the sample footage, with the
head keypoints detect stored). For each crop, one process, one thread:

* baseline: JPEG-encode the crop at quality 95 (what build-shards does without blurring);
* blur: BlazeFace + head keypoints + the blur, then the same encode (``Encoding.blur``).

Printed: ms per crop of each, their ratio, and per set the crops with a face blurred. With
``--sheets DIR`` it also writes contact sheets, each tile the crop before (left) and after
(right) of its top 45 %, numbered, with ``sheets.json`` naming the crop of each number: the input of the face
recall count by eye (README, "Face blurring").

    python bench/face_blur.py --sheets /tmp/face_sheets      # 40 crops a set + the demo's shards
    python bench/face_blur.py --smoke                        # 3 crops a set, no sheets (seconds)
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__" and __spec__ is None:  # run by path: run as a module (see bench/__init__.py)
    from bench import run_as_module

    run_as_module("bench.face_blur")

import cv2
import numpy as np

from common.atomic import write_json
from common.data import data_root
from common.media.images import encode_jpeg
from common.table import aligned
from shards.write.faces import Encoding, FaceBlur

SETS = ("VIPeR", "PRID", "GRID", "CUHK03")
RESULTS = REPO / "bench" / "results"


def reid_crops(reid: Path, per_set: int) -> list[tuple[str, str, np.ndarray, list | None, tuple[int, int]]]:
    """``(set, name, BGR crop, keypoints, origin)`` of every ``len // per_set``-th file of each set."""
    crops = []
    for name in SETS:
        files = sorted(p for p in (reid / name).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
        for path in files[:: max(1, len(files) // per_set)][:per_set]:
            crops.append((name, path.name, cv2.imread(str(path)), None, (0, 0)))
    return crops


def shard_crops(
    shards: Path, limit: int | None
) -> list[tuple[str, str, np.ndarray, list | None, tuple[int, int]]]:
    """The crops of ``shards`` with the keypoints and crop origin their JSON holds."""
    crops = []
    for tar_path in sorted(shards.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name in sorted(n for n in members if n.endswith(".jpg")):
                meta = json.loads(tar.extractfile(members[name[:-4] + ".json"]).read())
                pixels = cv2.imdecode(np.frombuffer(tar.extractfile(members[name]).read(), np.uint8), 1)
                origin = tuple(meta.get("crop_xyxy", [0, 0])[:2])
                crops.append(("footage", name[:-4], pixels, meta.get("keypoints"), origin))
    return crops[:limit]


def measure(crops: list, encoding: Encoding) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Per crop: baseline and blur seconds, the faces record, whether the JPEG changed."""
    encoding.detector()  # loaded before the clock
    rows, blurred = [], []
    for group, name, pixels, keypoints, origin in crops:
        start = time.perf_counter()
        plain = encode_jpeg(pixels, encoding.quality)
        base_s = time.perf_counter() - start
        start = time.perf_counter()
        out, record = encoding.blur(pixels, keypoints, origin)
        jpg = encode_jpeg(out, encoding.quality)
        blur_s = time.perf_counter() - start
        faces = record["faces"]
        rows.append(
            {"set": group, "crop": name, "base_s": base_s, "blur_s": blur_s, "changed": jpg != plain}
            | {k: faces[k] for k in ("blurred", "blazeface", "keypoints", "blazepose")}
        )
        blurred.append(out)
    return rows, blurred


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per set and for all: crops, crops with a face blurred, ms per crop (baseline, blur), ratio."""
    out = []
    for group in [*dict.fromkeys(r["set"] for r in rows), "all"]:
        mine = [r for r in rows if group in ("all", r["set"])]
        base = 1000 * float(np.mean([r["base_s"] for r in mine]))
        blur = 1000 * float(np.mean([r["blur_s"] for r in mine]))
        out.append(
            {"set": group, "crops": len(mine), "with_faces": sum(r["blurred"] > 0 for r in mine)}
            | {f"by_{k}": sum(r[k] > 0 for r in mine) for k in ("blazeface", "keypoints", "blazepose")}
            | {"encode_ms": round(base, 2)}
            | {"blur_encode_ms": round(blur, 2), "ratio": round(blur / base, 1) if base else None}
        )
    return out


def write_sheets(folder: Path, crops: list, blurred: list[np.ndarray], per_sheet: int = 40) -> None:
    """Contact sheets of the top 45 % of each crop (where a standing person's head is), before and
    after, 140 px high, 8 pairs a row, numbered; ``sheets.json`` names each number's crop."""
    folder.mkdir(parents=True, exist_ok=True)
    tiles, names = [], []
    for n, ((group, name, pixels, _, _), after) in enumerate(zip(crops, blurred, strict=True)):
        top = max(1, round(0.45 * pixels.shape[0]))
        scale = 140 / top
        width = min(120, max(1, round(pixels.shape[1] * scale)))
        pair = [cv2.resize(p[:top], (width, 140), interpolation=cv2.INTER_CUBIC) for p in (pixels, after)]
        tile = np.zeros((156, 246, 3), np.uint8)
        tile[:140, :width], tile[:140, 122 : 122 + width] = pair
        cv2.putText(tile, str(n), (2, 152), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        tiles.append(tile)
        names.append(f"{group}/{name}")
    for first in range(0, len(tiles), per_sheet):
        chunk = tiles[first : first + per_sheet]
        chunk += [np.zeros_like(tiles[0])] * (-len(chunk) % 8)
        rows = [np.concatenate(chunk[i : i + 8], axis=1) for i in range(0, len(chunk), 8)]
        cv2.imwrite(str(folder / f"sheet_{first // per_sheet:02d}.png"), np.concatenate(rows, axis=0))
    write_json(folder / "sheets.json", dict(enumerate(names)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="data folder (default: common/data.py's)")
    p.add_argument("--shards", default=str(REPO / "luperson_data" / "demo" / "shards"))
    p.add_argument("--per-set", type=int, default=40)
    p.add_argument("--min-score", type=float, default=FaceBlur.min_score)
    p.add_argument("--sheets", default=None, help="folder for the before/after contact sheets")
    p.add_argument("--out", default=str(RESULTS / "face_blur.json"))
    p.add_argument("--smoke", action="store_true", help="3 crops a set, 3 from the shards, no sheets")
    args = p.parse_args(argv)
    data = Path(args.data) if args.data else data_root()[0]
    per_set = 3 if args.smoke else args.per_set
    crops = reid_crops(data / "reid", per_set)
    if Path(args.shards).is_dir():
        crops += shard_crops(Path(args.shards), 3 if args.smoke else None)
    model = data / "models" / "face_detection_full_range_sparse.tflite"
    cv2.setNumThreads(1)
    encoding = Encoding(95, True, FaceBlur(model=str(model), min_score=args.min_score))
    rows, blurred = measure(crops, encoding)
    table = summary(rows)
    if args.sheets and not args.smoke:
        write_sheets(Path(args.sheets), crops, blurred)
    report = {"argv": sys.argv[1:] if argv is None else argv, "min_score": args.min_score, "table": table}
    write_json(Path(args.out), report | {"crops": rows})
    print(aligned([list(table[0])] + [list(map(str, r.values())) for r in table]))
    return report | {"crops": rows}


if __name__ == "__main__":
    main()
