"""``python pipeline.py takedown``: take crops out of a built workspace on request, and out of every later build.

    python pipeline.py takedown --videos VIDEO_ID --reason "uploader's request of 2024-05-01"
    python pipeline.py takedown --keys KEY [KEY ...] --from-file ids.txt --reason "..."
    python pipeline.py takedown          # finish a takedown that was cut short

A video id names every crop of that video (``samples.parquet``'s ``video_id``), a key one crop
(``<video_id>_<frame:08d>_<box:03d>``, or any key of ``samples.parquet``); a line of ``--from-file``
may be either. The request is matched against ``shards/samples.parquet`` and written to
``<root>/takedown.pending.json``, in force from then on (``common.manifests.takedowns``); then it is
carried out, each step atomic and safe to repeat:

1. each tar holding a removed crop is written again without its members, the others copied as they
   are with the build's own ``ShardWriter`` (the bytes a build of only them writes), then its part
   file records the crop ``taken_down`` with the reason; every other shard stays byte for byte;
2. ``index.parquet``, ``samples.parquet`` (from the part files, as a build writes it) and
   ``tracklets.parquet``; ``verify.json`` is removed;
3. the LMDB exports (``<root>/lup_lmdb`` and the last ``export-lmdb --output``): entries deleted,
   the database compacted, ``keys.pkl`` and ``keys.parquet`` rewritten (``export_lmdb.remove_samples``);
4. ``stats.json``; ``figures/examples.png``, drawn from the crops, is removed (``stats`` draws it again);
5. the request's line is appended to ``<root>/takedowns.jsonl``, then the pending file is removed.

Killed anywhere, the next ``takedown``, ``build-shards`` or ``stream`` on the root finishes it from the
pending file, to the files an uninterrupted run leaves. Every build then leaves the crops out
(``shards.write.writer.Build``), each keeping its place in its shard: a rebuild of the same plan on
the root finds every shard complete, and a build from scratch writes the same shards.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from common.errors import UsageError, one_line, require_path
from common.integrity import sha256_file
from common.manifests import samples as samples_file
from common.manifests import shard_index, takedowns
from common.manifests import tracklets as tracklets_file
from common.settings import read_yaml_section
from shards.checks.stats import write_stats
from shards.release import export_lmdb, tarindex
from shards.release.export_folder import MARKER
from shards.settings import TakedownSettings
from shards.write import plan_guard, progress
from shards.write.tarshard import ShardWriter, shard_name
from shards.write.writer import writing

log = logging.getLogger(__name__)
MAX_ID = 256  # characters of a video id or key
MAX_FILE = 64 << 20  # bytes of a --from-file list
MAX_REASON = 2000
SHOWN = 20  # unmatched ids named one a line; the rest counted
SHARD_NUMBER = re.compile(r"lup-([0-9]+)\.tar")
ID_CHARACTERS = re.compile(r"[^\s\x00-\x1f\x7f]+")
LOGGED = ("id", "time", "reason", "videos", "keys", "unmatched")  # the request's fields the log keeps


@dataclass(frozen=True)
class Ids:
    """What a request names: video ids, keys, and ``--from-file`` lines that may be either."""

    videos: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()
    either: frozenset[str] = frozenset()

    def all(self) -> frozenset[str]:
        return self.videos | self.keys | self.either


@dataclass
class Matched:
    """What ``samples.parquet`` holds of the ids: the rows each id names and the crops to remove."""

    as_key: set[str] = field(default_factory=set)
    as_video: set[str] = field(default_factory=set)
    rows: Counter[str] = field(default_factory=Counter)  # every row an id names
    written: Counter[str] = field(default_factory=Counter)  # rows "ok": crops in a shard
    taken: Counter[str] = field(default_factory=Counter)  # rows taken down already
    removed: dict[str, list[str]] = field(default_factory=dict)  # shard -> keys to remove from it


def checked_id(text: str, where: str) -> str:
    """``text`` when it can be a video id or a key (printable, no spaces), else ``UsageError``."""
    if not ID_CHARACTERS.fullmatch(text) or len(text) > MAX_ID:
        raise UsageError(f"{where}: {one_line(repr(text), 80)} is not a video id or crop key")
    return text


def read_id_file(path: str) -> list[str]:
    """The ids of a ``--from-file`` list: one a line, ``#`` to the end of a line a comment."""
    p = require_path(path, "--from-file", is_dir=False)
    if p.stat().st_size > MAX_FILE:
        raise UsageError(f"--from-file {p} is {p.stat().st_size:,} bytes: not a list of ids")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UsageError(f"--from-file {p} is not UTF-8 text (byte {e.start})") from None
    ids = []
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            ids.append(checked_id(text, f"--from-file {p} line {n}"))
    return ids


