"""``--positives tracklet``: pair each crop with another crop of its tracklet from the same shard.

A shard's JSON member may name the crop's tracklet (``{"tracklet": "<id>"}``; absent or empty:
a tracklet of one crop). build-shards writes each tar in key order, so the crops of one video,
hence of each of its tracklets, lie together in a shard (interleaved with the video's other
tracklets when several people are tracked at once). Pairing therefore looks only *within one
shard's stream, in a window*: the crop at position i of a shard may be paired with any crop of
its tracklet at positions i - window .. i + window of the same shard (itself excluded), chosen
uniformly by the stream's own generator. A crop whose tracklet has no other crop in that window
(or no tracklet) is its own partner: two views of one crop, as in ``instance`` mode.

The pairing runs on the tar samples, before the shuffle buffer, so a pair travels through the
shuffle, the skip of a resumed loader and the batching as one sample: batches stay a pure
function of their position (the generator is seeded by (seed, epoch, rank, slot) and consumed in
stream order). Memory: the samples of the last ``2 * window + 1`` positions of the current
shard. Limits: crops of a tracklet further apart in a shard than ``window`` (or in another
shard) are never paired; a tracklet id is compared as a string, so ids must be unique across
videos and folders (the shards' writer makes them so).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

NO_TRACKLET = -1  # the id of a crop without a tracklet (and of the queue's initial random keys)
SUFFIXES = ("jpg", "json")  # what tracklet mode reads of each sample (instance mode: the .jpg only)


def tracklet_of(meta: bytes | None) -> str:
    """The tracklet named by a sample's JSON bytes; ``""`` for none (or JSON that is not an object)."""
    if not meta or b'"tracklet"' not in meta:  # most crops: no JSON parse
        return ""
    try:
        value = json.loads(meta).get("tracklet")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def tracklet_hash(tracklet: str) -> int:
    """A stable non-negative int64 id of a tracklet string; ``NO_TRACKLET`` (-1) for ``""``."""
    if not tracklet:
        return NO_TRACKLET
    digest = hashlib.blake2b(tracklet.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def pair(sample: dict[str, Any], partner: dict[str, Any], tracklet: str) -> dict[str, Any]:
    """The paired sample: the query crop's key and bytes, the partner's bytes and key, the id."""
    return {
        "__key__": sample["__key__"],
        "__url__": sample.get("__url__"),
        "jpg": sample.get("jpg", b""),
        "partner_jpg": partner.get("jpg", b""),
        "partner_key": partner["__key__"],
        "tracklet": tracklet_hash(tracklet),
    }


def shard_pairs(samples: Iterable[dict[str, Any]], window: int, rng: np.random.Generator) -> Iterator[dict]:
    """Every sample of one shard, in order, paired with a crop of its tracklet within ``window``."""
    held: deque[tuple[int, str, dict]] = deque()  # the samples of positions first - window .. read
    pending: deque[tuple[int, str, dict]] = deque()  # read, not yet emitted
    groups: dict[str, deque[tuple[int, dict]]] = {}  # tracklet -> its held samples, in order

    def emit() -> dict[str, Any]:
        i, tracklet, sample = pending.popleft()
        while held and held[0][0] < i - window:  # left the window of every later sample
            pos, old, _ = held.popleft()
            if old:
                group = groups[old]
                group.popleft()
                if not group:
                    del groups[old]
        group = groups.get(tracklet, ()) if tracklet else ()
        if len(group) < 2:
            return pair(sample, sample, tracklet)
        own = next(j for j, (pos, _) in enumerate(group) if pos == i)
        pick = int(rng.integers(len(group) - 1))
        return pair(sample, group[pick + (pick >= own)][1], tracklet)

    for pos, sample in enumerate(samples):
        tracklet = tracklet_of(sample.get("json"))
        held.append((pos, tracklet, sample))
        pending.append((pos, tracklet, sample))
        if tracklet:
            groups.setdefault(tracklet, deque()).append((pos, sample))
        while pending[0][0] + window <= pos:  # everything up to i + window has been read
            yield emit()
    while pending:
        yield emit()


def tracklet_samples(
    shards: Iterable[dict[str, Any]],
    read_shard: Callable[[dict[str, Any]], Iterable[dict[str, Any]]],
    window: int,
    seed: int,
) -> Iterator[dict[str, Any]]:
    """The paired samples of each shard in turn (``read_shard(item)``: that shard's tar samples)."""
    rng = np.random.default_rng(seed)
    for item in shards:
        yield from shard_pairs(read_shard(item), window, rng)
