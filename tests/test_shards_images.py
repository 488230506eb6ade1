"""build-shards --from-images: the 14,834 unlabeled crops, edge cases, shard caps, determinism."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import webdataset as wds
from PIL import Image

from common.errors import UsageError
from shards.build import build_shards
from shards.settings import ShardSettings


def shard_urls(root: Path) -> list[str]:
    index = pd.read_parquet(root / "shards" / "index.parquet")
    return [str(root / "shards" / name) for name in index["shard"]]


def read_back(root: Path, decode: str | None = None, keys: set[str] | None = None) -> list[dict]:
    """Samples of the build (all, or those of ``keys``), read with the webdataset library."""
    ds = wds.WebDataset(shard_urls(root), shardshuffle=False, empty_check=False)
    if keys is not None:
        ds = ds.select(lambda sample: sample["__key__"] in keys)
    if decode:
        ds = ds.decode(decode)
    return list(ds)


def test_unlabeled_folder_round_trips_through_webdataset(unlabeled_dir, tmp_path):
    summary = build_shards(ShardSettings(from_images=str(unlabeled_dir), max_samples=4000), tmp_path)
    sources = sorted(p for p in unlabeled_dir.rglob("*") if p.is_file())
    assert len(sources) == 14_834
    assert summary["samples"] == 14_834 and summary["failed"] == {} and summary["shards"] == 4

    samples = read_back(tmp_path)
    keys = [s["__key__"] for s in samples]
    expected = {p.relative_to(unlabeled_dir).with_suffix("").as_posix().replace("/", "_") for p in sources}
    assert len(keys) == 14_834 and set(keys) == expected and keys == sorted(keys)
    assert all("." not in k for k in keys)
    # JPEG sources are stored byte-for-byte: every sample's bytes equal its source file's
    by_key = {s["__key__"]: s for s in samples}
    for src in sources:
        key = src.relative_to(unlabeled_dir).with_suffix("").as_posix().replace("/", "_")
        assert by_key[key]["jpg"] == src.read_bytes()

    # decoded pixels (webdataset's decoder) equal the source image decoded on its own
    rng = np.random.default_rng(0)
    picked = set(rng.choice(sorted(expected), size=40, replace=False))
    decoded = read_back(tmp_path, "rgb8", keys=picked)
    assert len(decoded) == 40
    for s in decoded:
        src = unlabeled_dir / s["json"]["path"]
        reference = np.asarray(Image.open(src).convert("RGB"))
        assert np.array_equal(s["jpg"], reference)
        assert (s["json"]["width"], s["json"]["height"]) == (reference.shape[1], reference.shape[0])

    index = pd.read_parquet(tmp_path / "shards" / "index.parquet")
    assert index["n_samples"].sum() == 14_834
    for row in index.itertuples():
        data = (tmp_path / "shards" / row.shard).read_bytes()
        assert len(data) == row.bytes and hashlib.sha256(data).hexdigest() == row.sha256


def make_tree(src_dir: Path, dst: Path) -> dict[str, Path]:
    """A small tree with every case: JPEG, PNG (colour, gray, alpha), corrupt, empty, a text file,
    names that collide once sanitized, and dots in names."""
    jpgs = sorted(src_dir.glob("*.jpg"))[:6]
    files = {
        "a/b_c.jpg": jpgs[0],
        "a_b/c.jpg": jpgs[1],  # sanitizes to the same key as a/b_c.jpg
        "x.y.jpg": jpgs[2],
        "deep/er/p.jpg": jpgs[3],
    }
    for rel, src in files.items():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst / rel)
    pixels = cv2.imread(str(jpgs[4]))
    (dst / "png").mkdir()
    cv2.imwrite(str(dst / "png" / "colour.png"), pixels)
    cv2.imwrite(str(dst / "png" / "gray.png"), cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(dst / "png" / "alpha.png"), cv2.cvtColor(pixels, cv2.COLOR_BGR2BGRA))
    data = jpgs[5].read_bytes()
    (dst / "bad").mkdir()
    (dst / "bad" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (dst / "bad" / "empty.jpg").write_bytes(b"")
    (dst / "bad" / "text.png").write_bytes(b"not an image at all")
    (dst / "README.txt").write_text("not an image")
    return {"colour_png": jpgs[4]}


def test_folder_edge_cases(unlabeled_dir, tmp_path):
    tree = tmp_path / "tree"
    make_tree(unlabeled_dir / "MIT", tree)
    root = tmp_path / "ws"
    summary = build_shards(ShardSettings(from_images=str(tree), workers=1), root)
    assert summary["image_files"] == 10 and summary["other_files_ignored"] == 1
    assert summary["samples"] == 7 and summary["failed"] == {"corrupt": 2, "empty": 1}

    records = pd.read_parquet(root / "shards" / "samples.parquet").set_index("source_id")
    assert records.loc["bad/truncated.jpg", "status"] == "corrupt"
    assert records.loc["bad/text.png", "status"] == "corrupt"
    assert records.loc["bad/empty.jpg", "status"] == "empty"
    assert records.loc["a/b_c.jpg", "key"] == "a_b_c" and records.loc["a_b/c.jpg", "key"] == "a_b_c_dup1"
    assert records.loc["x.y.jpg", "key"] == "x_y"

    samples = {s["__key__"]: s for s in read_back(root, decode="rgb8")}
    assert set(samples) == {"a_b_c", "a_b_c_dup1", "x_y", "deep_er_p", "png_colour", "png_gray", "png_alpha"}
    # re-encoded PNG sources: JPEG q95 close to the lossless source pixels
    reference = cv2.cvtColor(cv2.imread(str(tree / "png" / "colour.png")), cv2.COLOR_BGR2RGB)
    got = samples["png_colour"]["jpg"]
    mse = np.mean((got.astype(float) - reference.astype(float)) ** 2)
    assert got.shape == reference.shape and 10 * np.log10(255**2 / mse) > 35
    assert samples["png_colour"]["json"]["reencoded"] is True
    assert samples["x_y"]["json"]["reencoded"] is False
    for key in ("png_gray", "png_alpha"):
        assert Image.open(io.BytesIO(samples_raw(root, key))).format == "JPEG"


def samples_raw(root: Path, key: str) -> bytes:
    return read_back(root, keys={key})[0]["jpg"]


def test_shards_respect_both_caps_and_ignore_worker_count(unlabeled_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("shards.sources.images.CHUNK", 8)  # several tasks, so workers=2 uses a pool
    tree = tmp_path / "tree"
    tree.mkdir()
    for src in sorted((unlabeled_dir / "CUHK").glob("*.jpg"))[:60]:
        shutil.copy(src, tree / src.name)
    big = unlabeled_dir.parent / "images" / "bus.jpg"
    shutil.copy(big, tree / "zz_big.jpg")
    max_bytes = 3 * 10240  # a few crops per shard; zz_big alone passes it
    assert big.stat().st_size > max_bytes
    one = build_shards(
        ShardSettings(from_images=str(tree), max_samples=7, max_bytes=max_bytes, workers=1), tmp_path / "w1"
    )
    two = build_shards(
        ShardSettings(from_images=str(tree), max_samples=7, max_bytes=max_bytes, workers=2), tmp_path / "w2"
    )
    assert one["samples"] == two["samples"] == 61 and one["shards"] == two["shards"] > 61 // 7

    index = pd.read_parquet(tmp_path / "w1" / "shards" / "index.parquet")
    sizes = {row.shard: (tmp_path / "w1" / "shards" / row.shard).stat().st_size for row in index.itertuples()}
    assert (index["n_samples"] <= 7).all()
    over = [name for name, size in sizes.items() if size > max_bytes]
    assert len(over) == 1 and index.set_index("shard").loc[over[0], "first_key"] == "zz_big"
    # shards hold the samples in key order
    keys = [s["__key__"] for s in read_back(tmp_path / "w1")]
    assert keys == sorted(keys) and len(keys) == 61
    for name in index["shard"]:
        assert (tmp_path / "w1" / "shards" / name).read_bytes() == (
            tmp_path / "w2" / "shards" / name
        ).read_bytes()


def test_importer_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        build_shards(ShardSettings(from_images=str(tmp_path / "nope")), tmp_path)
    with pytest.raises(UsageError, match="give one of"):
        build_shards(ShardSettings(from_images=str(tmp_path), from_lmdb=str(tmp_path)), tmp_path)
    with pytest.raises(UsageError, match="video_filter.parquet"):
        build_shards(ShardSettings(), tmp_path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "name", ["k.jpg", "a" * 96 + ".json", "a" * 97 + ".json", "é.jpg", "x/" * 80 + "y.jpg"]
)
@pytest.mark.parametrize("size", [0, 1, 512, 513, 70_000])
def test_member_bytes_matches_what_tarfile_writes(tmp_path, name, size):
    """The byte cap's arithmetic equals the bytes tarfile really writes (long names get pax headers)."""
    from shards.write.tarshard import ShardWriter, closed_size, member_bytes

    writer = ShardWriter(tmp_path / "t.tar", 10, 1 << 30)
    key, ext = name.rsplit(".", 1)
    writer.add(key, {ext: b"x" * size})
    assert writer._tar.offset == member_bytes(name, size)
    row = writer.close()
    assert row["bytes"] == closed_size(member_bytes(name, size)) == (tmp_path / "t.tar").stat().st_size
