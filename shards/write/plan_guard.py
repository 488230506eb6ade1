"""``shards/plan.json``: what a build is made of, and the one check of it against the root.

``plan.json`` holds the plan's fingerprint (:func:`fingerprint`: the settings that shape the shards
and every planned item) and, so that a refusal can say what changed, the source kind, its input
path, the settings and the number of items (:func:`plan_record`). :func:`place` checks the plan
once, before anything is written: a root without shard files, or with this plan's (a resume),
builds in ``shards``. Another plan's shards are never deleted: the build is refused with one line
naming the differences, or (``--replace-shards``) the new plan is built beside them in
``shards.next``, resumable there like any build, and :func:`swap_in` makes it the root's
``shards`` once complete: ``shards`` -> ``.shards.old``, ``shards.next`` -> ``shards``, then
``.shards.old`` is deleted. A run killed inside the swap is finished by the next build-shards on
that root (:func:`recover`), so the root ends with the old or the new shards, whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.atomic import write_json
from common.errors import UsageError
from common.manifests import samples
from common.manifests.shard_index import INDEX_NAME, VERIFY_NAME
from shards.settings import IMPORTER_FIELDS, ShardSettings
from shards.write.items import Task
from shards.write.task_file import count_items, task_rows

log = logging.getLogger(__name__)
PLAN_NAME = "plan.json"
DATA_GLOBS = ("lup-*.tar", "parts/*.parquet", INDEX_NAME, samples.FILE)
CURRENT, NEXT, OLD = "shards", "shards.next", ".shards.old"


def fingerprint(settings: dict[str, Any], tasks: Sequence[Task]) -> str:
    """sha256 of the settings that shape the shards and of every planned item."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for context, rows in task_rows(tasks):
        h.update(json.dumps(context, sort_keys=True, default=str).encode())
        h.update(b"".join(key.encode() + b"\0" + payload.encode() for key, payload in rows))
    return h.hexdigest()


def plan_record(cfg: ShardSettings, root: Path, source: str, tasks: Sequence[Task]) -> dict[str, Any]:
    """What ``plan.json`` records of the ``source`` plan ``tasks``: the fingerprint of the settings
    that shape the shards (the source, the shard caps, the encoding) and of the items, and what a
    refusal names when it differs."""
    settings = {"source": source, "max_samples": cfg.max_samples, "max_bytes": cfg.max_bytes}
    settings |= cfg.encoding_plan()
    given = next((getattr(cfg, name) for name in IMPORTER_FIELDS if getattr(cfg, name)), None)
    shaping = {k: v for k, v in settings.items() if k != "source"}
    if cfg.from_dets:
        shaping |= cfg.dets_plan()
    return {
        "fingerprint": fingerprint(settings, tasks),
        "source": source,
        "input": str(Path(given).resolve() if given else root / "detections"),
        "settings": shaping,
        "items": count_items(tasks),
    }


def read_plan(out: Path, name: str = PLAN_NAME) -> dict[str, Any] | None:
    """The plan recorded in ``out`` (``name``: the streaming build keeps its own, ``stream.json``):
    ``None`` when there is none, ``{}`` when it is unreadable."""
    path = out / name
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def data_files(out: Path) -> list[Path]:
    """Shard files of a build, finished or not (tars, part files, index, manifest)."""
    return [path for pattern in DATA_GLOBS for path in out.glob(pattern)]


def same_plan(recorded: dict[str, Any] | None, plan: dict[str, Any]) -> bool:
    return bool(recorded) and recorded.get("fingerprint") == plan["fingerprint"]


