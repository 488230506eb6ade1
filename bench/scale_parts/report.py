"""The tables of ``bench/scale.py``: every measurement, then each stage's growth and projection."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bench.scale_parts.context import FULL, NL_CROPS
from bench.scale_parts.measure import MAX_EXPONENT, MAX_FILES_PER_FOLDER, exponent, linear
from common.table import aligned

# where each unit is carried: LUPerson's full size, and the larger target (LUPerson-NL's 10M crops)
TARGETS = {
    "crops": (FULL["crops"], NL_CROPS),
    "videos": (FULL["videos"], FULL["searched"]),
    "tasks": (FULL["videos"], FULL["searched"]),
}
LIMIT_MIB = {"crops": (8 * 1024, 16 * 1024), "videos": (8 * 1024, 16 * 1024), "tasks": (8 * 1024, 16 * 1024)}


def growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage: the time exponent, the memory line (fixed MiB + KiB per unit), the projections to
    the targets of its unit, and the limits it breaks (an empty list: none)."""
    by_stage: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["rc"] == 0:
            by_stage[(row["stage"], row["unit"])].append(row)
    out = []
    for (stage, unit), runs in by_stage.items():
        runs.sort(key=lambda r: r["size"])
        sizes = [r["size"] for r in runs]
        slope = exponent(sizes, [r["seconds"] for r in runs])
        line = linear(sizes, [r["peak_mib"] for r in runs])
        targets = TARGETS.get(unit, (FULL["crops"], NL_CROPS))
        projected = [None if line is None else line[0] + line[1] * t for t in targets]
        breaks = []
        if slope is not None and slope > MAX_EXPONENT:
            breaks.append(f"time exponent {slope:.2f} > {MAX_EXPONENT}")
        for p, t, limit in zip(projected, targets, LIMIT_MIB.get(unit, (8192, 16384)), strict=True):
            if p is not None and p > limit:
                breaks.append(f"{p / 1024:.1f} GiB at {t:,} {unit} > {limit / 1024:.0f} GiB")
        fullest = max(r["max_files_per_folder"] for r in runs)
        if fullest > MAX_FILES_PER_FOLDER:
            breaks.append(f"{fullest:,} files in one folder")
        out.append(
            {
                "stage": stage,
                "unit": unit,
                "sizes": sizes,
                "time_exponent": slope,
                "mib_fixed": None if line is None else line[0],
                "kib_per_unit": None if line is None else line[1] * 1024,
                "targets": list(targets),
                "projected_mib": projected,
                "breaks": breaks,
            }
        )
    return out


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def measurement_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    head = ["part", "stage", "size", "unit", "seconds", "peak MiB", "files", "MB written", "max/folder", "rc"]
    body = [
        [
            r["part"],
            r["stage"],
            f"{r['size']:,}",
            r["unit"],
            f"{r['seconds']:.1f}",
            f"{r['peak_mib']:,.0f}",
            f"{r['files']:,}",
            f"{r['bytes'] / 1e6:,.1f}",
            f"{r['max_files_per_folder']:,}",
            str(r["rc"]),
        ]
        for r in rows
    ]
    return [head, *body]


def growth_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    head = [
        "stage",
        "unit",
        "time exp.",
        "MiB fixed",
        "KiB/unit",
        "peak at target 1",
        "peak at target 2",
        "breaks",
    ]
    body = []
    for g in growth(rows):
        at = [
            "-" if p is None else f"{p / 1024:.2f} GiB @ {t:,}"
            for p, t in zip(g["projected_mib"], g["targets"], strict=True)
        ]
        body.append(
            [
                g["stage"],
                g["unit"],
                _num(g["time_exponent"], ".2f"),
                _num(g["mib_fixed"], ",.0f"),
                _num(g["kib_per_unit"], ".3f"),
                *at,
                "; ".join(g["breaks"]) or "none",
            ]
        )
    return [head, *body]


def printed(rows: list[dict[str, Any]]) -> str:
    return aligned(measurement_rows(rows), right=range(2, 10)) + "\n\n" + aligned(growth_rows(rows))


def markdown(rows: list[dict[str, Any]]) -> str:
    def table(cells: list[list[str]]) -> str:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells[1:]])

    return (
        "# Scale measurements (bench/scale.py)\n\n"
        + table(measurement_rows(rows))
        + "\n\n## Growth and projection\n\n"
        + table(growth_rows(rows))
        + "\n"
    )
