"""The shards of ``bench/transfer.py``'s instance-vs-tracklet comparison: the unlabeled crops with
TownCentre's tracks as tracklets (``TownCentre/<person>_<frame>.jpg``), every other crop a
tracklet of one.

``build-shards --from-images DIR --tracklet-pattern REGEX`` writes them into ``<root>/shards``
when build-shards has that setting (a regex matched against the whole path relative to DIR; its
group ``tracklet`` names the tracklet). Without it they are written here the way build-shards
writes them: keys from the relative path (``TownCentre/37_796.jpg`` -> ``TownCentre_37_796``),
in key order, at most ``MAX_SAMPLES`` a tar, ``{"tracklet": "37"}`` in the JSON of a crop the
pattern matches, then ``index.parquet``. Either way the tracklets in the shards' JSON are counted
afterwards (also for shards already there); none is an error. Instance and tracklet runs train on
the same shards.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pipeline
from common.manifests.shard_index import write_shard_index
from pretrain.tarstream import SUFFIXES as READ
from pretrain.tarstream import shard_samples, tracklet_of

log = logging.getLogger("bench.transfer")
TOWNCENTRE = r"TownCentre/(?P<tracklet>[0-9]+)_[0-9]+[.]jpg"  # a TownCentre person = one tracklet
MAX_SAMPLES = 10_000  # build-shards' default samples per shard
SUFFIXES = {".jpg", ".jpeg"}


def tracklet_name(rel: str, pattern: re.Pattern) -> str:
    """``TownCentre/37_796.jpg`` -> ``37``: the group ``tracklet`` of ``pattern`` matching the whole
    relative path (build-shards' rule); "" when it does not match."""
    match = pattern.fullmatch(rel)
    return (match.group("tracklet") or "") if match else ""


def write_tracklet_shards(images: Path, out: Path, pattern: str) -> dict[str, int]:
    """Every JPEG under ``images`` as a sample of key-ordered tars in ``out``, with its tracklet."""
    import webdataset as wds

    regex = re.compile(pattern)
    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    samples = {}
    for f in files:
        rel = f.relative_to(images).as_posix()
        samples[re.sub(r"[^A-Za-z0-9_-]", "_", rel.rsplit(".", 1)[0])] = (f, tracklet_name(rel, regex))
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted(samples)
    for first in range(0, len(keys), MAX_SAMPLES):
        with wds.TarWriter(str(out / f"lup-{first // MAX_SAMPLES:06d}.tar")) as tar:
            for key in keys[first : first + MAX_SAMPLES]:
                f, tracklet = samples[key]
                meta = {
                    "source": f.relative_to(images).as_posix(),
                    **({"tracklet": tracklet} if tracklet else {}),
                }
                tar.write({"__key__": key, "jpg": f.read_bytes(), "json": json.dumps(meta).encode()})
    write_shard_index(out)
    return {"samples": len(keys), "shards": -(-len(keys) // MAX_SAMPLES)}


def count_tracklets(shards: Path) -> dict[str, int]:
    """Crops and distinct tracklets named in the shards' JSON, read with pretrain's tar reader."""
    crops, tracklets, named = 0, set(), 0
    for url in sorted(shards.glob("*.tar")):
        for sample in shard_samples(str(url), READ):
            crops += 1
            tracklet = tracklet_of(sample.get("json"))
            named += bool(tracklet)
            tracklets.add(tracklet or None)
    return {"crops": crops, "crops_in_tracklets": named, "tracklets": len(tracklets - {None})}


def build_shards(
    stage: Callable[..., dict[str, Any]],
    root: Path,
    images: Path,
    pattern: str | None,
    blur_faces: bool = False,
) -> dict:
    """``root/shards`` (kept when already there); ``pattern``: with tracklets (see the module doc);
    ``blur_faces``: build-shards ``--blur-faces``."""
    out = root / "shards"
    if not (out / "index.parquet").exists():
        if pattern is None:
            return {
                "shards": str(out),
                **stage("build-shards", root, from_images=str(images), blur_faces=blur_faces),
            }
        settings = pipeline.load_attr(pipeline.COMMANDS["build-shards"].settings)
        if "tracklet_pattern" in {f.name for f in dataclasses.fields(settings)}:
            stage(
                "build-shards", root, from_images=str(images), tracklet_pattern=pattern, blur_faces=blur_faces
            )
            how = "build-shards --tracklet-pattern"
        else:
            write_tracklet_shards(images, out, pattern)
            how = "bench/transfer_shards.py (build-shards has no --tracklet-pattern yet)"
        log.info("tracklet shards written by %s", how)
    elif pattern is None:
        return {"shards": str(out), "reused": True}
    counts = count_tracklets(out)
    log.info("tracklets in %s: %s", out, counts)
    if not counts["tracklets"]:
        raise SystemExit(
            f"transfer.py: the shards in {out} name no tracklet (pattern {pattern!r}): use another --root"
        )
    return {"shards": str(out), **counts}
