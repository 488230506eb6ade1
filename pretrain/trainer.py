"""One training process (rank), top to bottom: its entry (``train_worker``), its device, place in
the process group and seeds, the run's sizes (``Plan``) and learning-rate schedule, and the
pre-training loop (``Trainer``) with its logging window; ``launch.py`` starts one per GPU.

One process, one GPU or the CPU:   python pipeline.py pretrain
Eight GPUs of one node:            python pipeline.py pretrain --gpus 8
Two nodes of eight GPUs:           python pipeline.py pretrain --gpus 8 --nnodes 2 --node-rank {0,1} \
                                       --master-addr NODE0
Under an external torchrun the process runs this loop directly (``RANK`` is set).

Learning rate: 0.3 at batch 2,560 scaled linearly with the batch (§5.1), warm-up, then cosine.
The sizes of the run (``make_plan``) are fixed by its settings, the shards and the world size.

The logging window of the loop: pending device losses -> metrics rows, one host sync each. The
loop keeps ``(step, lr, loss, acc)`` of each step on the device and turns them into rows every
``log_every`` steps (``flush``), with the throughput and data-wait share of the window since the
last flush.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from common.backbone_card import write_card
from common.device import pick_device
from common.errors import UsageError
from common.integrity import DISK_FULL, remove_stale_temporaries
from common.log import setup_logging
from common.schedule import cosine_decay
from common.settings import save_settings, settings_to_dict
from pretrain.augment import BatchAugment, PerSampleAugment
from pretrain.checkpoint import (
    NAMES,
    backbone_card,
    check_compatible,
    export_backbone,
    load_latest,
    recipe_normalisation,
    record_finished,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from pretrain.data import PairStream, make_loader
from pretrain.logs import MetricsLog, plot_loss, read_metrics
from pretrain.moco import MoCo, info_nce_loss
from pretrain.settings import recipe_from_settings
from pretrain.shardlist import ShardList, shard_list
from pretrain.tarstream import StreamStopped, one_line
from pretrain.views import batch_views

log = logging.getLogger(__name__)
RUN_FILES = re.compile(
    r"backbone\.(pth|json)(\.sha256)?|metrics\.csv|loss_curve\.png|settings\.yaml|finished\.json"
)
Pending = list[tuple[int, float, torch.Tensor, torch.Tensor]]  # (step, lr, loss, acc) per step


def peak_lr(base_lr: float, batch_size: int, base_batch: int = 2560) -> float:
    """Linear scaling rule: ``base_lr * batch_size / base_batch``."""
    return base_lr * batch_size / base_batch


def lr_at(step: int, peak: float, total_steps: int, warmup_steps: int) -> float:
    """Learning rate of step ``step`` (0-based): linear warm-up to ``peak``, then half a cosine to 0."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    return cosine_decay(step, total_steps, warmup_steps, peak)


@dataclasses.dataclass
class Plan:
    """Sizes of the run, fixed by the settings and the shards."""

    world: int
    per_rank_batch: int
    bn_groups: int  # per process
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    peak_lr: float
    shards: ShardList


def make_plan(cfg, root: Path, world: int, shards: ShardList | None = None) -> Plan:
    """Check the settings against the shards (``shards``, the list ``launch`` checked; else
    made here) and the world size; raise UsageError on a mismatch."""
    if cfg.batch_size % world:
        raise UsageError(f"batch_size {cfg.batch_size} is not a multiple of the {world} processes")
    per_rank = cfg.batch_size // world
    groups = max(1, cfg.bn_groups // world)
    if per_rank % groups:
        raise UsageError(f"batch per process {per_rank} is not a multiple of its {groups} Shuffle-BN groups")
    shards = shards if shards is not None else shard_list(cfg.shards, root)
    epoch_size = cfg.epoch_size or shards.samples
    steps = epoch_size // cfg.batch_size
    if steps < 1:
        raise UsageError(f"an epoch of {epoch_size} samples is smaller than one batch of {cfg.batch_size}")
    return Plan(
        world=world,
        per_rank_batch=per_rank,
        bn_groups=groups,
        steps_per_epoch=steps,
        total_steps=cfg.epochs * steps,
        warmup_steps=cfg.warmup_epochs * steps,
        peak_lr=peak_lr(cfg.base_lr, cfg.batch_size, cfg.base_batch),
        shards=shards,
    )


def init_distributed(device: torch.device) -> tuple[int, int, int]:
    """(rank, world, local rank) from the torchrun environment; joins the process group if world > 1."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, local


def param_checksum(module: torch.nn.Module) -> float:
    """Sum of every parameter in float64: equal on every rank when the replicas agree."""
    return float(sum(p.detach().double().sum().item() for p in module.parameters()))


def seed_process(seed: int) -> None:
    """Seed torch's, Python's and NumPy's global generators: a checkpoint records all three, so two
    equal runs write equal checkpoints (and ``finished.json`` hashes)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)


