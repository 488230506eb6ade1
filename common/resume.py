"""Whether a run may resume from what an earlier run left: only settings that do not change the
result may differ. Each stage names those settings (its own list) and words its own refusal."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from common.errors import UsageError


def check_resume_settings(
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    may_change: Collection[str],
    *,
    made_with: str,
    fix: str,
    missing_ok: bool,
) -> None:
    """``UsageError`` naming the first setting outside ``may_change`` whose ``current`` value differs
    from the ``saved`` one: ``"<made_with> key=<saved>, not <current>: <fix>"``.

    A setting absent from ``saved`` (written before the setting existed) is skipped when
    ``missing_ok``, else compared as ``None``.
    """
    for key, value in current.items():
        if key in may_change or (missing_ok and key not in saved):
            continue
        if saved.get(key) != value:
            raise UsageError(f"{made_with} {key}={saved.get(key)!r}, not {value!r}: {fix}")