def requested(cfg: TakedownSettings) -> Ids:
    """The ids the settings name, checked."""
    videos = frozenset(checked_id(v, "--videos") for v in cfg.videos)
    keys = frozenset(checked_id(k, "--keys") for k in cfg.keys)
    either = frozenset(read_id_file(cfg.from_file)) if cfg.from_file else frozenset()
    return Ids(videos, keys, either - videos - keys)


def checked_reason(text: str) -> str:
    reason = text.strip()
    if not reason:
        raise UsageError('a takedown needs --reason "..." (kept with the crops and in takedowns.jsonl)')
    if "\n" in reason or "\r" in reason or len(reason) > MAX_REASON:
        raise UsageError(f"--reason must be one line of at most {MAX_REASON} characters")
    return reason


def finished_build(root: Path):
    """The index of the root's shards, checked to be a finished build: every shard's part file
    records the tar the index lists, in place with its size; ``UsageError`` otherwise."""
    import pyarrow as pa

    out = root / "shards"
    for name in (plan_guard.NEXT, plan_guard.OLD):
        if (root / name).exists():
            raise UsageError(
                f"{root / name} holds an unfinished build-shards --replace-shards: rerun it to finish "
                "(or remove the folder), then take down"
            )
    index = shard_index.read_shard_index(out)
    unfinished = f"{out} is not a finished build: rerun build-shards (or stream) first"
    for number, row in enumerate(index.itertuples(index=False)):
        part = progress.part_path(out, number)
        if row.shard != shard_name(number) or not part.is_file():
            raise UsageError(f"{unfinished} ({row.shard} has no part file)")
        try:
            recorded = progress.read_row(part)
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
            raise UsageError(f"{part} is unreadable: rerun build-shards") from None
        if (recorded.get("sha256"), recorded.get("bytes")) != (row.sha256, row.bytes):
            raise UsageError(f"{unfinished} ({part.name} records another {row.shard})")
        tar = out / row.shard
        if not tar.is_file() or tar.stat().st_size != row.bytes:
            raise UsageError(f"{tar} is missing or not the size the index records: run verify-shards")
    if progress.part_path(out, len(index)).is_file():
        raise UsageError(f"{unfinished} (more part files than shards in the index)")
    return index


def match(out: Path, ids: Ids) -> Matched:
    """Every row of ``samples.parquet`` whose key or video id the request names."""
    keys, videos = ids.keys | ids.either, ids.videos | ids.either
    m = Matched()
    for batch in samples_file.batches(out, ["key", "status", "shard", "video_id"]):
        hit = batch[batch["key"].isin(keys) | batch["video_id"].isin(videos)]
        for key, status, shard, video in hit[["key", "status", "shard", "video_id"]].itertuples(
            index=False, name=None
        ):
            named = {key} & keys | {video} & videos
            m.as_key.update({key} & keys)
            m.as_video.update({video} & videos)
            m.rows.update(named)
            if status == "ok":
                m.removed.setdefault(shard, []).append(key)
                m.written.update(named)
            elif status == takedowns.STATUS:
                m.taken.update(named)
    return m


def export_folders(root: Path) -> list[Path]:
    """export-lmdb's folders of the root: ``<root>/lup_lmdb`` and the ``--output`` of its last run."""
    found = [root / "lup_lmdb"]
    saved = root / "settings" / "export_lmdb.yaml"
    if saved.is_file():
        try:
            output = read_yaml_section(saved, "export_lmdb").get("output")
        except UsageError as e:
            log.warning("%s: the export folder it names is not taken care of", e)
            output = None
        if isinstance(output, str) and output:
            found.append(Path(output))
    folders: dict[Path, Path] = {}
    for folder in found:
        if (folder / MARKER).is_file():
            folders.setdefault(folder.resolve(), folder)
        elif folder.is_dir():
            log.warning("%s is not a folder export-lmdb made: left as it is", folder)
    return sorted(folders)


