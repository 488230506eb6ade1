"""A loader slot's tar samples: read straight from the tar headers, guarded against a stream that
can never yield one, and (``--positives tracklet``) paired within their shard. No heavy import:
``shardlist`` (loaded before a run takes its locks) and the benchmarks read shards with it.

Reading (``tar_samples``): WebDataset samples straight from the tar headers, what
``wds.tarfile_to_samples`` yields, ~9x leaner. Python's ``tarfile`` parses every header field in
pure Python (~25 us a member, two members a sample: half the time of a crop's decode). Training
needs each member's name and bytes only, so this reads the 512-byte ustar headers itself
(checksum checked; pax ``path`` records and GNU long names for names over 100 characters) in one
sequential buffered pass, and reads only the members whose suffix is wanted (the ``.json``
beside each ``.jpg`` is skipped, not read, unless ``--positives tracklet`` asks for it:
``SUFFIXES``). Samples are grouped as webdataset groups them: the key is the member name up to
the first dot of its basename, the suffix (lower-cased) the rest; consecutive members with one
key make a sample ``{"__key__", "__url__", suffix: bytes, ...}``; ``__meta__`` names and names
without a dot are skipped. A sample none of whose members is wanted is still yielded (without
data), so a caller can count it. A read error (a cut or garbled archive, a missing file, a
duplicate member) goes to ``handler`` with the shard's url appended to its arguments, as
webdataset does: ``handler`` returning True skips the rest of that shard, False ends the stream.
A ``UsageError`` (``open_shard`` refusing a tar that changed since it was checked:
``ShardChanged``) is no read error: it ends the stream whatever ``handler`` says.

Guarding (``StreamGuard``): end a resampled shard stream that can never yield a batch, instead of
warning forever. A slot's stream draws its shards with replacement without end, so a bad shard is
skipped and another drawn. When *every* shard of the slot is bad that loop never ends;
``StreamGuard`` ends it with ``UnreadableShards`` (one line) when

* every shard of the slot has been opened and none yielded a single sample (unreadable tars), or
* no image has decoded yet, every shard has been opened, and ``UNDECODABLE_LIMIT`` samples in a
  row had no decodable ``.jpg`` (tars of something else).

A slot with at least one good shard (or image) never trips it. A shard that is removed or
replaced while the run reads it is not skipped like an unreadable one: ``ShardChanged`` (raised
where the tar is opened, ``shardlist.ShardList.open``) ends the run.

Pairing (``tracklet_samples``, ``--positives tracklet``): each crop is paired with another crop of
its tracklet from the same shard. A shard's JSON member may name the crop's tracklet
(``{"tracklet": "<id>"}``; absent or empty: a tracklet of one crop). build-shards writes each tar
in key order, so the crops of one video, hence of each of its tracklets, lie together in a shard
(interleaved with the video's other tracklets when several people are tracked at once). Pairing
therefore looks only *within one shard's stream, in a window*: the crop at position i of a shard
may be paired with any crop of its tracklet at positions i - window .. i + window of the same
shard (itself excluded), chosen uniformly by the stream's own generator. A crop whose tracklet
has no other crop in that window (or no tracklet) is its own partner: two views of one crop, as
in ``instance`` mode. The pairing runs on the tar samples, before the shuffle buffer, so a pair
travels through the shuffle, the skip of a resumed loader and the batching as one sample:
batches stay a pure function of their position (the generator is seeded by (seed, epoch, rank,
slot) and consumed in stream order). Memory: the samples of the last ``2 * window + 1``
positions of the current shard. Limits: crops of a tracklet further apart in a shard than
``window`` (or in another shard) are never paired; a tracklet id is compared as a string, so ids
must be unique across videos and folders (the shards' writer makes them so).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zlib
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, BinaryIO

import numpy as np

from common.errors import UsageError
from common.tar_header import header_number, pax_path

log = logging.getLogger(__name__)
BLOCK = 512
BUFFER = 1 << 20
EMPTY = bytes(BLOCK)
META = re.compile(r"__[^/]*__($|/)")  # webdataset's skip_meta


def _octal(field: bytes) -> int:
    """``header_number``, with the common case (octal digits, NUL or space ended) first."""
    try:
        return int(field.rstrip(b"\x00 "), 8)
    except ValueError:
        return header_number(field)


def _checksum_ok(header: bytes) -> bool:
    """The header's checksum: the sum of its bytes with the checksum field read as 8 spaces.

    The sum is taken in C: Adler-32's low half is 1 + the byte sum mod 65521 (a header's sum is
    at most 130,560), so the test is exact modulo 65521.
    """
    want = _octal(header[148:156]) - 256 + sum(header[148:156]) + 1
    return want % 65521 == zlib.adler32(header) & 0xFFFF


def _read(f: BinaryIO, size: int, offset: int) -> bytes:
    data = f.read(size)
    if len(data) < size:
        raise ValueError(f"archive ends inside a member at byte {offset}")
    return data


def tar_members(f: BinaryIO, suffixes: Collection[str]) -> Iterator[tuple[str, str, bytes | None]]:
    """(key, suffix, bytes) of every regular file with a key, in archive order; bytes only for ``suffixes``."""
    offset, long_name = 0, None
    while True:
        header = f.read(BLOCK)
        if not header or header == EMPTY:
            return
        if len(header) < BLOCK:
            raise ValueError(f"archive ends inside a header at byte {offset}")
        if not _checksum_ok(header):
            raise ValueError(f"bad tar header checksum at byte {offset}")
        size, kind = _octal(header[124:136]), header[156:157]
        padded = -(-size // BLOCK) * BLOCK
        offset += BLOCK + padded
        if kind in (b"x", b"L"):  # the next header's name, in a pax record or a GNU long name
            payload = _read(f, padded, offset)[:size]
            long_name = pax_path(payload) if kind == b"x" else payload.rstrip(b"\x00").decode("utf-8")
            continue
        if kind not in (b"0", b"\x00"):
            f.seek(padded, 1)
            long_name = None
            continue
        name = long_name or header[:100].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
        if not long_name and header[257:263] == b"ustar\x00" and header[345]:
            name = header[345:500].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape") + "/" + name
        long_name = None
        split = key_and_suffix(name)
        if split is not None and split[1] in suffixes:
            yield split[0], split[1], _read(f, padded, offset)[:size]
            continue
        f.seek(padded, 1)
        if split is not None:
            yield split[0], split[1], None


def key_and_suffix(name: str) -> tuple[str, str] | None:
    """webdataset's split: up to the first dot of the basename, and the rest (lower-cased)."""
    folder, slash, base = name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    if not dot or not stem or (name[:2] == "__" and META.match(name)):
        return None
    return (folder + slash + stem if slash else stem), suffix.lower()


