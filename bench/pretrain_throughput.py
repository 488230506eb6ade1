#!/usr/bin/env python
"""Pre-training throughput (image pairs/s), issue 6's benchmark, all three in one process:

  (a) the official MoCo v2 recipe's step: fp32, NCHW, plain BatchNorm, a Python loop for the
      momentum update, on synthetic input that is already augmented (torchvision augments on the
      CPU workers in that recipe, outside the step);
  (b) our step on synthetic uint8 images: batched augmentation on the device, bf16 autocast,
      channels_last, fused momentum update, Shuffle-BN groups;
  (c) our whole trainer (``Trainer.fit``) streaming real shards written from ``--unlabeled``.

Each run also reports its peak GPU memory (``torch.cuda.max_memory_allocated``). Targets
(issue 6, one H100): (c) >= 90 % of (b) and (c) >= 3.5x (a). ``bench/gpu.py`` runs (a)-(c) at
batch 256 and 512 on shards that build-shards wrote (``settings`` + ``measure``).

    python bench/pretrain_throughput.py                   # ResNet-50, 256x128, batch 256, on the GPU
    python bench/pretrain_throughput.py --smoke           # seconds on CPU: resnet18, 64x32, batch 16
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and __spec__ is None:  # run by path: run as a module (see bench/__init__.py)
    from bench import run_as_module

    run_as_module("bench.pretrain_throughput")

from common.atomic import write_json
from common.data import data_root
from common.manifests.shard_index import write_shard_index
from pretrain.logs import read_metrics
from pretrain.settings import PretrainSettings

UNLABELED = data_root()[0] / "unlabeled"


def write_crop_shards(images: list[Path], out: Path, per_shard: int) -> list[Path]:
    """Real crops as WebDataset shards (``<key>.jpg`` + ``<key>.json``), the build-shards layout."""
    import webdataset as wds

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(images), per_shard):
        path = out / f"lup-{start // per_shard:06d}.tar"
        with wds.TarWriter(str(path)) as tar:
            for image in images[start : start + per_shard]:
                key = f"{image.parent.name}_{image.stem}".replace(".", "_")
                meta = json.dumps({"source": str(image)}).encode()
                tar.write({"__key__": key, "jpg": image.read_bytes(), "json": meta})
        paths.append(path)
    return paths


def official_momentum_update(model) -> None:
    """facebookresearch/moco's ``_momentum_update_key_encoder``: one pair of kernels per tensor."""
    import torch

    with torch.no_grad():
        for param_q, param_k in zip(model.encoder_q.parameters(), model.encoder_k.parameters(), strict=True):
            param_k.data = param_k.data * model.momentum + param_q.data * (1.0 - model.momentum)


def time_steps(trainer, make_batch, args: argparse.Namespace) -> float:
    """Pairs/s of ``trainer``'s own step on batches from ``make_batch`` (warm-up excluded)."""
    import torch

    def sync():
        if trainer.cuda:
            torch.cuda.synchronize()

    batch = make_batch()
    for _ in range(args.warmup):
        trainer.train_step(*trainer.views(batch))
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss, _ = trainer.train_step(*trainer.views(batch))
    loss.item()
    sync()
    return args.steps * trainer.cfg.batch_size / (time.perf_counter() - start)


def free_memory(device) -> None:
    import gc

    import torch

    gc.collect()  # the patched official model sits in a reference cycle
    if device.type == "cuda":
        torch.cuda.empty_cache()


def official_step(cfg, work: Path, args: argparse.Namespace):
    """(a) fp32, NCHW, plain BatchNorm, per-tensor momentum loop, on pre-augmented float views."""
    import torch

    from pretrain.trainer import Trainer

    cfg_a = dataclasses.replace(
        cfg, run_name="a", bf16=False, channels_last=False, gpu_augment=False, bn_groups=1, compile=False
    )
    trainer = Trainer(cfg_a, work)
    trainer.model.momentum_update = functools.partial(official_momentum_update, trainer.model)
    dev, shape = trainer.device, (args.batch, 3, args.height, args.width)
    # synthetic input lives on the device: only the step is timed
    rate = time_steps(trainer, lambda: (torch.randn(shape, device=dev), torch.randn(shape, device=dev)), args)
    return rate, dev


def our_step(cfg, work: Path, args: argparse.Namespace):
    """(b) the trainer's own step (batched augmentation included) on synthetic uint8 images."""
    import torch

    from pretrain.trainer import Trainer

    trainer = Trainer(dataclasses.replace(cfg, run_name="b"), work)
    dev, (b, h, w) = trainer.device, (args.batch, args.height, args.width)
    images = torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8, device=dev)
    sizes = torch.tensor([[h, w]] * b, device=dev)
    return time_steps(trainer, lambda: (images, sizes), args), dev


