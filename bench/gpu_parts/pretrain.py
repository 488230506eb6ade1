"""Part ``pretrain``: ``bench/pretrain_throughput.py``'s (a), (b), (c) at batch 256 and 512, with peak memory.

(c) streams the shards that build-shards wrote (the ``shards`` part), not a writer of its own.
"""

from __future__ import annotations

from typing import Any

from bench import pretrain_throughput as bench_pretrain
from bench.gpu_parts.context import Context

LABELS = {
    "a_official_step": "(a) official MoCo v2 step, fp32, synthetic",
    "b_our_step": "(b) our step + batched augment, synthetic",
    "c_full_trainer": "(c) our trainer streaming build-shards' shards",
}


def batches(ctx: Context) -> tuple[int, ...]:
    return (16,) if ctx.smoke else tuple(ctx.options.pretrain_batches)


def run(ctx: Context, record: dict[str, Any]) -> None:
    """Each batch size in turn: the three runs of ``bench/pretrain_throughput.py``, one row each."""
    shards = ctx.shards() / "shards"
    record["raw"] = {}
    for batch in batches(ctx):
        argv = ["--smoke"] if ctx.smoke else ["--device", ctx.device, "--workers", str(ctx.cpu_workers(12))]
        args = bench_pretrain.parse([*argv, "--out", str(ctx.work / "pretrain_unused.json")])
        args.batch = batch
        report = bench_pretrain.measure(
            bench_pretrain.settings(args, shards), ctx.work / f"pretrain_b{batch}", args
        )
        record["raw"][f"batch_{batch}"] = report
        size = f"{args.arch} {args.height}x{args.width}, batch {batch}"
        for key, label in LABELS.items():
            row = {"name": f"{label}, {size}", "value": report["pairs_per_s"][key], "unit": "pairs/s"}
            row["peak_gib"] = report["peak_memory_gib"][key]
            if key == "c_full_trainer":
                row["note"] = f"data-wait share {report['pairs_per_s']['c_data_wait_share']:.0%}"
            record["rows"].append(row)
