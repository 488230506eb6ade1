"""Print stage summaries (nested dicts of figures) as one aligned table."""

from __future__ import annotations

from typing import Any

from common.table import aligned


def flatten(summary: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"dropped": {"too_short": 1}}`` -> ``[("dropped.too_short", 1)]``."""
    rows: list[tuple[str, Any]] = []
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def format_table(summaries: dict[str, dict[str, Any]]) -> str:
    """Three columns: stage, figure, value."""
    rows = [("stage", "figure", "value")]
    for stage, summary in summaries.items():
        flat = flatten(summary) if summary else [("", "")]
        for i, (name, value) in enumerate(flat):
            rows.append((stage if i == 0 else "", name, format_value(value)))
    return aligned(rows)


def print_summary(summaries: dict[str, dict[str, Any]]) -> None:
    print(format_table(summaries), flush=True)
