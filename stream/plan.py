"""A streaming build's plan and what of it is done: the videos in plan order, ``shards/stream.json``
(the plan's fingerprint, checked on every run) and the complete shards a rerun keeps."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from collect.failures import OK, RETRY_ON_RERUN
from common.atomic import write_json
from common.errors import UsageError
from common.fanout import fanned_files
from common.manifests import samples
from common.manifests import videos as manifest
from shards.write import plan_guard, progress
from stream.video import Outcome, Stages

log = logging.getLogger(__name__)
PLAN = "stream.json"
RUNNING = ("engine", "address", "workers")


def plan_order(rows: list[dict[str, Any]]) -> list[int]:
    """The manifest rows to process, one per video id (its first row), in plan order; a pair of
    ids whose crop keys would interleave (``"a.b"`` and ``"a_b"``) is refused."""
    first: dict[str, int] = {}
    for i, row in enumerate(rows):
        first.setdefault(row["video_id"], i)
    order = sorted(first.values(), key=lambda i: samples.video_order(rows[i]["video_id"]))
    for a, b in zip(order, order[1:], strict=False):
        last = samples.sample_key(rows[a]["video_id"], 99_999_999, 999)
        if last >= samples.video_order(rows[b]["video_id"]):
            raise UsageError(
                f"videos {rows[a]['video_id']!r} and {rows[b]['video_id']!r} would share crop keys "
                "(keys keep only letters, digits, _ and -): rename one in videos.parquet"
            )
    return order


def stream_plan(stages: Stages, rows: list[dict[str, Any]], order: list[int]) -> dict[str, Any]:
    """What ``shards/stream.json`` records: the fingerprint of the videos and of every setting
    that shapes the shards, and what a refusal names when it differs."""
    cfg = stages.shards
    shaping: dict[str, Any] = {
        "max_samples": cfg.max_samples,
        "max_bytes": cfg.max_bytes,
        **cfg.encoding_plan(),
    }
    if cfg.from_dets:  # the release's boxes and how they are checked, instead of filter and detect
        shaping |= {"from_dets": str(Path(cfg.from_dets).resolve()), **cfg.dets_plan()}
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode())
    if not cfg.from_dets:
        for name in ("filter", "detect"):  # where the work runs is no part of the plan
            fields = {k: v for k, v in vars(getattr(stages, name)).items() if k not in RUNNING}
            digest.update(repr(sorted(fields.items())).encode())
    for i in order:
        digest.update(rows[i]["video_id"].encode() + b"\0")
    return {
        "fingerprint": digest.hexdigest(),
        "source": "stream",
        "input": str(stages.root / manifest.MANIFEST),
        "settings": shaping,
        "items": len(order),
    }


def start(out: Path, plan: dict[str, Any]) -> None:
    """Record ``plan`` in ``out/stream.json``, or resume it; shards of another plan stop the build."""
    recorded = plan_guard.read_plan(out, PLAN)
    if plan_guard.same_plan(recorded, plan):
        return
    found = plan_guard.data_files(out)
    if found:
        what = plan_guard.differences(recorded, plan) if recorded is not None else "a staged build-shards"
        raise UsageError(
            f"{out} holds shards of another plan ({what}); nothing was changed. Use another --root, "
            f"or move {out} away yourself"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / plan_guard.PLAN_NAME).unlink(missing_ok=True)
    write_json(out / PLAN, plan)


def durable(out: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The index rows of the complete shards 0..m-1 (``shards.write.progress``) and the last key
    their parts record (None: none); later parts and half-written files are removed."""
    progress.clean_temporaries(out)
    rows: list[dict[str, Any]] = []
    last = None
    for keys, row in progress.readable_parts(out):
        if not keys:
            break
        rows.append(row)
        last = keys[-1]
    progress.drop_parts_from(out, len(rows))
    return rows, last


def fetchable(row: dict[str, Any]) -> bool:
    """Downloaded, or still to try: crawl does not try again a video it gave up on (private, removed...)."""
    return row["status"] == OK or row["status"] in RETRY_ON_RERUN


def needs_task(record: Outcome | None, last_durable: str | None, released: bool = False) -> bool:
    """Whether a video must go through its task (again): no record, a download to retry, or crops
    not all in complete shards yet (``released``: ``--from-dets``, its boxes' records, cut or not)."""
    if record is None or record.crawl["status"] in RETRY_ON_RERUN:
        return True
    if released:
        return record.last_key is not None and (last_durable is None or record.last_key > last_durable)
    if record.crawl["status"] != OK or record.filter is None or record.filter[0] != "ok":
        return False
    if record.detect is None or record.last_key is None:
        return record.detect is None
    return last_durable is None or record.last_key > last_durable


def clear_leftovers(root: Path, rows: list[dict[str, Any]], todo: list[int], window: int) -> int:
    """Delete the raw files a killed run left of videos it had started and not recorded (their row
    not ``ok``), except the first ``window`` videos to do, which pick their files up at once: the
    others would sit on disk beside the window's downloads. Returns the videos cleared."""
    later = {rows[i]["video_id"] for i in todo[window:] if rows[i]["status"] != OK}
    cleared = set()
    for path in fanned_files(root / "videos"):
        video_id = path.name.split(".", 1)[0]
        if video_id in later:
            path.unlink(missing_ok=True)
            cleared.add(video_id)
    if cleared:
        log.info(
            "stream: deleted the partial or uncut downloads of %d videos a killed run left", len(cleared)
        )
    return len(cleared)
