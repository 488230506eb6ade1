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


def compare(base: dict[str, Any], other: dict[str, Any], init: str = "lup") -> list[dict[str, Any]]:
    """Two ``bench/transfer.py`` reports of the same command but one setting (e.g. unblurred and
    ``--blur-faces``): per dataset, each one's mean ± std and the paired difference other - base over
    the seeds both ran (the same split and training seed)."""
    rows = []
    pick = {name: {(r["dataset"], r["seed"]): r for r in rep["runs"] if r["init"] == init} for name, rep in (("base", base), ("other", other))}  # fmt: skip
    for dataset in dict.fromkeys(d for d, _ in pick["base"]):
        seeds = sorted(s for d, s in pick["base"] if d == dataset and (d, s) in pick["other"])
        if not seeds:
            continue
        row: dict[str, Any] = {"dataset": dataset, "seeds": seeds}
        for part in ("frozen", "finetuned"):
            a = [pick["base"][(dataset, s)][part]["mAP"] for s in seeds]
            b = [pick["other"][(dataset, s)][part]["mAP"] for s in seeds]
            row[part] = {"base": mean_std(a), "other": mean_std(b)}
            row[part]["difference"] = mean_std([y - x for x, y in zip(a, b, strict=True)])
        rows.append(row)
    return rows


def format_compare(rows: list[dict[str, Any]], names: tuple[str, str]) -> str:
    """``compare``'s rows as a markdown table."""
    head = ["dataset", "seeds"]
    for part in ("frozen", "fine-tuned"):
        head += [f"{part} mAP, {names[0]}", f"{part} mAP, {names[1]}", f"{part}: {names[1]} - {names[0]}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["dataset"], ",".join(map(str, r["seeds"]))]
        for part in ("frozen", "finetuned"):
            cells += [f"{r[part][k][0]:.1f} ± {r[part][k][1]:.1f}" for k in ("base", "other")]
            cells += [f"{r[part]['difference'][0]:+.1f} ± {r[part]['difference'][1]:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import argparse
    import json
    from pathlib import Path

    p = argparse.ArgumentParser(description="compare two bench/transfer.py reports, seed by seed")
    p.add_argument("base", help="JSON of the reference run (e.g. unblurred)")
    p.add_argument("other", help="JSON of the run with one setting changed (e.g. --blur-faces)")
    p.add_argument("--names", nargs=2, default=("unblurred", "blurred"))
    p.add_argument("--init", default="lup")
    args = p.parse_args()
    reports = [json.loads(Path(f).read_text()) for f in (args.base, args.other)]
    print(format_compare(compare(*reports, init=args.init), tuple(args.names)), end="")