def full_trainer(cfg, work: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(c) ``Trainer.fit`` streaming the shards: pairs/s and data-wait share after the warm-up.

    The rate runs from the first logged row after the warm-up to the last row; rows are written
    at host synchronisations, so the window is exact.
    """
    from pretrain.trainer import Trainer

    warm_rows = -(-args.warmup // args.log_every) * args.log_every
    trainer = Trainer(dataclasses.replace(cfg, run_name="c", max_steps=warm_rows + args.steps), work)
    summary = trainer.fit()
    rows = read_metrics(work / "runs" / "c" / "metrics.csv")
    first = next(r for r in rows if r["step"] >= warm_rows)
    last = rows[-1]
    rate = (last["step"] - first["step"]) * args.batch / (last["time_s"] - first["time_s"])
    timed = [r["data_wait_share"] for r in rows if r["step"] > first["step"]]
    return rate, (sum(timed) / len(timed) if timed else summary["data_wait_share"])


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_pretrain_") as tmp:  # shards, checkpoints: deleted after
        return run_in(args, Path(tmp))


def run_in(args: argparse.Namespace, work: Path) -> dict:
    images = sorted(Path(args.unlabeled).glob("*/*.jpg"))[: args.images]
    if len(images) < args.batch:
        raise SystemExit(f"{args.unlabeled}: {len(images)} images, fewer than one batch")
    write_crop_shards(images, work / "shards", args.per_shard)
    write_shard_index(work / "shards")  # pretrain trains only on listed, checked shards
    return {**measure(settings(args, work / "shards"), work, args), "images_in_shards": len(images)}


def settings(args: argparse.Namespace, shards: Path):
    """The pre-training settings of all three runs, on ``shards``."""
    return PretrainSettings(
        shards=str(shards),
        arch=args.arch,
        height=args.height,
        width=args.width,
        batch_size=args.batch,
        queue_size=args.queue,
        bn_groups=args.bn_groups,
        workers=args.workers,
        epochs=1000,
        checkpoint_every=10**9,
        log_every=args.log_every,
        device=args.device,
        compile=args.compile,
    )


def peak_gib(device) -> float | None:
    """``torch.cuda.max_memory_allocated`` since the last reset, GiB (None on the CPU)."""
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def measure_trainer(cfg, work: Path, args: argparse.Namespace) -> dict:
    """(c) alone: pairs/s, data-wait share and peak GPU memory (GiB, None on the CPU)."""
    import torch

    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rate, wait = full_trainer(cfg, work, args)
    peak = peak_gib(device)
    free_memory(device)
    return {"pairs_per_s": rate, "data_wait_share": wait, "peak_gib": peak}


def measure(cfg, work: Path, args: argparse.Namespace) -> dict:
    """(a), (b) and (c) in turn, with the peak GPU memory of each; ``work`` gets their run folders."""
    import torch

    results: dict[str, float] = {}
    peaks: dict[str, float | None] = {}
    for name, step in (("a_official_step", official_step), ("b_our_step", our_step)):
        if cfg.device != "cpu" and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        results[name], device = step(cfg, work, args)
        peaks[name] = peak_gib(device)
        free_memory(device)
    c = measure_trainer(cfg, work, args)
    results["c_full_trainer"], results["c_data_wait_share"] = c["pairs_per_s"], c["data_wait_share"]
    peaks["c_full_trainer"] = c["peak_gib"]
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "settings": {**vars(args), "out": str(args.out)},
        "pairs_per_s": results,
        "peak_memory_gib": peaks,
        "ratios": {
            "b_over_a": results["b_our_step"] / results["a_official_step"],
            "c_over_b": results["c_full_trainer"] / results["b_our_step"],
            "c_over_a": results["c_full_trainer"] / results["a_official_step"],
        },
        "targets": {"c_over_b": 0.9, "c_over_a": 3.5},
    }


def table(report: dict) -> str:
    r, q, m = report["pairs_per_s"], report["ratios"], report.get("peak_memory_gib", {})

    def line(label: str, key: str, ratio: float) -> str:
        peak = f"{m[key]:>10.1f}" if m.get(key) is not None else f"{'n/a':>10}"
        return f"{label:<44}{r[key]:>10.1f}{ratio:>8.2f}x{peak}"

    lines = [
        f"pre-training throughput on {report['device_name']} ({report['settings']['arch']}, "
        f"{report['settings']['height']}x{report['settings']['width']}, batch {report['settings']['batch']})",
        f"{'run':<44}{'pairs/s':>10}{'vs (a)':>9}{'peak GiB':>10}",
        line("(a) official recipe step, synthetic", "a_official_step", 1.0),
        line("(b) our step (+ batched augment), synthetic", "b_our_step", q["b_over_a"]),
        line("(c) our trainer streaming real shards", "c_full_trainer", q["c_over_a"]),
        f"(c)/(b) = {q['c_over_b']:.2f} (target >= 0.90); (c)/(a) = {q['c_over_a']:.2f} (target >= 3.5); "
        f"data-wait share of (c) {r['c_data_wait_share']:.1%}",
    ]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny CPU run (resnet18, 64x32, batch 16)")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--queue", type=int, default=65536)
    p.add_argument("--bn-groups", type=int, default=8)
    p.add_argument("--workers", type=int, default=12, help="data loader workers for (c)")
    p.add_argument("--steps", type=int, default=50, help="timed steps of each run")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--images", type=int, default=None, help="crops written to the shards (default: all)")
    p.add_argument("--per-shard", type=int, default=1000)
    p.add_argument("--unlabeled", default=str(UNLABELED))
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--compile", action="store_true")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pretrain.json")
    args = p.parse_args(argv)
    if args.smoke:
        args.arch, args.height, args.width, args.batch, args.queue = "resnet18", 64, 32, 16, 64
        args.bn_groups, args.workers, args.steps, args.warmup, args.log_every = 2, 0, 3, 1, 1
        args.images, args.per_shard, args.device = args.images or 96, 32, "cpu"
    return args


def main(argv: list[str] | None = None) -> dict:
    import logging

    logging.basicConfig(level=logging.WARNING)
    args = parse(argv)
    report = run(args)
    print(table(report))
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