Opener = Callable[[str], BinaryIO]


def open_tar(url: str) -> BinaryIO:
    """The default ``open_shard``: the file, buffered for one sequential pass."""
    return open(url, "rb", buffering=BUFFER)


def shard_samples(
    url: str, suffixes: Collection[str], open_shard: Opener = open_tar
) -> Iterator[dict[str, Any]]:
    """The samples of one tar, with the bytes of the members whose suffix is in ``suffixes``."""
    sample: dict[str, Any] | None = None
    with open_shard(url) as f:
        for key, suffix, data in tar_members(f, suffixes):
            if sample is None or sample["__key__"] != key:
                if sample is not None:
                    yield sample
                sample = {"__key__": key, "__url__": url}
            if suffix in sample:
                raise ValueError(f"{key}.{suffix}: duplicate member in the tar")
            if data is not None:
                sample[suffix] = data
    if sample is not None:
        yield sample


def tar_samples(
    shards: Iterable[dict[str, Any]],
    handler: Callable[[BaseException], bool],
    suffixes: Collection[str],
    open_shard: Opener = open_tar,
) -> Iterator[dict[str, Any]]:
    """The samples of each ``{"url": path}`` in turn (a drop-in for ``wds.tarfile_to_samples``)."""
    for item in shards:
        url = item["url"]
        try:
            yield from shard_samples(url, suffixes, open_shard)
        except UsageError:
            raise
        except Exception as exn:  # the handler decides, as in webdataset
            exn.args = (*exn.args, url)
            if not handler(exn):
                return


UNDECODABLE_LIMIT = 100


class StreamStopped(UsageError):
    """The shard stream cannot go on: one line for the user, from a loader worker or not."""


class UnreadableShards(StreamStopped):
    """No shard of a loader slot yields anything to train on."""


class ShardChanged(StreamStopped):
    """A shard is gone or is no longer the file that was checked before training."""


def one_line(e: BaseException) -> str:
    """The stream's own message, also when a DataLoader worker re-raised it with a traceback."""
    text = str(e)
    marker = f"{type(e).__name__}: "
    if marker in text:
        text = text.rsplit(marker, 1)[1]
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def _url_of(exn: BaseException) -> str:
    """The shard webdataset appends to the arguments of a read error."""
    for arg in reversed(getattr(exn, "args", ())):
        if isinstance(arg, str) and arg.endswith(".tar"):
            return arg
    return "?"


class StreamGuard:
    """Watches one slot's shard urls, samples and decoded images (see the module doc)."""

    def __init__(self, urls: Iterable[str]):
        self.urls = set(urls)
        self.opened: set[str] = set()
        self.read: set[str] = set()
        self.failed: dict[str, str] = {}
        self.decoded = 0
        self.undecodable = 0

    def _stuck(self, what: str) -> UnreadableShards:
        some = sorted(self.urls)[:2]
        why = next(iter(self.failed.values()), "")
        names = ", ".join(some) + (", ..." if len(self.urls) > 2 else "")
        return UnreadableShards(
            f"none of the {len(self.urls)} shard(s) {names} {what}{f' ({why})' if why else ''}: "
            "check them with verify-shards"
        )

    def urls_of(self, shards: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pass the resampled shard urls on; stop once all were opened and none gave a sample."""
        for item in shards:
            if not self.read and self.opened >= self.urls:
                raise self._stuck("yields a sample")
            self.opened.add(item["url"])
            yield item

    def samples_of(self, samples: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pass the tar samples on, noting the shard each came from."""
        for sample in samples:
            self.read.add(sample.get("__url__", "?"))
            yield sample

    def handler(self, exn: BaseException) -> bool:
        """webdataset's error handler: log a shard's first error, skip it, go on."""
        url = _url_of(exn)
        if url not in self.failed:
            log.warning("shard %s unreadable (%s): skipped", url, repr(exn)[:200])
        self.failed[url] = type(exn).__name__
        return True

    def image(self, ok: bool) -> None:
        """Count a decoded (``ok``) or undecodable sample; raise when nothing ever decodes."""
        if ok:
            self.decoded += 1
            self.undecodable = 0
            return
        self.undecodable += 1
        if not self.decoded and self.undecodable >= UNDECODABLE_LIMIT and self.opened >= self.urls:
            raise self._stuck(f"holds a decodable .jpg in {self.undecodable} samples")


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
