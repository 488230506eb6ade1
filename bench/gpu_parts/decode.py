"""Part ``decode``: JPEG decoding on the GPU against CPU loader workers.

Two figures: ``measure_decode`` (``bench/shard_throughput.py``: one loader worker's decode + resize against
one batched ``decode_jpeg`` call on the device), and the whole trainer streaming the shards with
``gpu_decode`` on, to set beside the ``pretrain`` part's (c) at batch 256. Either is "not
available" while the code it needs is missing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench import pretrain_throughput as bench_pretrain
from bench.gpu_parts.context import Context
from bench.shard_throughput import measure_decode
from pretrain.settings import PretrainSettings

NAMES = {  # measure_decode's keys -> what they are
    "cpu_worker_crops_per_s": ("one CPU loader worker: OpenCV decode + resize to 256x128", "crops/s"),
    "device_crops_per_s": ("batched decode_jpeg + resize on the device", "crops/s"),
    "device_over_cpu": ("the device over one CPU worker (CPU workers it replaces)", "x"),
}


def run(ctx: Context, record: dict[str, Any]) -> None:
    measure_rows(ctx, record)
    trainer_row(ctx, record)


def measure_rows(ctx: Context, record: dict[str, Any]) -> None:
    """``measure_decode`` on the shared shards, one row per figure it returns."""
    batch, seconds = (16, 0.2) if ctx.smoke else (256, 5.0)
    result = measure_decode(str(ctx.shards() / "shards"), ctx.device, batch, seconds)
    record.setdefault("raw", {})["measure_decode"] = result
    for key, (label, unit) in NAMES.items():
        if key in result:
            note = f"batch {batch}, {result.get('images', '?')} distinct crops"
            record["rows"].append({"name": label, "value": float(result[key]), "unit": unit, "note": note})


def trainer_row(ctx: Context, record: dict[str, Any]) -> None:
    """``bench/pretrain_throughput.py``'s (c), the trainer streaming the shards, with ``gpu_decode=True``."""
    if "gpu_decode" not in {f.name for f in dataclasses.fields(PretrainSettings)}:
        record["status_override"] = "not available"
        record["notes"].append("the trainer has no gpu_decode setting yet")
        return
    argv = ["--smoke"] if ctx.smoke else ["--device", ctx.device, "--workers", str(ctx.cpu_workers(12))]
    args = bench_pretrain.parse([*argv, "--out", str(ctx.work / "decode_unused.json")])
    args.batch = 16 if ctx.smoke else 256
    cfg = dataclasses.replace(bench_pretrain.settings(args, ctx.shards() / "shards"), gpu_decode=True)
    report = bench_pretrain.measure_trainer(cfg, ctx.work / "decode_trainer", args)
    size = f"{args.arch} {args.height}x{args.width}, batch {args.batch}"
    name = f"(c) our trainer streaming the shards, gpu_decode, {size}"
    row = {"name": name, "value": report["pairs_per_s"], "unit": "pairs/s", "peak_gib": report["peak_gib"]}
    row["note"] = f"data-wait share {report['data_wait_share']:.0%}"
    record["rows"].append(row)