def new_window() -> dict[str, float]:
    """A window starting now: ``start`` (of this window), ``wait`` (data wait in it), ``t0`` (of the run)."""
    t0 = time.perf_counter()
    return {"start": t0, "wait": 0.0, "t0": t0}


def flush(
    pending: Pending,
    metrics: MetricsLog | None,
    window: dict[str, Any],
    world: int,
    batch_size: int,
    steps_per_epoch: int,
) -> list[dict[str, float]]:
    """Turn the pending device losses into rows (averaged over ``world`` ranks) and start a new window."""
    if not pending:
        return []
    values = torch.stack([torch.stack([loss, acc]) for _, _, loss, acc in pending]).float()
    if world > 1:
        dist.all_reduce(values)
        values /= world
    values = values.cpu().tolist()
    elapsed = time.perf_counter() - window["start"]
    rate = len(pending) * batch_size / max(elapsed, 1e-9)
    wait = window["wait"] / max(elapsed, 1e-9)
    rows = [
        {
            "step": step,
            "epoch": step / steps_per_epoch,
            "lr": lr,
            "loss": v[0],
            "acc": v[1],
            "pairs_per_s": rate,
            "data_wait_share": wait,
            "time_s": time.perf_counter() - window["t0"],
        }
        for (step, lr, _, _), v in zip(pending, values, strict=True)
    ]
    if metrics is not None:
        metrics.write(rows)
    window.update(start=time.perf_counter(), wait=0.0)
    return rows


