"""A damaged or forged calibration cache (``<root>/calibration/<id>.json``) is measured again, never
trusted and never a traceback (issue 22, item 6); on real footage with the release's boxes made by
HOG as in ``test_calibrate_footage.py``."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from collections.abc import Callable

import pandas as pd
import pytest
from test_calibrate_footage import reencode, release

from shards.build import build_shards
from shards.release import calibrate, import_dets
from shards.settings import Calibration, ShardSettings
from shards.write.faces import Encoding

VNAME = "usa+boston+moving"
IDS = (40, 64, 88)  # released frame ids of the moving clip with HOG boxes (5 in all)
CALIBRATION = {"frames": 3, "height": 360}  # the clip's own height: no resize, quick


@pytest.fixture(scope="module")
def clean(tmp_path_factory, videos_dir) -> dict:
    """One video's task, calibrated and cut once: its records, its crops and the stored file."""
    base = tmp_path_factory.mktemp("calibration")
    moving = reencode(videos_dir / "street-crossing.mp4", base / "moving.mp4", 360, 120, step=3)
    (root := base / "root").mkdir()
    row = [("moving", VNAME, str(moving), "ok", "")]
    columns = ["video_id", "vname", "path", "status", "reason"]
    pd.DataFrame(row, columns=columns).to_parquet(root / "videos.parquet", index=False)
    (base / "dets.pkl").write_bytes(pickle.dumps({VNAME: release(moving, IDS)}))
    cal = Calibration(**CALIBRATION)
    task = import_dets.plan(str(base / "dets.pkl"), root, None, cal)[0][0]
    results = import_dets.run(task, Encoding(95))
    stored = calibrate.cache_file(root / calibrate.CACHE, "moving").read_bytes()
    return {"base": base, "root": root, "task": task, "results": results, "stored": stored}


def whole(change: Callable[[dict], None], digest: bool = False) -> Callable[[bytes], bytes]:
    """A tampering that edits the stored file's dict, keeping its key and its old digest; with
    ``digest``, a forger who also writes the digest of what was written (anyone can compute it)."""

    def apply(text: bytes) -> bytes:
        stored = json.loads(text)
        change(stored)
        if digest:
            canonical = json.dumps([stored["key"], stored["result"]], sort_keys=True, allow_nan=False)
            stored["digest"] = hashlib.sha256(canonical.encode()).hexdigest()
        return json.dumps(stored).encode()

    return apply


def edit(change: Callable[[dict], None], digest: bool = False) -> Callable[[bytes], bytes]:
    """A tampering that edits the stored result (see :func:`whole`)."""
    return whole(lambda stored: change(stored["result"]), digest)


TAMPERINGS: dict[str, Callable[[bytes], bytes]] = {
    "forged_geometry": edit(lambda r: r.update(outcome="verified", scale=0.5, offset=2)),
    "truncated": lambda t: t[: len(t) // 2],
    "empty": lambda t: b"",
    "not_utf8": lambda t: b"\xff\xfe\x00garbage",
    "a_list": lambda t: json.dumps([json.loads(t)]).encode(),
    "a_string": lambda t: b'"verified"',
    "result_a_list": whole(lambda s: s.update(result=[s["result"]])),
    "no_digest": whole(lambda s: s.pop("digest", None)),
    "missing_outcome": edit(lambda r: r.pop("outcome")),
    "wrong_types": edit(lambda r: r.update(scale="1", offset="0", agreement=None)),
    "huge_numbers": edit(lambda r: r.update(scale=1e308, offset=10**30)),
    "nan": edit(lambda r: r.update(scale=float("nan"))),
    "deep_nesting": lambda t: b"[" * 100_000,
    "padded_to_2_mib": lambda t: t + b" " * (2 << 20),
    "redigested_offset_7": edit(lambda r: r.update(offset=7), digest=True),
    "redigested_scale_off_the_candidates": edit(lambda r: r.update(scale=0.61), digest=True),
    "redigested_unknown_outcome": edit(lambda r: r.update(outcome="trusted"), digest=True),
    "redigested_bool_offset": edit(lambda r: r.update(offset=True), digest=True),
    "redigested_wrong_types": edit(lambda r: r.update(scale="1", agreement=None), digest=True),
    "redigested_result_a_list": whole(lambda s: s.update(result=[s["result"]]), digest=True),
    "redigested_no_frame_size": edit(lambda r: r.pop("frame_size"), digest=True),
}


def crops(results) -> dict[str, tuple[bytes | None, dict]]:
    return {r.key: (r.files and r.files["jpg"], r.record) for r in results}


@pytest.mark.parametrize("name", TAMPERINGS)
def test_a_damaged_or_forged_cache_is_not_trusted(clean, name):
    """Every tampering is refused by the one reader of the file (no exception), so it is measured."""
    calibrate.cache_file(clean["root"] / calibrate.CACHE, "moving").write_bytes(
        TAMPERINGS[name](clean["stored"])
    )
    assert calibrate.cached(clean["task"].context) is None


@pytest.mark.parametrize("name", ["forged_geometry", "huge_numbers", "a_list", "redigested_offset_7"])
def test_a_refused_cache_is_measured_again_and_cut_as_a_clean_run(clean, name):
    task, path = clean["task"], calibrate.cache_file(clean["root"] / calibrate.CACHE, "moving")
    path.write_bytes(TAMPERINGS[name](clean["stored"]))
    assert crops(import_dets.run(task, Encoding(95))) == crops(clean["results"])  # the same crops, cut alike
    assert path.read_bytes() == clean["stored"]  # and the measured result stored again


def test_the_clean_cache_is_reused(clean):
    """The control: the file as calibration wrote it is trusted as it is."""
    calibrate.cache_file(clean["root"] / calibrate.CACHE, "moving").write_bytes(clean["stored"])
    result = calibrate.cached(clean["task"].context)
    assert (result["outcome"], result["scale"], result["offset"]) == ("verified", 1.0, 0)
    assert result == json.loads(clean["stored"])["result"]


def test_a_rerun_of_a_finished_build_reports_the_measured_calibration(clean, tmp_path):
    """After a finished build only the report reads the file: a forged or damaged one is measured
    again there, so the report says what the crops were cut with, never the forgery."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(clean["root"] / "videos.parquet", root / "videos.parquet")
    cfg = ShardSettings(
        from_dets=str(clean["base"] / "dets.pkl"),
        max_samples=4,
        workers=1,
        calibration=Calibration(frames=3, height=360),
    )
    build_shards(cfg, root)
    first = json.loads((root / "dets_report.json").read_text())["calibration"]
    stored = calibrate.cache_file(root / calibrate.CACHE, "moving")
    shards = {p.name: p.read_bytes() for p in (root / "shards").iterdir() if p.is_file()}
    for tampering in ("forged_geometry", "a_list"):
        stored.write_bytes(TAMPERINGS[tampering](stored.read_bytes()))
        summary = build_shards(cfg, root)
        assert summary["regenerate"]["calibration"]["verified"] == 1, tampering
        assert json.loads((root / "dets_report.json").read_text())["calibration"] == first, tampering
        assert {p.name: p.read_bytes() for p in (root / "shards").iterdir() if p.is_file()} == shards
