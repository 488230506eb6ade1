"""Settings of fine-tuning and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.settings import check_folder_name, check_nonnegative, check_positive, check_range, setting

DATASETS = ("market1501", "dukemtmc", "msmt17", "cuhk03", "viper", "prid", "grid")


@dataclass(frozen=True)
class FinetuneSettings:
    dataset: Literal[DATASETS] = setting("viper", "target Re-ID dataset")  # type: ignore[valid-type]
    data_dir: str | None = setting(
        None, "dataset folder (default: <data>/reid/<DATASET>, the data folder of common.data)"
    )
    init: str = setting(
        "random",
        "'random', 'imagenet' (torchvision's supervised weights), a torchvision state dict "
        "(pretrain's backbone.pth), or a MoCo checkpoint",
    )
    normalisation: Literal["auto", "lup", "imagenet"] = setting(
        "auto", "input mean/std: auto = the weights' own (backbone.json, checkpoint), else LUPerson's"
    )
    arch: str = setting("resnet50", "torchvision backbone of the initial weights")
    head: Literal["ide", "trip", "mgn"] = setting("ide", "Re-ID head (§4.3)")
    run_name: str = setting("finetune", "outputs go to <root>/runs/<run_name>")
    split_seed: int = setting(0, "seed of the identity split")
    id_share: float = setting(1.0, "share of training identities (small-scale, Table 6)")
    image_share: float = setting(1.0, "share of images per identity (few-shot, Table 6)")
    height: int = setting(256, "input height")
    width: int = setting(128, "input width")
    epochs: int = setting(60, "training epochs")
    batch_size: int = setting(64, "batch size (P x K for the triplet head)")
    instances: int = setting(4, "K: images per identity in a batch")
    lr: float = setting(3.5e-4, "Adam learning rate")
    weight_decay: float = setting(5e-4, "Adam weight decay")
    warmup_epochs: int = setting(10, "linear warm-up epochs before the cosine decay")
    label_smoothing: float = setting(0.1, "label smoothing of the softmax loss (IDE, MGN)")
    margin: float = setting(0.3, "batch-hard triplet margin (Trip, MGN)")
    last_stride: int = setting(1, "stride of layer4, 1 or 2, for IDE/Trip (MGN: global 2, parts 1)")
    max_steps: int | None = setting(None, "stop after this many steps (smoke runs)")
    rerank: bool = setting(False, "k-reciprocal re-ranking in the final evaluation")
    eval_batch_size: int = setting(128, "inference batch size of the final evaluation")
    seed: int = setting(0, "training seed")
    device: str = setting("auto", "auto, cpu, cuda")
    workers: int = setting(2, "data loader workers")

    def __post_init__(self) -> None:
        check_folder_name(self.run_name, "run_name")
        check_positive(self, "height", "width", "epochs", "batch_size", "instances", "lr", "max_steps")
        check_positive(self, "eval_batch_size")
        check_nonnegative(self, "workers", "weight_decay", "warmup_epochs", "margin")
        check_range(self, "label_smoothing", 0.0, 0.99)
        check_range(self, "last_stride", 1, 2)
        check_range(self, "id_share", 1e-9, 1.0)
        check_range(self, "image_share", 1e-9, 1.0)


@dataclass(frozen=True)
class EvaluateSettings:
    dataset: Literal[DATASETS] = setting("viper", "target Re-ID dataset")  # type: ignore[valid-type]
    data_dir: str | None = setting(
        None, "dataset folder (default: <data>/reid/<DATASET>, the data folder of common.data)"
    )
    weights: str = setting(
        "random", "'random', 'imagenet', a torchvision state dict, a MoCo or fine-tuned checkpoint"
    )
    normalisation: Literal["auto", "lup", "imagenet"] = setting(
        "auto", "input mean/std: auto = the weights' own (backbone.json, checkpoint), else LUPerson's"
    )
    arch: str = setting("resnet50", "torchvision backbone of the weights")
    split_seed: int = setting(0, "seed of the identity split")
    height: int = setting(256, "input height")
    width: int = setting(128, "input width")
    rerank: bool = setting(False, "k-reciprocal re-ranking")
    batch_size: int = setting(128, "inference batch size")
    seed: int = setting(0, "seed of the weights when --weights random")
    device: str = setting("auto", "auto, cpu, cuda")
    workers: int = setting(2, "data loader workers")

    def __post_init__(self) -> None:
        check_positive(self, "height", "width", "batch_size")
        check_nonnegative(self, "workers")
