"""The printed table of ``bench/gpu.py`` and ``docs/performance.md``, from its JSON report."""

from __future__ import annotations

from typing import Any

from bench import transfer as bench_transfer
from bench.gpu_parts.parts import DEFAULT_TOTAL_S, PARTS, STARTUP_S
from common.table import aligned

HEAD = ("part", "measurement", "value", "unit", "peak GiB", "note")
NOT_MEASURED = "not measured yet"


def figure_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per figure; a part without figures gets one row with its status and notes."""
    rows = []
    for name, record in report["parts"].items():
        for row in record["rows"]:
            peak = "" if row.get("peak_gib") is None else f"{row['peak_gib']:.1f}"
            value = f"{row['value']:,.1f}" if row["value"] < 1e5 else f"{row['value']:,.0f}"
            rows.append((name, row["name"], value, row["unit"], peak, row.get("note", "")))
        if not record["rows"] or record["status"] != "ok":
            rows.append((name, f"({record['status']})", "-", "", "", "; ".join(record.get("notes", []))))
    return rows


def text_table(rows: list[tuple[str, ...]]) -> str:
    return aligned([HEAD, *rows], right=(2, 4), rule="full")


def printed(report: dict[str, Any]) -> str:
    """The table ``bench/gpu.py`` prints: every figure, then each transfer table, then the parts' times."""
    out = [f"GPU figures on {report['device_name']} (torch {report['torch']}), {report['date']}", ""]
    out.append(text_table(figure_rows(report)))
    for record in report["parts"].values():
        for table in record["tables"]:
            if table["rows"]:
                out += ["", f"{table['title']} (mean ± std over seeds, %):"]
                out.append(bench_transfer.format_rows(table["rows"], markdown=False))
    out += ["", "part        status          seconds  budget"]
    for name, r in report["parts"].items():
        out.append(f"{name:<12}{r['status']:<16}{r['seconds']:>7.1f}{r['budget_s']:>8.0f}")
    out.append(f"{'all':<28}{report['seconds']:>7.1f}{report['budget_s']:>8.0f}")
    return "\n".join(out)


def md_table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]) + "\n"


def budget_section() -> str:
    """How the 10 minutes are split, and why: the same text whether or not a run exists."""
    rows = [(name, f"{p.budget_s:.0f}", "yes" if p.default else "no", p.why) for name, p in PARTS.items()]
    default = sum(p.budget_s for p in PARTS.values() if p.default)
    return (
        "## How the 10 minutes are split\n\n"
        f"The default parts' budgets add up to {default:.0f} s, plus ~{STARTUP_S:.0f} s of imports and CUDA "
        f"start-up, under the {DEFAULT_TOTAL_S:.0f} s one lent session can spend (~15 minutes of device "
        "time, less the machine's start and a margin for a rerun). **These budgets are estimates until "
        "measured**: they come from DESIGN.md's H100 figures and this repository's CPU runs, not from an "
        "H200. The budget check itself is real: a part starts only when its budget fits in what is left, "
        "and a `SIGALRM` deadline stops it at its budget (the transfer part may also use what earlier "
        "parts left); a stopped part keeps the rows it finished and says so, a skipped one says why. "
        "Each run records every part's seconds (the last table), so the next run can be sized on them. "
        "`--parts ablations data-scale` run the two longer experiments; their budget is raised to "
        "match unless `--budget-s` says otherwise.\n\n"
        "The transfer part's sizes (ResNet-50 at 128x64, 10 pre-training epochs with 1 of warm-up, 6 "
        "IDE epochs; 2 presets + random x 4 datasets x 3 seeds, one `bench/transfer.py` call per dataset) "
        "are what the estimate lets fit in the 10 minutes, not the paper's (256x128, 200 epochs) nor the "
        "README's CPU run (20 + 15 epochs at ResNet-18 64x32): 72 stage calls, whose fixed costs "
        "(model builds, loader start, checkpoints) dominate at this size. Once a run has measured the "
        "rates, give it more with `--pretrain-epochs`, `--finetune-epochs` and `--budget-s`.\n\n"
        + md_table(("part", "budget (s)", "default", "why this budget"), rows)
    )


def placeholder_rows() -> list[tuple[str, ...]]:
    return [(name, p.what, NOT_MEASURED, "", "", "") for name, p in PARTS.items()]


def markdown(report: dict[str, Any] | None) -> str:
    """``docs/performance.md``: the figures of ``report``, or "not measured yet" for each part."""
    cmd = "python bench/gpu.py"
    out = ["# Performance on one GPU\n"]
    out.append(
        "Every GPU figure of the project comes from one command, sized to fit the ~15 minutes of one "
        "H200 that a task may be lent:\n\n"
        f"```bash\n{cmd}                      # default parts, ~10 minutes\n"
        f"{cmd} --parts ablations data-scale   # the longer experiments\n"
        f"{cmd} --parts tracklets            # instance vs tracklet positives (issue 17)\n"
        f"{cmd} --smoke              # every part on the CPU in seconds (no figures kept)\n```\n"
    )
    if report is None:
        out.append(
            f"**{NOT_MEASURED.capitalize()}.** No GPU has been lent to this project since the command "
            'exists; every figure below stays "not measured yet" until `python bench/gpu.py` runs on one '
            "and rewrites this page and `bench/results/gpu.json`.\n"
        )
        out.append("## Figures\n\n" + md_table(HEAD, placeholder_rows()))
    else:
        out.append(
            f"Measured with `{report['command']}` on **{report['device_name']}**, torch {report['torch']}, "
            f"{report['date']}, commit {report['commit']}; {report['seconds']:.0f} s of a "
            f"{report['budget_s']:.0f} s budget.\n"
        )
        out.append("## Figures\n\n" + md_table(HEAD, figure_rows(report)))
        out += transfer_sections(report)
        parts = [
            (n, r["status"], f"{r['seconds']:.1f}", f"{r['budget_s']:.0f}", "; ".join(r.get("notes", [])))
            for n, r in report["parts"].items()
        ]
        out.append(
            "## Parts of this run\n\n" + md_table(("part", "status", "seconds", "budget (s)", "notes"), parts)
        )
    out.append(budget_section())
    return "\n".join(out)


def transfer_sections(report: dict[str, Any]) -> list[str]:
    """One markdown table per ``bench/transfer.py`` table, with the command it ran per dataset."""
    out = []
    for record in report["parts"].values():
        for table in record["tables"]:
            if not table["rows"]:
                continue
            argv = " ".join(table["argv"]).replace(report.get("work", "$WORK"), "$WORK")
            command = f"python bench/transfer.py {argv} --datasets DATASET"
            notes = "".join(f"\n{n}\n" for n in table.get("notes", []))
            out.append(
                f"## {table['title']} (mean ± std over seeds, %)\n\n`{command}`\n\n"
                + bench_transfer.format_rows(table["rows"], markdown=True)
                + notes
            )
    return out
