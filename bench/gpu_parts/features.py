"""Part ``features``: images/s of ``evaluate``'s path, ``finetune.features.extract_features``.

The model is ``evaluate``'s frozen backbone (a ResNet pooled before ``fc``, random weights); the
images are real crops of the four bundled benchmarks read from disk, so the figure includes
what ``evaluate`` pays for: PIL decoding and resizing in the loader workers. The model alone on
images already on the device is the second figure: the gap is the loader's.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from bench.gpu_parts.context import IMAGE_SUFFIXES, Context, evenly
from common.normalisation import named
from finetune.records import Sample
from finetune.settings import EvaluateSettings


def reid_samples(ctx: Context, count: int) -> list:
    """``count`` images spread over every benchmark folder under ``reid/``, as ``Sample`` records."""
    paths = sorted(p for p in (ctx.data / "reid").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [Sample(path=p, pid=0, camid=0) for p in evenly(paths, count)]


def extract(model, samples: list, size: tuple[int, int], batch: int, device, workers: int):
    """``extract_features`` with LUPerson's normalisation, whichever signature it has today."""
    from finetune.features import extract_features

    kwargs: dict[str, Any] = {}
    if "norm" in inspect.signature(extract_features).parameters:
        kwargs["norm"] = named("lup", "bench/gpu.py")
    return extract_features(
        model,
        samples,
        height=size[0],
        width=size[1],
        batch_size=batch,
        device=device,
        workers=workers,
        **kwargs,
    )


def model_only(model, size: tuple[int, int], batch: int, device, steps: int) -> float:
    """Images/s of the forward pass ``extract_features`` runs (bf16 autocast on the GPU), input on the device."""
    import torch

    x = torch.randn(batch, 3, *size, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        model(x)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            out = model(x)
        out.float().sum().item()
    return steps * batch / (time.perf_counter() - start)


def run(ctx: Context, record: dict[str, Any]) -> None:
    """The evaluate path with evaluate's default workers and with more, then the model alone."""
    import torch

    from finetune.evaluate_cmd import frozen_backbone

    arch, size, count = ("resnet18", (64, 32), 64) if ctx.smoke else ("resnet50", (256, 128), 4096)
    batch = 32 if ctx.smoke else EvaluateSettings.batch_size
    device = torch.device(ctx.device)
    torch.manual_seed(0)
    model = frozen_backbone(arch, "random")[0]
    samples = reid_samples(ctx, count)
    extract(model, samples[: 2 * batch], size, batch, device, 0)  # warm-up: cuDNN picks its kernels
    for workers in sorted({0 if ctx.smoke else EvaluateSettings.workers, ctx.cpu_workers()}):
        start = time.perf_counter()
        features = extract(model, samples, size, batch, device, workers)
        rate = len(features) / (time.perf_counter() - start)
        name = f"extract_features, {arch} {size[0]}x{size[1]}, {len(samples):,} real crops, {workers} workers"
        record["rows"].append({"name": name, "value": rate, "unit": "img/s", "note": f"batch {batch}"})
    rate = model_only(model, size, batch, device, 3 if ctx.smoke else 50)
    name = f"the same model alone, {arch} {size[0]}x{size[1]}, input on the device"
    record["rows"].append({"name": name, "value": rate, "unit": "img/s", "note": f"batch {batch}"})
