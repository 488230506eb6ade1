"""``shards/plan.json``: what a build is made of; another plan's shards are never deleted.

``plan.json`` holds the plan's fingerprint (``progress.fingerprint``: the shaping settings and every
planned item) and, so that a refusal can say what changed, the source kind, its input path, the
settings and the number of items. A build whose plan differs from the one recorded beside existing
shard files is refused with one line naming the differences, before anything is written;
``--replace-shards`` builds the new plan beside the old shards instead (``shards.write.replace``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.errors import UsageError

PLAN_NAME = "plan.json"
DATA_GLOBS = ("lup-*.tar", "parts/*.parquet", "index.parquet", "samples.parquet")
DESCRIBED = ("source", "input", "settings", "items")  # what plan.json records beside the fingerprint


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
    """``"input /a -> /b; items 60 -> 61"``: the described fields that differ."""
    if not recorded:
        return "plan.json is missing or unreadable"
    if not any(name in recorded for name in DESCRIBED):
        return "plan.json of an older build records no details"
    old_settings, new_settings = recorded.get("settings") or {}, plan.get("settings") or {}
    pairs = [("source", recorded.get("source"), plan.get("source"))]
    pairs.append(("input", recorded.get("input"), plan.get("input")))
    pairs += [(k, old_settings.get(k), new_settings.get(k)) for k in sorted({*old_settings, *new_settings})]
    pairs.append(("items", recorded.get("items"), plan.get("items")))
    changed = [f"{name} {old} -> {new}" for name, old, new in pairs if old != new]
    return "; ".join(changed) or "same source, input and settings, but the planned items changed"


def check(out: Path, plan: dict[str, Any], replace: bool, beside: Path) -> bool:
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
