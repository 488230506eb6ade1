"""Calls of ``bench/transfer.py`` for the transfer, ablation and data-scale parts: one per dataset.

One call per dataset, in the same workspace: the first call pre-trains, the next ones find the
pre-training finished and reuse it, and a part stopped at its deadline keeps the table rows of
every dataset it finished.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench import transfer as bench_transfer
from bench.gpu_parts.context import Context


def imagenet_cached(arch: str) -> tuple[bool, str]:
    """Whether torchvision's ImageNet weights of ``arch`` are on disk: the lent machine is offline."""
    try:
        from finetune.imagenet import cached_file
    except ImportError:
        return False, "finetune.imagenet is missing"
    where = cached_file(arch)
    return where.is_file(), str(where)


def baselines(ctx: Context, wanted: list[str], notes: list[str]) -> list[str]:
    """``wanted`` less imagenet when its weights are not cached (no download is tried)."""
    out = list(wanted)
    if "imagenet" in out:
        cached, where = imagenet_cached("resnet18" if ctx.smoke else ctx.options.arch)
        if not cached:
            out.remove("imagenet")
            notes.append(f"no imagenet row: its weights are not at {where} (no download tried)")
    return out


def transfer_argv(
    ctx: Context, root: Path, presets: list[str], base: list[str], pretrain_set: list[str]
) -> list[str]:
    """``bench/transfer.py`` arguments: GPU-sized from the command line, or its own ``--smoke`` sizes."""
    o = ctx.options
    if ctx.smoke:
        argv = ["--smoke"]
    else:
        argv = ["--arch", o.arch, "--height", str(o.height), "--width", str(o.width)]
        argv += ["--pretrain-epochs", str(o.pretrain_epochs), "--finetune-epochs", str(o.finetune_epochs)]
        argv += ["--seeds", *map(str, o.seeds), "--device", ctx.device, "--workers", str(ctx.cpu_workers())]
        pretrain_set = [f"warmup_epochs={o.pretrain_warmup}", *pretrain_set]
    argv += ["--root", str(root), "--unlabeled", str(ctx.data / "unlabeled")]
    argv += ["--reid", str(ctx.data / "reid"), "--presets", *presets, "--baselines", *base]
    return argv + (["--pretrain-set", *pretrain_set] if pretrain_set else [])


def datasets(ctx: Context, notes: list[str]) -> list[str]:
    """The datasets to run, less any ``bench/transfer.py`` cannot read (with a note)."""
    wanted = ["viper"] if ctx.smoke else list(ctx.options.datasets)
    for name in [d for d in wanted if d not in bench_transfer.FOLDERS]:
        notes.append(f"bench/transfer.py does not read {name}: left out")
    return [d for d in wanted if d in bench_transfer.FOLDERS]


def run_table(ctx: Context, record: dict[str, Any], title: str, argv: list[str]) -> dict[str, Any]:
    """``bench/transfer.py`` once per dataset; its table rows appended to ``record`` as they come."""
    table: dict[str, Any] = {"title": title, "argv": argv, "rows": [], "seconds": {}, "notes": []}
    record["tables"].append(table)
    slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
    for dataset in datasets(ctx, record["notes"]):
        out = ctx.work / "transfer_reports" / f"{slug}_{dataset}.json"
        report = bench_transfer.main([*argv, "--datasets", dataset, "--out", str(out)])
        table["rows"] += report["table"]
        table["seconds"][dataset] = report["seconds"]
        table["notes"] += [n for n in report.get("notes", []) if n not in table["notes"]]
        for row in report["table"]:
            record["rows"].append(summary_row(title, row))
    return table


def summary_row(title: str, row: dict[str, Any]) -> dict[str, Any]:
    """One line of the overall table for one dataset x init: fine-tuned mAP, the rest in the note."""
    ratio = f", {row['ft_mAP_vs_random']:.2f}x random" if row.get("ft_mAP_vs_random") else ""
    note = (
        f"R1 {row['finetuned_rank1'][0]:.1f}; frozen mAP {row['frozen_mAP'][0]:.1f}, "
        f"R1 {row['frozen_rank1'][0]:.1f}; {row['n']} seeds{ratio}"
    )
    name = f"{title}: {row['dataset']} {row['init']}, fine-tuned mAP"
    return {"name": name, "value": row["finetuned_mAP"][0], "unit": "%", "note": note}
