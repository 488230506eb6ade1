"""Every part of ``bench/gpu.py``: what it measures, its budget on one H200, and why that budget.

The budgets are estimates until a GPU run measures them: from the figures in DESIGN.md (one
H100: MoCo v2 ResNet-50 step fp32 1,091 pairs/s, bf16 + channels_last 3,973 pairs/s; ResNet-50
bf16 inference 20,008 img/s; JPEG decode 716 img/s per CPU core) and the CPU runs of this
repository. The default parts add up to 575 s, and the imports and CUDA start-up to ~15 s:
under the 600 s that one lent session can spend. Each run records every part's seconds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    run: str  # "module:function" of bench.gpu_parts
    budget_s: float  # seconds on one H200 (an estimate until measured)
    default: bool  # in the default (10-minute) run
    needs_shards: bool  # reads the shards the ``shards`` part builds
    elastic: bool  # may also use what earlier parts left of the run's budget
    what: str
    why: str

    def function(self) -> Callable:
        module, _, name = self.run.partition(":")
        return getattr(importlib.import_module(f"bench.gpu_parts.{module}"), name)


PARTS: dict[str, Part] = {
    "shards": Part(
        "context:run_shards", 25, True, False, False,
        "build-shards --from-images on the 14,834 crops of unlabeled/ into a temporary workspace: crops/s",
        "2,242 crops/s with one worker on the 2-core build machine: ~7 s; 8 workers less, plus the pool's start",
    ),
    "pretrain": Part(
        "pretrain:run", 120, True, True, False,
        "pairs/s and peak GPU memory: (a) the official fp32 MoCo v2 step, (b) our step on synthetic input, "
        "(c) our trainer streaming build-shards' shards; ResNet-50 256x128, batch 256 and 512",
        "60 steps a run (10 warm-up): (a) at ~1,100 pairs/s is 14 s at batch 256 and 28 s at 512, (b) at "
        "~4,000 pairs/s 4 + 8 s, (c) at ~3,000 pairs/s 5 + 10 s plus ~10 s of loader start each; six model "
        "builds and cuDNN tuning ~20 s: ~100 s",
    ),
    "detect": Part(
        "detect:run", 40, True, False, False,
        "frames/s and boxes/s on real sampled frames: YOLOv5x (yolov5xu.yaml, fp16), HRNet-W32 on 8 boxes a "
        "frame (fp32 as the stage runs it, and fp16 autocast), both; 5 full batches of 32 after a warm-up batch",
        "4 rows of 6 batches of 32 frames; letterboxing and crop warping on the CPU dominate: ~3 s a row, "
        "plus building the models (~5 s) and decoding the 25 sampled frames",
    ),
    "features": Part(
        "features:run", 20, True, False, False,
        "img/s of evaluate's extract_features (ResNet-50 256x128, 4,096 real benchmark crops from disk) with "
        "evaluate's 2 loader workers and with 8, and of the model alone",
        "PIL decode + resize at ~1,000 img/s a worker: ~2 s with 2 workers' share of 4,096 crops, ~1 s with 8; "
        "the model at ~20,000 img/s: under a second; model build and warm-up ~5 s",
    ),
    "decode": Part(
        "decode:run", 40, True, True, False,
        "JPEG decoding of the shards: one CPU loader worker against one batched decode_jpeg call on the GPU "
        "(bench/shard_throughput.py measure_decode, batch 256), and (c) of the pretrain part with gpu_decode at batch 256",
        "two 5-second measurements, then (c): 60 steps at ~3,000-4,000 pairs/s, ~5 s, plus ~10 s of loader "
        "start and model build: ~30 s",
    ),
    "transfer": Part(
        "experiments:run_transfer", 330, True, True, True,
        "the transfer experiment: lup and mocov2 pre-training (ResNet-50 128x64, 10 epochs), then frozen "
        "evaluate and IDE finetune (6 epochs) of lup, mocov2, random (imagenet when cached) on VIPeR, PRID, "
        "GRID, CUHK03 x 3 seeds: mAP and rank-1, ratio to random",
        "pre-training ~5,000 pairs/s (loader-bound at 128x64): 2 x (15 s start + 10 x 3 s); 36 evaluates "
        "~1 s each; 36 finetunes ~2 s of start and final evaluation plus ~0.4 s an epoch (0.8 s on CUHK03, "
        "whose training split is 6x larger): ~305 s; it also gets what earlier parts left unused",
    ),
    "ablations": Part(
        "experiments:run_ablations", 900, False, True, True,
        "Tables 2-4's shape: lup, lup without RandomErasing, lup at temperature 0.2, lup with colour jitter; "
        "fine-tuned and frozen mAP / rank-1 at the transfer part's sizes",
        "three more pre-trainings (~45 s each) and 12 evaluate + finetune pairs each (~70 s), the lup baseline "
        "reused from the transfer part when it ran: ~400 s; more without it",
    ),
    "data-scale": Part(
        "experiments:run_data_scale", 900, False, True, True,
        "Table 7's shape: lup pre-trained on 25 / 50 / 100 % of the crops with the same steps "
        "(epoch_size = all crops), then the transfer part's evaluation",
        "two more build-shards (~5 s each) and three pre-trainings with their 12 evaluate + finetune pairs "
        "(~115 s each): ~360 s",
    ),
    "tracklets": Part(
        "experiments:run_tracklets", 900, False, False, True,
        "issue 17: mocov2 pre-trained with instance and with tracklet positives (TownCentre crops as "
        "tracklets, the rest single crops), same budget, then the transfer part's evaluation beside random",
        "its own build-shards (~10 s) and two pre-trainings with their 12 evaluate + finetune pairs each "
        "(~115 s each), and random's 12 pairs (~70 s): ~320 s",
    ),
}  # fmt: skip

DEFAULT_TOTAL_S = 600.0  # one lent session: ~15 minutes of device time, minus start-up and a rerun's margin
STARTUP_S = 15.0  # imports, CUDA start-up: not a part, but counted
