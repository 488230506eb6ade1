#!/usr/bin/env python
"""Issue 7's experiment: does pre-training on the unlabeled crops help Re-ID transfer?

The stages are run as a user runs them (``pipeline.run_stage``, settings saved under the root):

1. ``build-shards --from-images <unlabeled>`` (skipped when the shards exist);
2. ``pretrain`` with the ``lup`` preset and with the ``mocov2`` preset, same budget; with
   ``--positives instance,tracklet`` each preset once per kind of positive (rows ``lup instance``,
   ``lup tracklet``, ...), on shards whose TownCentre crops are tracklets (``transfer_shards.py``);
3. for each init (lup, mocov2, and the baselines random and imagenet: torchvision's
   ImageNet-supervised weights, Table 5's baseline, where they can be had) x dataset (VIPeR, PRID,
   GRID; CUHK03 on request) x seed: ``evaluate`` (frozen pooled features) and ``finetune`` (IDE +
   extra BN), seed = split seed = training seed. Each backbone is normalised with the mean/std it
   was trained with (``backbone.json``); the table's ``norm`` column says which.

It prints mean ± std over the seeds, the fine-tuned mAP as a ratio of the random-init baseline
run in the same process, and writes JSON (``--out``) and a markdown table (``--md``).

    python bench/transfer.py                      # the experiment (GPU-sized defaults)
    python bench/transfer.py --device cpu --pretrain-epochs 5 --finetune-epochs 10   # CPU-sized
    python bench/transfer.py --smoke              # seconds on CPU; random init only until
                                                  # pretrain.launch exists
    python bench/transfer.py --presets mocov2 --positives instance,tracklet   # issue 17's comparison
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__" and __spec__ is None:  # run by path: run as a module (see bench/__init__.py)
    from bench import run_as_module

    run_as_module("bench.transfer")

import pipeline
from bench.transfer_shards import TOWNCENTRE, build_shards
from bench.transfer_table import format_rows, table
from common.atomic import write_json, write_text
from common.data import data_root
from common.errors import UsageError
from common.log import setup_logging

log = logging.getLogger("bench.transfer")
RESULTS = REPO / "bench" / "results"
SHARED = data_root()[0]
FOLDERS = {"viper": "VIPeR", "prid": "PRID", "grid": "GRID", "cuhk03": "CUHK03"}
PAIRS = ("viper", "prid", "grid")  # every training identity has exactly two images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=None, help="workspace (default luperson_data/transfer[_smoke])")
    p.add_argument("--unlabeled", default=str(SHARED / "unlabeled"), help="crops for build-shards")
    p.add_argument("--reid", default=str(SHARED / "reid"), help="folder with VIPeR/, PRID/, GRID/")
    p.add_argument("--datasets", nargs="+", default=["viper", "prid", "grid"])
    p.add_argument("--presets", nargs="*", default=["lup", "mocov2"])
    p.add_argument(
        "--positives", default="instance", type=lambda v: v.split(","),
        help="comma-separated pretrain positives (instance, tracklet), each run per preset at the same budget",
    )  # fmt: skip
    p.add_argument(
        "--tracklet-pattern", default=TOWNCENTRE,
        help="regex matching a crop's whole path under --unlabeled; its group 'tracklet' names the tracklet",
    )  # fmt: skip
    p.add_argument(
        "--baselines", nargs="*", default=["random", "imagenet"], choices=["random", "imagenet"],
        help="inits without pre-training here (imagenet is dropped, with a note, when its weights "
        "cannot be had)",
    )  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--pretrain-epochs", type=int, default=30)
    p.add_argument("--pretrain-batch", type=int, default=256)
    p.add_argument("--queue-size", type=int, default=4096)
    p.add_argument("--finetune-epochs", type=int, default=40)
    p.add_argument("--finetune-batch", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--normalisation", default="auto", choices=["auto", "lup", "imagenet"],
        help="input mean/std of evaluate and finetune for every init (auto: each backbone's own)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=4)
    p.add_argument(
        "--pretrain-set", nargs="*", default=[], metavar="KEY=VALUE", help="extra pretrain settings"
    )
    p.add_argument(
        "--finetune-set", nargs="*", default=[], metavar="KEY=VALUE", help="extra finetune settings"
    )
    p.add_argument("--out", default=None, help="JSON (default bench/results/transfer[_smoke].json)")
    p.add_argument("--md", default=None, help="markdown table (default: --out with .md)")
    p.add_argument(
        "--blur-faces", action="store_true",
        help="build the shards with build-shards --blur-faces (issue 26's blurred-vs-unblurred comparison)",
    )  # fmt: skip
    p.add_argument("--smoke", action="store_true", help="tiny CPU run (seconds)")
    args = p.parse_args(argv)
    if not args.positives or set(args.positives) - {"instance", "tracklet"}:
        p.error(f"--positives: a comma-separated list of instance, tracklet, got {','.join(args.positives)}")
    if args.smoke:
        args.datasets, args.seeds, args.arch, args.height, args.width = ["viper"], [0], "resnet18", 32, 16
        args.pretrain_epochs, args.pretrain_batch, args.queue_size = 1, 8, 32
        args.finetune_epochs, args.finetune_batch, args.device, args.workers = 1, 32, "cpu", 0
    suffix = "_smoke" if args.smoke else ""
    args.root = Path(args.root or f"luperson_data/transfer{suffix}")
    args.out = Path(args.out or RESULTS / f"transfer{suffix}.json")
    args.md = Path(args.md or args.out.with_suffix(".md"))
    return args


def key_values(pairs: list[str]) -> dict[str, Any]:
    """``["epochs=3", "bf16=false"]`` -> dict, values parsed as YAML scalars."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"transfer.py: expected KEY=VALUE, got {pair!r}")
        out[key.replace("-", "_")] = yaml.safe_load(value)
    return out