class Trainer:
    """Model, optimiser, augmentation, data and logs of one rank."""

    def __init__(self, cfg, root: Path, shards: ShardList | None = None):
        self.cfg, self.root = cfg, root
        local = int(os.environ.get("LOCAL_RANK", 0))
        self.device = pick_device(cfg.device, local)  # auto, cpu or cuda: the GPU of its local rank
        if self.device.type == "cuda":
            torch.cuda.set_device(local)
        self.rank, self.world, _ = init_distributed(self.device)
        self.plan = make_plan(cfg, root, self.world, shards)
        self.main = self.rank == 0
        self.run_dir = root / "runs" / cfg.run_name
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")
        seed_process(cfg.seed + self.rank)
        self.recipe, temperature = recipe_from_settings(cfg)
        self.tracklets = cfg.positives == "tracklet"
        self.model = MoCo(
            cfg.arch, cfg.dim, cfg.queue_size, cfg.momentum, temperature, self.plan.bn_groups, self.tracklets
        )
        self.model.to(self.device)
        self.channels_last = self.cuda and cfg.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(
            self.model.encoder_q.parameters(),
            lr=self.plan.peak_lr,
            momentum=cfg.sgd_momentum,
            weight_decay=cfg.weight_decay,
        )
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed * 1000 + self.rank)
        self.augment = BatchAugment(self.recipe, self.generator) if cfg.gpu_augment else None
        self.checkpoint: tuple[Path, str] | None = None  # the newest good checkpoint and its sha256
        self.step = self.resume()
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.cuda else None, forward_sync_buffers=False
            )  # its constructor copies rank 0's parameters and buffers (queue included) to every rank
        if cfg.compile:
            self.model.encoder_q.compile()
            self.model.encoder_k.compile()

    # -- checkpoints -------------------------------------------------------------------------------

    def resume(self) -> int:
        """Load the newest checkpoint (rank 0 reads it, the others receive it); the step to start at."""
        folder = self.run_dir / "checkpoints"
        if self.main:
            remove_stale_temporaries(folder, NAMES)
            remove_stale_temporaries(self.run_dir, RUN_FILES)
        state = load_latest(folder) if self.main else None
        if state is not None:
            self.checkpoint = (Path(state["path"]), state["sha256"])
            check_compatible(state["settings"], settings_to_dict(self.cfg), folder)
            self.model.load_state_dict(state["model"])
        if self.world > 1:
            box = [None if state is None else {k: v for k, v in state.items() if k != "model"}]
            dist.broadcast_object_list(box, src=0)
            state = box[0]
        if state is None:
            return 0
        self.optimizer.load_state_dict(state["optimizer"])
        for p, slot in self.optimizer.state.items():  # momentum buffers: the parameters' memory format
            if "momentum_buffer" in slot and slot["momentum_buffer"] is not None:
                slot["momentum_buffer"] = torch.empty_like(p).copy_(slot["momentum_buffer"])
        rngs = state["rng"]
        if len(rngs) == self.world:
            set_rng_state(rngs[self.rank], self.generator)
        else:
            log.warning(
                "checkpoint has RNG states of %d processes, not %d: fresh streams", len(rngs), self.world
            )
        if self.main:
            log.info("resumed from %s (step %d)", state["path"], state["step"])
        return int(state["step"])

    def save(self) -> None:
        """Every rank's RNG states go to rank 0, which writes the checkpoint."""
        rngs = [rng_state(self.generator)]
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if not self.main:
            return
        epoch, batch = divmod(self.step, self.plan.steps_per_epoch)
        state = {
            "model": self.model.state_dict(),  # encoder_q, encoder_k (key encoder), queue, queue_ptr
            "optimizer": self.optimizer.state_dict(),
            "schedule": {
                "peak_lr": self.plan.peak_lr,
                "total_steps": self.plan.total_steps,
                "warmup_steps": self.plan.warmup_steps,
            },
            "rng": rngs,
            "step": self.step,
            "data": {"epoch": epoch, "batch": batch, "steps_per_epoch": self.plan.steps_per_epoch},
            "settings": settings_to_dict(self.cfg),
            "positives": self.cfg.positives,
            "normalisation": recipe_normalisation(self.recipe, self.cfg.preset).as_dict(),
        }
        self.checkpoint = save_checkpoint(self.run_dir / "checkpoints", state, self.cfg.keep_checkpoints)

    # -- one step --------------------------------------------------------------------------------

    def views(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return batch_views(
            batch, self.device, self.recipe, self.augment, gpu_decode=self.cfg.gpu_decode,
            channels_last=self.channels_last, tracklets=self.tracklets,
        )  # fmt: skip

    def train_step(
        self, im_q: torch.Tensor, im_k: torch.Tensor, ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lr = lr_at(self.step, self.plan.peak_lr, self.plan.total_steps, self.plan.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda and self.cfg.bf16):
            logits = self.net(im_q, im_k, generator=self.generator, ids=ids)
        loss = info_nce_loss(logits)  # Eq. 1
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        acc = (logits.argmax(dim=1) == 0).float().mean()
        return loss.detach(), acc.detach()

    # -- the loop --------------------------------------------------------------------------------

    def loader(self, stop: int):
        augment = None if self.cfg.gpu_augment else PerSampleAugment(self.recipe)
        pairs = dict(stream_type=PairStream, window=self.cfg.tracklet_window) if self.tracklets else {}
        return make_loader(
            self.plan.shards.urls,
            self.recipe,
            seed=self.cfg.seed,
            start=self.step,
            stop=stop,
            steps_per_epoch=self.plan.steps_per_epoch,
            batch=self.plan.per_rank_batch,
            workers=self.cfg.workers,
            shuffle_buffer=self.cfg.shuffle_buffer,
            augment=augment,
            raw=self.cfg.gpu_decode,
            pin_memory=self.cuda,
            open_shard=self.plan.shards.open,
            **pairs,
        )

    def fit(self) -> dict[str, Any]:
        cfg, plan = self.cfg, self.plan
        stop = plan.total_steps if cfg.max_steps is None else min(plan.total_steps, cfg.max_steps)
        start = self.step
        metrics = None
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_settings(cfg, self.run_dir / "settings.yaml", "pretrain")
            metrics = MetricsLog(self.run_dir, start)
        from tqdm import tqdm

        bar = tqdm(
            total=stop, initial=start, desc="pretrain", unit="step", disable=not self.main, mininterval=1
        )
        window = new_window()
        t0, total_wait, pending, rows = window["t0"], 0.0, [], []
        self.model.train()
        try:  # the bar ends its line whatever happens: an error message starts on its own
            batches = iter(self.loader(stop)) if self.step < stop else iter(())
            while self.step < stop:
                tw = time.perf_counter()
                try:
                    batch = next(batches)
                except StreamStopped as e:  # from a loader worker: its message without the traceback
                    raise UsageError(one_line(e)) from None
                waited = time.perf_counter() - tw
                window["wait"] += waited
                total_wait += waited
                lr = lr_at(self.step, plan.peak_lr, plan.total_steps, plan.warmup_steps)
                loss, acc = self.train_step(*self.views(batch))
                pending.append((self.step, lr, loss, acc))
                checkpoint = self.step % cfg.checkpoint_every == 0 or self.step == stop
                # rows reach metrics.csv before their checkpoint: a resume keeps them (logs.py)
                if self.step % cfg.log_every == 0 or checkpoint:
                    rows = (
                        flush(pending, metrics, window, self.world, cfg.batch_size, plan.steps_per_epoch)
                        or rows
                    )
                    pending = []
                    bar.set_postfix(
                        pairs_s=f"{rows[-1]['pairs_per_s']:.0f}", wait=f"{rows[-1]['data_wait_share']:.0%}"
                    )
                bar.update(1)
                if checkpoint:
                    self.save()
            del batches  # stops the loader's workers
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        return self.finish(start, wall, total_wait, metrics)

    def finish(self, start: int, wall: float, wait: float, metrics: MetricsLog | None) -> dict[str, Any]:
        """Export the backbone, draw the loss curve, and summarise this rank's run."""
        summary: dict[str, Any] = {
            "steps": self.step,
            "epochs": round(self.step / self.plan.steps_per_epoch, 3),
            "resumed_from_step": start,
            "images_per_s": (self.step - start) * self.cfg.batch_size / wall if self.step > start else 0.0,
            "data_wait_share": wait / wall if self.step > start else 0.0,
            "checksums": {  # equal on every rank when the replicas agree
                "query": param_checksum(self.model.encoder_q),
                "key": param_checksum(self.model.encoder_k),
                "queue": float(self.model.queue.double().sum()),
            },
            "world_size": self.world,
            "device": str(self.device),
        }
        if self.main:
            assert metrics is not None
            metrics.close()
            rows = read_metrics(metrics.path)
            summary["first_loss"] = rows[0]["loss"] if rows else None
            summary["last_loss"] = rows[-1]["loss"] if rows else None
            backbone = export_backbone(self.model.encoder_q.backbone, self.run_dir / "backbone.pth")
            card = backbone_card(
                self.cfg,
                self.recipe,
                self.model.temperature,
                self.step,
                self.plan.steps_per_epoch,
                self.plan.shards.fingerprint(),
            )
            summary["backbone"] = str(backbone)
            summary["backbone_card"] = str(write_card(backbone, card))
            summary["loss_curve"] = str(plot_loss(metrics.path, self.run_dir / "loss_curve.png"))
            summary["metrics"] = str(metrics.path)
            if self.checkpoint is not None:  # the outputs came from it: a rerun leaves them be
                record_finished(self.run_dir, *self.checkpoint, summary, settings_to_dict(self.cfg))
        if self.world > 1:
            dist.barrier()
        return summary


def out_of_memory(cfg) -> str:
    """The one line for a batch that does not fit the GPU: what to pass instead."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    per_gpu = cfg.batch_size // world
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 2**30
    half = cfg.batch_size // 2
    return (
        f"batch {cfg.batch_size} ({per_gpu} per GPU at {cfg.height}x{cfg.width}) does not fit in the "
        f"{total:.0f} GiB of a GPU: pass --batch-size {half} (the learning rate follows it: "
        f"{cfg.base_lr} x {half}/{cfg.base_batch}) or more --gpus"
    )


def train_worker(cfg, root: Path, shards: ShardList | None = None) -> dict[str, Any]:
    """Entry of one process (launched by ``launch.pretrain`` or by an external torchrun);
    ``shards``: the list ``launch`` checked against the index (each tar's identity with it)."""
    setup_logging()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    elif local_world > 1 and "OMP_NUM_THREADS" not in os.environ:
        # As torchrun does: processes sharing a node must not oversubscribe its cores.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    try:
        return Trainer(cfg, Path(root), shards).fit()
    except torch.cuda.OutOfMemoryError:
        raise UsageError(out_of_memory(cfg)) from None
    except OSError as e:  # a full disk while writing logs or plots (checkpoints say so themselves)
        if e.errno not in DISK_FULL:
            raise
        raise UsageError(f"cannot write {e.filename or root} ({e.strerror})") from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