def new_request(root: Path, ids: Ids, reason: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The request to carry out (``None``: nothing new to take down) and the summary so far."""
    index = finished_build(root)
    out = root / "shards"
    m = match(out, ids)
    force = takedowns.taken_down(root)
    named = m.as_key | m.as_video
    done = {
        i
        for i in named
        if not m.written[i] and (m.taken[i] == m.rows[i] or i in force.keys or i in force.videos)
    }
    unmatched = sorted(ids.all() - named)
    for i in unmatched[:SHOWN]:
        log.warning("%s matches no crop of %s: not taken down", i, out / samples_file.FILE)
    if len(unmatched) > SHOWN:
        log.warning("... and %d more ids that match no crop", len(unmatched) - SHOWN)
    if not named:
        raise UsageError(
            f"none of the {len(unmatched)} ids matches a video_id or key of {out / samples_file.FILE}: "
            "nothing was changed"
        )
    foreign = sorted(set(m.removed) - set(index["shard"]))
    if foreign:
        raise UsageError(
            f"{out / samples_file.FILE} names {foreign[0]}, which the index does not list: rerun build-shards"
        )
    summary = {"ids": len(ids.all()), "already_taken_down": len(done), "unmatched": len(unmatched)}
    if done:
        log.info("%d ids were taken down before", len(done))
    if named <= done:
        return None, summary | {"crops_removed": 0, "shards_rewritten": 0}
    request = {
        "id": uuid.uuid4().hex,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": reason,
        "videos": sorted(m.as_video - done),
        "keys": sorted(m.as_key - done),
        "unmatched": unmatched,
        "removed": dict(sorted(m.removed.items())),
        "exports": [
            {"path": str(folder), "current": export_lmdb.is_current(folder, index)}
            for folder in export_folders(root)
        ],
    }
    return request, summary


def kept_samples(tar: Path, members: list[tarindex.Member], removed: set[str]):
    """``(key, {ext: bytes})`` of every sample of ``tar`` not in ``removed``, in archive order."""
    with open(tar, "rb") as f:
        for key, group in groupby(members, key=lambda m: m.name.partition(".")[0]):
            if key in removed:
                continue
            files = {}
            for member in group:
                f.seek(member.offset)
                files[member.name.partition(".")[2]] = f.read(member.size)
            yield key, files


def rewrite_shard(out: Path, number: int, removed: set[str], reason: str) -> None:
    """Write shard ``number`` again without the samples ``removed``, then its part file with them
    ``taken_down``. Run again after a kill between the two, it finishes the part file."""
    tar, part = out / shard_name(number), progress.part_path(out, number)
    table, row = progress.read_part(part)
    records = table.to_pylist()
    written = [r["key"] for r in records if r["status"] == "ok"]
    try:
        members = tarindex.read_members(tar)
    except (OSError, ValueError) as e:
        raise UsageError(f"{one_line(str(e))}: run verify-shards") from None
    held = [key for key, _ in groupby(m.name.partition(".")[0] for m in members)]
    intact = held == written and sha256_file(tar) == row["sha256"]
    if not intact and held != [key for key in written if key not in removed]:
        raise UsageError(f"{tar} does not hold the samples {part.name} records: run verify-shards")
    writer = ShardWriter(tar, sys.maxsize, sys.maxsize)
    try:
        for key, files in kept_samples(tar, members, removed):
            writer.add(key, files)
        new_row = writer.close()
    except BaseException:
        writer.abort()
        raise
    keys = writer.keys or [""]  # every crop of the shard taken down: an empty tar
    new_row["first_key"], new_row["last_key"] = keys[0], keys[-1]
    for record in records:
        if record["key"] in removed:
            record.update(status=takedowns.STATUS, reason=reason, shard="")
    progress.write_part(out, number, records, new_row)


def rewrite_samples(out: Path, parts: int) -> None:
    """``samples.parquet`` as a build writes it: the records of the part files, then the rows of
    the items recorded after the last shard (failures, which no part holds) as they were."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetFile(out / samples_file.FILE) as before, samples_file.writer(out) as write:
        skip = 0
        for number in range(parts):
            table = progress.read_part(progress.part_path(out, number))[0]
            write(table)
            skip += table.num_rows
        if before.metadata.num_rows < skip:
            raise UsageError(
                f"{out / samples_file.FILE} holds fewer rows than the part files: rerun build-shards"
            )
        for batch in before.iter_batches():
            if skip < batch.num_rows:
                write(pa.Table.from_batches([batch.slice(skip)]))
            skip = max(0, skip - batch.num_rows)


def rewrite_tracklets(out: Path, removed: set[str]) -> None:
    """``tracklets.parquet`` without the removed crops (gone when none is left)."""
    if not (out / tracklets_file.FILE).is_file():
        return
    table = tracklets_file.read(out)
    left = table[~table["key"].isin(removed)]
    if len(left) == len(table):
        return
    if left.empty:
        (out / tracklets_file.FILE).unlink()
        return
    tracklets_file.write_sorted(out, left[tracklets_file.COLUMNS].itertuples(index=False, name=None))


def rewrite_tables(out: Path, removed: set[str]) -> Any:
    """index.parquet (from the part files, as a build writes it), samples.parquet, tracklets.parquet;
    the index."""
    parts = len(shard_index.read_shard_index(out))
    rows = [progress.read_row(progress.part_path(out, number)) for number in range(parts)]
    index = shard_index.write(out, rows)
    rewrite_samples(out, parts)
    rewrite_tracklets(out, removed)
    return index


def carry_out(root: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Carry out a request written to the pending file (every step can run again); its figures."""
    from tqdm import tqdm

    out = root / "shards"
    removed = {name: set(keys) for name, keys in request["removed"].items()}
    gone = set().union(*removed.values())
    with writing(out):
        shard_index.drop_stale_verdict(out, rewriting=True)
        for name in tqdm(sorted(removed), desc="takedown", unit="shard", disable=None):
            rewrite_shard(out, int(SHARD_NUMBER.fullmatch(name).group(1)), removed[name], request["reason"])
        index = rewrite_tables(out, gone)
    entries = 0
    for export in request["exports"]:
        folder = Path(export["path"])
        if (folder / MARKER).is_file():
            entries += export_lmdb.remove_samples(folder, gone, index if export["current"] else None)
            log.info("%s: the taken-down crops are out of the LMDB export", folder)
    examples = root / "figures" / "examples.png"
    if examples.is_file():
        examples.unlink()
        log.info("removed %s, drawn from the crops: python pipeline.py stats draws it again", examples)
    with writing(root / "stats.json"):
        write_stats(root)
    entry = {name: request[name] for name in LOGGED}
    entry |= {"crops_removed": len(gone), "shards_rewritten": sorted(removed)}
    takedowns.append(root, entry)
    takedowns.clear_pending(root)
    log.info("takedown %s: %d crops removed from %d shards", request["id"], len(gone), len(removed))
    return {"crops_removed": len(gone), "shards_rewritten": len(removed), "lmdb_entries_removed": entries}


def finish_pending(root: Path) -> dict[str, Any] | None:
    """Carry out the request a killed takedown left in the pending file; its figures (``None``: none).
    Builds call it first: an unreadable log stops them here, before they write anything."""
    takedowns.taken_down(root)
    request = takedowns.read_pending(root)
    if request is None:
        return None
    removed, exports = request.get("removed"), request.get("exports")
    if not (
        isinstance(removed, dict)
        and all(isinstance(n, str) and SHARD_NUMBER.fullmatch(n) for n in removed)
        and all(isinstance(keys, list) for keys in removed.values())
        and isinstance(exports, list)
        and all(isinstance(e, dict) and isinstance(e.get("path"), str) for e in exports)
        and isinstance(request.get("time"), str)
        and isinstance(request.get("unmatched"), list)
    ):
        raise UsageError(f"{takedowns.pending_path(root)} is not a takedown request; {takedowns.REMEDY}")
    log.warning("finishing the takedown of %s that was cut short", request["time"])
    return carry_out(Path(root), request)


def takedown(cfg: TakedownSettings, root: Path) -> dict[str, Any]:
    """Take the named crops out of the root's shards, tables and LMDB exports, and keep them out of
    every later build; with no ids, finish a takedown that was cut short. Returns the figures."""
    root = Path(root)
    ids = requested(cfg)
    reason = checked_reason(cfg.reason) if ids.all() else ""
    finished = finish_pending(root)
    if not ids.all():
        if finished is None:
            raise UsageError('nothing to take down: give --videos, --keys or --from-file, and --reason "..."')
        return {"finished_pending": 1, **finished}
    request, summary = new_request(root, ids, reason)
    if finished is not None:
        summary["finished_pending"] = 1
    if request is None:
        log.info("nothing new to take down")
        return summary
    takedowns.write_pending(root, request)
    return summary | carry_out(root, request)
