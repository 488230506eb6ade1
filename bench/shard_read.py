"""Read + decode throughput of pre-training's input, per core: loose files against the shards, and
``measure_decode`` (one loader worker against one batched decode on a device, ``gpu_decode``).

Used by ``bench/shard_throughput.py`` (the table) and by other benchmarks (``bench/gpu.py`` calls
``measure_decode`` on the GPU). Every read decodes as pre-training does (``pretrain.data``:
OpenCV straight to RGB, resize to 256x128) and makes batches of 64.
"""

from __future__ import annotations

import json
import statistics
import time
from itertools import islice
from pathlib import Path
from typing import Any

from pretrain.settings import Recipe
from pretrain.tarstream import tar_samples
from shards.write.tarshard import ShardWriter, shard_name

BATCH = 64  # loader batches, so that worker-to-trainer transfer is per batch as in training
HEIGHT, WIDTH = 256, 128  # the paper's input: what the loader resizes every crop to


def timed(fn, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    n = fn(*args)
    return n, time.perf_counter() - start


def row(name: str, n: int, seconds: float, baseline: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    rate = n / seconds
    ratio = rate / baseline["samples_per_s"] if baseline and baseline["samples_per_s"] else None
    return {
        "name": name,
        "samples": n,
        "seconds": round(seconds, 3),
        "samples_per_s": round(rate, 1),
        "ratio": ratio,
        **extra,
    }


class FileCrops:
    """Baseline dataset: one file per crop (torch map-style), decoded and resized as the shards are."""

    def __init__(self, files: list[Path]) -> None:
        from common.media.images import decode_rgb
        from pretrain.data import fit_image

        self.files, self.decode, self.fit = files, decode_rgb, fit_image

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple:
        image = self.decode(self.files[i].read_bytes())
        return self.fit(image, HEIGHT, WIDTH), image.shape[:2]


def read_files(files: list[Path], workers: int) -> int:
    """Images through a shuffled torch DataLoader over one file per crop, in full batches."""
    import torch
    from torch.utils.data import DataLoader

    from pretrain.data import collate_images

    loader = DataLoader(
        FileCrops(files),
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate_images,
        generator=torch.Generator().manual_seed(0),
    )
    return sum(len(images) for images, _ in loader)


def mixed_shards(files: list[Path], out: Path, per_shard: int) -> list[str]:
    """The crops in a seeded random order, as build-shards lays them out (``.jpg`` + ``.json``).

    Pre-training draws shards with replacement; the folders' crops differ up to 3x in bytes (and
    decode time), so shards of one folder each would make the shards decode another mix of crops
    than the loose files. Mixed shards make both decode the same mix.
    """
    import random

    order = random.Random(0).sample(files, len(files))
    out.mkdir(parents=True)
    urls = []
    for first in range(0, len(order), per_shard):
        urls.append(str(out / shard_name(len(urls))))
        writer = ShardWriter(Path(urls[-1]), per_shard, 1 << 40)
        for i, f in enumerate(order[first : first + per_shard], start=first):
            writer.add(f"{i:08d}", {"jpg": f.read_bytes(), "json": json.dumps({"path": f.name}).encode()})
        writer.close()
    return urls


def read_shards(urls: list[str], workers: int, images: int) -> int:
    """Images through pre-training's loader over the shards (resampled, shuffled), in full batches."""
    from pretrain.data import make_loader

    steps = images // BATCH
    loader = make_loader(
        urls,
        Recipe(height=HEIGHT, width=WIDTH),
        seed=0,
        start=0,
        stop=steps,
        steps_per_epoch=steps,
        batch=BATCH,
        workers=workers,
        shuffle_buffer=2000,
    )
    return sum(len(images) for images, _ in loader)


def read_rows(files: list[Path], urls: list[str], workers: int, rounds: int) -> list[dict[str, Any]]:
    """Loose files (baseline) and shards, alternating for ``rounds`` rounds: the median round of each."""
    times: dict[str, list[float]] = {"files": [], "shards": []}
    for _ in range(rounds):
        n, s = timed(read_files, files, workers)
        times["files"].append(s)
        n_shards, s = timed(read_shards, urls, workers, len(files))
        times["shards"].append(s)
        assert n == n_shards, (n, n_shards)
    where = "1 process, 1 thread" if workers == 0 else f"loader workers={workers}"
    names = {"files": f"one file per crop, {where} (baseline)", "shards": f"shards, pretrain loader, {where}"}
    rows: list[dict[str, Any]] = []
    for key, name in names.items():
        rates = [round(n / s, 1) for s in times[key]]
        median = statistics.median(times[key])
        rows.append(row(f"read+decode: {name}", n, median, rows[0] if rows else None, round_rates=rates))
    return rows


def measure_decode(shards_dir: str, device: str, batch: int, seconds: float) -> dict[str, Any]:
    """Crops/s decoded + resized to 256x128: one loader worker against one batched call on ``device``.

    ``shards_dir``: a folder of ``lup-*.tar`` shards (build-shards' layout); up to 4,096 of their
    crops are read into memory first. ``device``: ``"cuda"``, ``"cuda:1"``, ``"cpu"``. ``batch``:
    crops per batched call. ``seconds``: how long each of the two is timed (after one warm-up
    batch). CPU-worker decode: OpenCV decode + resize per crop into the batch, one thread (what
    one ``BatchStream`` worker does). Device decode: ``pretrain.views.decode_to_batch`` on
    ``batch`` crops (the ``gpu_decode`` path: one ``torchvision.io.decode_jpeg`` call, then the
    batched resize), synchronised at the end. Returns ``{"device", "batch", "images" (distinct
    crops), "cpu_worker_crops_per_s", "device_crops_per_s", "device_over_cpu", "timed"}`` with
    ``timed[name] = (crops, seconds)`` for ``cpu_worker`` and ``device``.
    """
    import cv2
    import torch

    from common.media.images import decode_rgb
    from pretrain.data import collate_jpegs, image_batches
    from pretrain.views import decode_to_batch

    urls = [{"url": str(p)} for p in sorted(Path(shards_dir).glob("lup-*.tar"))]
    jpegs = [s["jpg"] for s in islice(tar_samples(urls, lambda e: False, ("jpg",)), 4096)]
    batches = [jpegs[i : i + batch] for i in range(0, len(jpegs) - batch + 1, batch)]
    if not batches:
        raise ValueError(f"{shards_dir}: {len(jpegs)} crops, fewer than one batch of {batch}")
    cv2.setNumThreads(1)

    def worker(files: list[bytes]) -> None:
        next(image_batches(map(decode_rgb, files), len(files), HEIGHT, WIDTH))

    def on_device(files: list[bytes]) -> None:
        decode_to_batch(*collate_jpegs(files), device, HEIGHT, WIDTH)

    def sync() -> None:
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)

    timed_: dict[str, tuple[int, float]] = {}
    for name, fn in (("cpu_worker", worker), ("device", on_device)):
        fn(batches[0])  # warm-up: nvJPEG handles, allocator
        sync()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn(batches[(n // batch) % len(batches)])
            n += batch
        sync()
        timed_[name] = (n, time.perf_counter() - start)
    cpu, dev = (n / s for n, s in timed_.values())
    return {
        "device": device,
        "batch": batch,
        "images": len(batches) * batch,
        "cpu_worker_crops_per_s": round(cpu, 1),
        "device_crops_per_s": round(dev, 1),
        "device_over_cpu": dev / cpu,
        "timed": timed_,
    }


def decode_rows(shards_dir: str, device: str, seconds: float) -> list[dict[str, Any]]:
    """``measure_decode`` as two rows: one loader worker (baseline) and the batched device decode."""
    m = measure_decode(shards_dir, device, BATCH * 4, seconds)
    base = row("decode+resize: OpenCV per crop, 1 thread (baseline)", *m["timed"]["cpu_worker"], None)
    name = f"decode+resize: batched decode_jpeg on {device}, batches of {m['batch']}"
    return [base, row(name, *m["timed"]["device"], base)]
