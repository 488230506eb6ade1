"""What every part of ``bench/gpu.py`` shares: the work folder, device, sizes, and the shards."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pipeline

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class Context:
    """One run of ``bench/gpu.py``. ``shards_root`` is set by the ``shards`` part."""

    work: Path  # temporary folder of the run: workspaces, runs, checkpoints
    device: str  # "cuda" or "cpu"
    smoke: bool
    data: Path  # ../shared/data: unlabeled/, reid/, videos/
    options: argparse.Namespace  # the command line (transfer sizes, seeds, ...)
    shards_root: Path | None = None  # a workspace whose shards/ build-shards wrote
    crops: int = 0  # samples in those shards

    def shards(self) -> Path:
        """The workspace holding the shared shards; ``RuntimeError`` when the shards part did not run."""
        if self.shards_root is None:
            raise RuntimeError("needs the shards that the 'shards' part builds, and it did not finish")
        return self.shards_root

    def cpu_workers(self, most: int = 8) -> int:
        """Worker processes for loaders and builds: all cores but two, at most ``most``; 0 in smoke runs."""
        return 0 if self.smoke else max(1, min(most, (os.cpu_count() or 2) - 2))


def evenly(items: list[Any], count: int) -> list[Any]:
    """``count`` items spread evenly over ``items`` (all of them when ``count >= len``), in order."""
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def subset_tree(source: Path, dest: Path, fraction: float = 1.0, per_folder: int | None = None) -> Path:
    """A copy of ``fraction`` (or ``per_folder``) of each sub-folder's images, spread evenly, under ``dest``.

    Every source folder keeps its share, so a subset has the same mix of scenes as the whole.
    """
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        count = per_folder if per_folder is not None else max(1, round(fraction * len(images)))
        (dest / folder.name).mkdir(parents=True, exist_ok=True)
        for image in evenly(images, count):
            shutil.copy(image, dest / folder.name / image.name)
    return dest


def build_shards(images: Path, root: Path, workers: int) -> dict[str, Any]:
    """``build-shards --from-images images`` into ``root``, as the CLI runs it; its summary and seconds."""
    flags = {"from_images": str(images), "workers": max(1, workers), "max_samples": 1000}
    settings = pipeline.resolve("build-shards", None, flags)
    start = time.perf_counter()
    summary = dict(pipeline.run_stage("build-shards", settings, root))
    summary["seconds"] = time.perf_counter() - start
    return summary


def link_shards(ctx: Context, root: Path) -> Path:
    """A fresh workspace ``root`` whose ``shards`` is the shared one (a symlink): no second build."""
    root.mkdir(parents=True, exist_ok=True)
    link = root / "shards"
    if not link.exists():
        link.symlink_to(ctx.shards() / "shards", target_is_directory=True)
    return root


def run_shards(ctx: Context, record: dict[str, Any]) -> None:
    """Part ``shards``: the crops of ``unlabeled/`` written by build-shards itself (all; 96 in smoke)."""
    images = ctx.data / "unlabeled"
    if ctx.smoke:
        images = subset_tree(images, ctx.work / "smoke_unlabeled", per_folder=24)
    root = ctx.work / "lup"
    summary = build_shards(images, root, ctx.cpu_workers() or 1)
    ctx.shards_root, ctx.crops = root, int(summary["samples"])
    record["rows"].append(
        {
            "name": f"build-shards --from-images, {ctx.crops:,} crops, workers={max(1, ctx.cpu_workers())}",
            "value": ctx.crops / summary["seconds"],
            "unit": "crops/s",
        }
    )
    record["raw"] = {k: v for k, v in summary.items() if isinstance(v, int | float | str)}
