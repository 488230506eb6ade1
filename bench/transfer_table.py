"""The table of ``bench/transfer.py``: mean ± std over the seeds per dataset x init, as text or markdown."""

from __future__ import annotations

import statistics
from typing import Any

from common.table import aligned

FIGURES = ("mAP", "rank1")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(runs: list[dict[str, Any]], inits: list[str], datasets: list[str]) -> list[dict[str, Any]]:
    """One row per dataset x init: mean, std of frozen and fine-tuned mAP / rank-1, ratio to random."""
    rows = []
    for dataset in datasets:
        base = [r["finetuned"]["mAP"] for r in runs if r["dataset"] == dataset and r["init"] == "random"]
        for init in inits:
            sel = [r for r in runs if r["dataset"] == dataset and r["init"] == init]
            row: dict[str, Any] = {"dataset": dataset, "init": init, "n": len(sel)}
            row["norm"] = "/".join(sorted({r["finetuned"]["normalisation"]["name"] for r in sel}))
            for part in ("frozen", "finetuned"):
                for fig in FIGURES:
                    row[f"{part}_{fig}"] = mean_std([r[part][fig] for r in sel])
            mean_ft = row["finetuned_mAP"][0]
            row["ft_mAP_vs_random"] = (
                mean_ft / statistics.fmean(base) if base and statistics.fmean(base) else None
            )
            rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]], markdown: bool) -> str:
    """``table``'s rows as a markdown table or as aligned text."""
    head = [
        "dataset",
        "init",
        "norm",
        "frozen mAP",
        "frozen R1",
        "fine-tuned mAP",
        "fine-tuned R1",
        "ft mAP / random",
    ]
    body = []
    for r in rows:
        cells = [r["dataset"], r["init"], r["norm"]]
        cells += [f"{r[k][0]:.1f} ± {r[k][1]:.1f}" for k in ("frozen_mAP", "frozen_rank1", "finetuned_mAP")]
        cells += [f"{r['finetuned_rank1'][0]:.1f} ± {r['finetuned_rank1'][1]:.1f}"]
        cells += [f"{r['ft_mAP_vs_random']:.2f}x" if r["ft_mAP_vs_random"] else "-"]
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in body]) + "\n"
    return aligned([head, *body], rule=None, strip=False)
