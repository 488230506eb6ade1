"""The shards of ``bench/transfer.py``'s instance-vs-tracklet comparison: the unlabeled crops with
TownCentre's tracks as tracklets (``TownCentre/<person>_<frame>.jpg``), every other crop a
tracklet of one.

``build-shards --from-images DIR --tracklet-pattern REGEX`` writes them into ``<root>/shards`` (a
regex matched against the whole path relative to DIR; its group ``tracklet`` names the
tracklet). The tracklets in the shards' JSON are then counted (also for shards already there);
none is an error. Instance and tracklet runs train on the same shards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pretrain.tarstream import SUFFIXES as READ
from pretrain.tarstream import shard_samples, tracklet_of

log = logging.getLogger("bench.transfer")
TOWNCENTRE = r"TownCentre/(?P<tracklet>[0-9]+)_[0-9]+[.]jpg"  # a TownCentre person = one tracklet


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
        stage("build-shards", root, from_images=str(images), tracklet_pattern=pattern, blur_faces=blur_faces)
    elif pattern is None:
        return {"shards": str(out), "reused": True}
    counts = count_tracklets(out)
    log.info("tracklets in %s: %s", out, counts)
    if not counts["tracklets"]:
        raise SystemExit(
            f"transfer.py: the shards in {out} name no tracklet (pattern {pattern!r}): use another --root"
        )
    return {"shards": str(out), **counts}