def differences(recorded: dict[str, Any], plan: dict[str, Any]) -> str:
    """``"input /a -> /b; items 60 -> 61"``: the recorded fields that differ."""
    if not recorded:
        return "plan.json is missing or unreadable"
    old_settings, new_settings = recorded.get("settings") or {}, plan.get("settings") or {}
    pairs = [("source", recorded.get("source"), plan.get("source"))]
    pairs.append(("input", recorded.get("input"), plan.get("input")))
    pairs += [(k, old_settings.get(k), new_settings.get(k)) for k in sorted({*old_settings, *new_settings})]
    pairs.append(("items", recorded.get("items"), plan.get("items")))
    changed = [f"{name} {old} -> {new}" for name, old, new in pairs if old != new]
    return "; ".join(changed) or "same source, input and settings, but the planned items changed"


def builds_beside(out: Path, plan: dict[str, Any], replace: bool, beside: Path) -> bool:
    """Whether the plan is to be built ``beside`` (``True``) or in ``out`` (``False``).

    In ``out`` when it holds no shard files or the same plan (a resume). Otherwise the old shards
    are kept: ``UsageError`` naming the differences, or (``replace``) build beside them, unless the
    new plan is empty (nothing would replace them).
    """
    recorded = read_plan(out)
    found = data_files(out)
    if not found or same_plan(recorded, plan):
        return False
    shards = len([p for p in found if p.suffix == ".tar"])
    what = f"{out} holds {shards} shard(s) of another plan ({differences(recorded or {}, plan)})"
    if not replace:
        pending = read_plan(beside)
        hint = " (a replacement of this plan is in progress there)" if same_plan(pending, plan) else ""
        raise UsageError(
            f"{what}; nothing was changed. To replace them, rerun with --replace-shards (the new plan is "
            f"built in {beside}{hint} and swapped in only when complete); or use another --root, "
            f"or move {out} away yourself"
        )
    if not plan.get("items"):
        raise UsageError(f"{what}; the new plan has no items, so it replaces nothing: nothing was changed")
    return True


def reset(out: Path) -> None:
    """Forget the shard files of another plan in ``out`` (only ever called where that is allowed)."""
    for path in [*out.glob("lup-*.tar"), *(out / "parts").glob("*.parquet")]:
        path.unlink()
    for name in (INDEX_NAME, samples.FILE, VERIFY_NAME):
        (out / name).unlink(missing_ok=True)


def place(root: Path, plan: dict[str, Any], replace: bool) -> Path:
    """The folder ``plan`` is built in, with the plan recorded in its ``plan.json``: ``root/shards``,
    or, when that holds another plan's shards and ``replace`` allows it, ``root/shards.next``
    (:func:`builds_beside`; ``UsageError`` when neither may hold it).

    A swap a killed run left half done is finished first. The folder keeps the shard files of the
    same plan, for the writer to resume; an unfinished ``shards.next`` of another plan is started over.
    """
    recover(root)
    current, staging = root / CURRENT, root / NEXT
    beside = builds_beside(current, plan, replace, staging)
    if not beside and staging.is_dir():
        log.warning("%s holds an unfinished --replace-shards build of another plan", staging)
    out = staging if beside else current
    if not same_plan(read_plan(out), plan):
        if data_files(out):
            log.warning("%s held an unfinished build of another plan: starting it over", out)
        reset(out)
    write_json(out / PLAN_NAME, plan)
    return out


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(root: Path) -> None:
    """Finish a swap that a killed run left half done (``.shards.old`` still there)."""
    old, current, new = root / OLD, root / CURRENT, root / NEXT
    if not old.is_dir():
        return
    if not current.exists():
        (new if new.is_dir() else old).rename(current)  # the new shards were complete; else undo
        _sync_dir(root)
    if old.exists():
        log.warning("finishing an interrupted --replace-shards: removing %s", old)
        shutil.rmtree(old)


def swap_in(root: Path) -> None:
    """Make the complete ``shards.next`` the root's ``shards``, then delete the old shards."""
    old, current, new = root / OLD, root / CURRENT, root / NEXT
    recover(root)
    if current.exists():
        current.rename(old)
    new.rename(current)
    _sync_dir(root)
    log.warning("replaced the previous shards with the new plan's; removing %s", old)
    shutil.rmtree(old, ignore_errors=True)
