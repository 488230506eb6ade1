"""Settings of pre-training; defaults are the paper's values (§4, §5.1, DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.settings import check_nonnegative, check_positive, check_range, setting


@dataclass(frozen=True)
class PretrainSettings:
    shards: str | None = setting(None, "shard folder or brace pattern (default: <root>/shards)")
    run_name: str = setting("lup_moco", "experiment name: outputs go to <root>/runs/<run_name>")
    preset: Literal["lup", "mocov2"] = setting("lup", "augmentation/temperature preset")
    arch: str = setting("resnet50", "torchvision backbone")
    dim: int = setting(128, "embedding dimension of the MLP head")
    queue_size: int = setting(65536, "negatives in the queue (K)")
    momentum: float = setting(0.999, "key encoder momentum (Eq. 2)")
    temperature: float | None = setting(
        None, "InfoNCE temperature (Eq. 1); None = preset (lup 0.07, mocov2 0.2)"
    )
    height: int = setting(256, "input height")
    width: int = setting(128, "input width")
    batch_size: int = setting(256, "global batch size")
    base_lr: float = setting(0.3, "learning rate at batch 2560, scaled linearly with the batch")
    base_batch: int = setting(2560, "batch size that base_lr refers to")
    weight_decay: float = setting(1e-4, "SGD weight decay")
    sgd_momentum: float = setting(0.9, "SGD momentum")
    epochs: int = setting(200, "training epochs")
    epoch_size: int | None = setting(None, "samples per epoch (default: samples in the shards)")
    warmup_epochs: int = setting(5, "linear warm-up epochs before the cosine schedule")
    bn_groups: int = setting(8, "Shuffle-BN groups emulated on one GPU")
    gpus: int = setting(1, "GPUs on this node (launches DDP when > 1)")
    nnodes: int = setting(1, "nodes")
    node_rank: int = setting(0, "rank of this node")
    master_addr: str = setting("127.0.0.1", "address of node 0")
    master_port: int = setting(29500, "port of node 0")
    workers: int = setting(8, "data loader workers per GPU")
    bf16: bool = setting(True, "bf16 autocast on GPU")
    channels_last: bool = setting(True, "channels_last memory format on GPU")
    compile: bool = setting(False, "torch.compile the encoders")
    gpu_augment: bool = setting(True, "run the augmentations on the GPU in batch")
    checkpoint_every: int = setting(1000, "steps between checkpoints")
    max_steps: int | None = setting(None, "stop after this many steps (for smoke runs)")
    seed: int = setting(0, "random seed")
    device: str = setting("auto", "auto, cpu, cuda")

    def __post_init__(self) -> None:
        check_positive(
            self,
            "dim",
            "queue_size",
            "height",
            "width",
            "batch_size",
            "base_lr",
            "base_batch",
            "epochs",
            "epoch_size",
            "bn_groups",
            "gpus",
            "nnodes",
            "checkpoint_every",
            "max_steps",
            "temperature",
        )
        check_nonnegative(self, "weight_decay", "warmup_epochs", "workers", "node_rank")
        check_range(self, "momentum", 0.0, 1.0)