def pretrain_available() -> bool:
    """True once the pretrain stage's entry module imports."""
    try:
        importlib.import_module("pretrain.launch")
    except ImportError as e:
        log.warning("pretrain is not importable yet (%s): random init only", e)
        return False
    return True


def stage(command: str, root: Path, **flags: Any) -> dict[str, Any]:
    """Resolve a stage's settings like the CLI (unknown keys dropped) and run it."""
    cls = pipeline.load_attr(pipeline.COMMANDS[command].settings)
    known = {f.name for f in dataclasses.fields(cls)}
    dropped = sorted(set(flags) - known)
    if dropped:
        log.warning("%s has no setting %s; ignored", command, ", ".join(dropped))
    settings = pipeline.resolve(command, None, {k: v for k, v in flags.items() if k in known})
    start = time.perf_counter()
    summary = dict(pipeline.run_stage(command, settings, root))
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary


def smoke_images(unlabeled: Path, dest: Path, per_folder: int = 16) -> Path:
    """A small copy of the unlabeled tree (first images of each sub-folder) for smoke runs."""
    for folder in sorted(p for p in unlabeled.iterdir() if p.is_dir()):
        (dest / folder.name).mkdir(parents=True, exist_ok=True)
        for image in sorted(folder.iterdir())[:per_folder]:
            shutil.copy2(image, dest / folder.name / image.name)
    return dest


def run_names(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """(init name, pretrain run name, preset, positives) per preset x positives; the init is
    named by its preset alone when every run is ``instance``."""
    plain = args.positives == ["instance"]
    return [
        (p, f"transfer_{p}", p, m) if plain else (f"{p} {m}", f"transfer_{p}_{m}", p, m)
        for p in args.presets
        for m in args.positives
    ]


def pretrain_all(args: argparse.Namespace) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """build-shards then one pre-training run per preset x positives; ``{init name: summary}`` and
    what the shards hold."""
    images = Path(args.unlabeled)
    if args.smoke:
        images = smoke_images(images, args.root / "smoke_unlabeled", per_folder=8)
    pattern = args.tracklet_pattern if "tracklet" in args.positives else None
    shards = build_shards(stage, args.root, images, pattern, blur_faces=args.blur_faces)
    common = dict(
        shards=str(args.root / "shards"),
        arch=args.arch,
        height=args.height,
        width=args.width,
        epochs=args.pretrain_epochs,
        batch_size=args.pretrain_batch,
        queue_size=args.queue_size,
        device=args.device,
        workers=args.workers,
    )
    if args.smoke:
        common.update(max_steps=1, warmup_epochs=0, bn_groups=2, checkpoint_every=1, shuffle_buffer=32)
    common.update(key_values(args.pretrain_set))
    pretrained = {}
    for name, run, preset, positives in run_names(args):
        pretrained[name] = stage(
            "pretrain", args.root, preset=preset, run_name=run, positives=positives, **common
        )
    return pretrained, shards


def transfer_runs(args: argparse.Namespace, inits: dict[str, str]) -> list[dict[str, Any]]:
    """Frozen evaluate + IDE finetune for every init x dataset x seed."""
    runs = []
    extra = key_values(args.finetune_set)
    for dataset in args.datasets:
        data_dir = str(Path(args.reid) / FOLDERS.get(dataset, dataset))
        for name, weights in inits.items():
            for seed in args.seeds:
                size = dict(arch=args.arch, height=args.height, width=args.width, device=args.device)
                size["normalisation"] = args.normalisation
                frozen = stage(
                    "evaluate", args.root, dataset=dataset, data_dir=data_dir, weights=weights,
                    split_seed=seed, seed=seed, workers=args.workers, **size,
                )  # fmt: skip
                ft_flags = dict(
                    epochs=args.finetune_epochs,
                    batch_size=args.finetune_batch,
                    instances=2 if dataset in PAIRS else 4,
                    workers=args.workers,
                )
                if args.smoke:
                    ft_flags.update(id_share=0.1, warmup_epochs=0)
                ft_flags.update(extra)
                tuned = stage(
                    "finetune", args.root, dataset=dataset, data_dir=data_dir, init=weights, head="ide",
                    run_name=f"transfer_{dataset}_{name.replace(' ', '_')}{run_suffix(args)}_s{seed}", split_seed=seed, seed=seed, **size, **ft_flags,
                )  # fmt: skip
                runs.append(
                    {"init": name, "dataset": dataset, "seed": seed, "frozen": frozen, "finetuned": tuned}
                )
                log.info("%s %s seed %d: frozen mAP %.2f, fine-tuned mAP %.2f", name, dataset, seed,
                         frozen["mAP"], tuned["mAP"])  # fmt: skip
    return runs


def run_suffix(args: argparse.Namespace) -> str:
    """Fine-tuning runs with a forced normalisation get their own folders."""
    return "" if args.normalisation == "auto" else f"_norm-{args.normalisation}"


def available_baselines(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """``{name: init}`` of the baselines whose weights can be had, and a note for each dropped one."""
    from finetune.imagenet import imagenet_state

    inits, notes = {}, []
    for name in args.baselines:
        if name == "imagenet":
            try:
                imagenet_state(args.arch)
            except UsageError as e:
                notes.append(f"no imagenet row: {e}")
                log.warning("%s", notes[-1])
                continue
        inits[name] = name
    return inits, notes


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logging()
    start = time.perf_counter()
    pretrained, shards = pretrain_all(args) if pretrain_available() else ({}, {})
    inits = {p: str(s["backbone"]) for p, s in pretrained.items()}
    baselines, notes = available_baselines(args)
    inits.update(baselines)
    runs = transfer_runs(args, inits)
    rows = table(runs, list(inits), args.datasets)
    report = {
        "argv": sys.argv[1:] if argv is None else argv,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "shards": shards,
        "pretrain": pretrained,
        "runs": runs,
        "table": rows,
        "notes": notes,
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json(args.out, report)
    command = "python bench/transfer.py " + " ".join(report["argv"])
    extra = "".join(f"\n{n}\n" for n in notes)
    write_text(args.md, f"`{command}` ({report['seconds']} s)\n\n" + format_rows(rows, markdown=True) + extra)
    print(format_rows(rows, markdown=False))
    print(f"wrote {args.out} and {args.md} ({report['seconds']} s)")
    return report


if __name__ == "__main__":
    main()
