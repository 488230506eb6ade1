"""Settings of pre-training, and the augmentation recipe they choose; defaults are the paper's values
(§4, §5.1, DESIGN.md).

Recipes: the paper's Re-ID recipe (``lup``) and the original MoCo v2 (``mocov2``). §4.2 and
Tables 2-4: ``lup`` removes colour jitter, adds RandomErasing up to area 0.6 and uses tau 0.07;
``mocov2`` keeps colour jitter, no erasing, tau 0.2. Each factor has its own switch in
``PretrainSettings`` that overrides the preset (``recipe_from_settings``); ``augment.py`` applies
the ``Recipe``. This module imports no heavy library: ``pipeline.py --help`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.errors import SettingsError
from common.normalisation import LUP_MEAN, LUP_STD, NAMED, PRESET_NORMALISATION
from common.settings import check_folder_name, check_nonnegative, check_positive, check_range, setting

# torchvision builders whose backbones end in ``fc`` after global pooling.
RESNETS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)


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
    # Single switches for each factor of the paper's Tables 2-4; None = the preset's choice.
    color_jitter: bool | None = setting(None, "colour jitter 0.4/0.4/0.4/0.1 p 0.8 (Table 2 CJ)")
    grayscale: bool | None = setting(None, "random grayscale p 0.2 (Table 2 GS)")
    blur: bool | None = setting(None, "Gaussian blur sigma 0.1-2 p 0.5 (Table 2 GB)")
    random_erasing: bool | None = setting(None, "RandomErasing p 0.5 (Table 2 RE)")
    erasing_max_area: float = setting(0.6, "largest erased area fraction (Table 3)")
    positives: Literal["instance", "tracklet"] = setting(
        "instance",
        "the key of a query: instance = another view of the same crop (the paper); tracklet = a view "
        "of another crop of its tracklet from the shard (the JSON's tracklet), own-tracklet queue "
        "entries not counted as negatives",
    )
    tracklet_window: int = setting(
        256, "with positives tracklet: a crop's partner is within this many samples of it in its shard"
    )
    height: int = setting(256, "input height")
    width: int = setting(128, "input width")
    batch_size: int = setting(2560, "global batch size (§5.1: 2,560 on 8 GPUs)")
    base_lr: float = setting(
        0.3, "learning rate at base_batch (§5.1: 0.3 at 2,560), scaled linearly with the batch"
    )
    base_batch: int = setting(2560, "batch size that base_lr refers to")
    weight_decay: float = setting(1e-4, "SGD weight decay")
    sgd_momentum: float = setting(0.9, "SGD momentum")
    epochs: int = setting(200, "training epochs (§5.1: 200)")
    epoch_size: int | None = setting(None, "samples per epoch (default: samples in the shards)")
    warmup_epochs: int = setting(5, "linear warm-up epochs before the cosine schedule")
    bn_groups: int = setting(8, "Shuffle-BN groups in the whole job (one GPU emulates them; DDP: per GPU)")
    gpus: int = setting(1, "GPUs (or CPU processes) on this node (launches DDP when gpus*nnodes > 1)")
    nnodes: int = setting(1, "nodes")
    node_rank: int = setting(0, "rank of this node")
    master_addr: str = setting("127.0.0.1", "address of node 0")
    master_port: int = setting(29500, "port of node 0")
    workers: int = setting(8, "data loader workers per GPU")
    shuffle_buffer: int = setting(2000, "samples in each worker's shuffle buffer")
    cpu_threads: int = setting(
        0, "intra-op CPU threads per process (0: torch's default; 1 on a busy shared CPU)"
    )
    bf16: bool = setting(True, "bf16 autocast on GPU")
    channels_last: bool = setting(True, "channels_last memory format on GPU")
    compile: bool = setting(False, "torch.compile the encoders")
    gpu_augment: bool = setting(
        True, "augment in batch on the training device (False: per-sample torchvision in the workers)"
    )
    gpu_decode: bool = setting(
        False, "decode the JPEGs in one batched call on the training device (nvJPEG), not in the workers"
    )
    checkpoint_every: int = setting(1000, "steps between checkpoints")
    keep_checkpoints: int = setting(2, "checkpoints kept on disk (newest)")
    log_every: int = setting(10, "steps between metrics.csv / TensorBoard rows")
    max_steps: int | None = setting(None, "stop after this many steps (for smoke runs)")
    seed: int = setting(0, "random seed")
    device: str = setting("auto", "auto, cpu, cuda")

    def __post_init__(self) -> None:
        check_folder_name(self.run_name, "run_name")
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
            "keep_checkpoints",
            "log_every",
            "max_steps",
            "temperature",
            "shuffle_buffer",
            "tracklet_window",
        )
        least = Recipe(self.height, self.width).smallest_side
        for name in ("height", "width"):
            if getattr(self, name) < least:
                raise SettingsError(
                    f"{name} must be >= {least} pixels (the Gaussian blur pads by {least - 1}), "
                    f"got {getattr(self, name)}"
                )
        check_nonnegative(self, "weight_decay", "warmup_epochs", "workers", "node_rank", "cpu_threads")
        check_range(self, "momentum", 0.0, 1.0)
        check_range(self, "erasing_max_area", 0.02, 1.0)
        if self.arch not in RESNETS:
            raise SettingsError(
                f"arch must be a torchvision ResNet ({', '.join(RESNETS)}), got {self.arch!r}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise SettingsError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.node_rank >= self.nnodes:
            raise SettingsError(f"node_rank {self.node_rank} must be < nnodes {self.nnodes}")
        world = self.gpus * self.nnodes
        if self.batch_size % world:
            raise SettingsError(f"batch_size {self.batch_size} must be a multiple of gpus*nnodes = {world}")
        per_gpu = self.batch_size // world
        groups = max(1, self.bn_groups // world)
        if per_gpu % groups:
            raise SettingsError(
                f"batch per GPU {per_gpu} must be a multiple of its {groups} Shuffle-BN groups"
            )
        if self.queue_size < self.batch_size:
            raise SettingsError(f"queue_size {self.queue_size} must be >= batch_size {self.batch_size}")
        if self.positives not in ("instance", "tracklet"):
            raise SettingsError(f"positives must be instance or tracklet, got {self.positives!r}")
        if self.gpu_decode and not self.gpu_augment:
            raise SettingsError("gpu_decode needs gpu_augment (per-sample augmentation runs in the workers)")


@dataclass(frozen=True)
class Recipe:
    """Every random augmentation's parameters, in the order they are applied."""

    height: int
    width: int
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter_p: float = 0.0  # ColorJitter(0.4, 0.4, 0.4, 0.1) applied with this probability
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    flip_p: float = 0.5
    erasing_p: float = 0.0
    erasing_area: tuple[float, float] = (0.02, 0.6)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)
    mean: tuple[float, float, float] = LUP_MEAN
    std: tuple[float, float, float] = LUP_STD

    @property
    def blur_kernel(self) -> int:
        """Odd kernel covering +-3 sigma of the largest sigma (13 for sigma 2), for any image size."""
        return 2 * int(-(-3 * self.blur_sigma[1] // 1)) + 1

    @property
    def smallest_side(self) -> int:
        """The least height and width (7): the blur pads each side by half its kernel, reflecting,
        which needs a longer side; the batched path blurs every image (an identity kernel when
        the blur is not drawn), so this holds with ``--no-blur`` too."""
        return self.blur_kernel // 2 + 1


def recipe_from_settings(cfg) -> tuple[Recipe, float]:
    """(Recipe, temperature) of ``cfg.preset`` with the per-factor switches applied."""
    lup = cfg.preset == "lup"

    def pick(switch: bool | None, default: bool) -> bool:
        return default if switch is None else switch

    jitter = pick(cfg.color_jitter, not lup)
    erasing = pick(cfg.random_erasing, lup)
    recipe = Recipe(
        height=cfg.height,
        width=cfg.width,
        jitter_p=0.8 if jitter else 0.0,
        grayscale_p=0.2 if pick(cfg.grayscale, True) else 0.0,
        blur_p=0.5 if pick(cfg.blur, True) else 0.0,
        erasing_p=0.5 if erasing else 0.0,
        erasing_area=(0.02, cfg.erasing_max_area),
        mean=NAMED[PRESET_NORMALISATION[cfg.preset]][0],
        std=NAMED[PRESET_NORMALISATION[cfg.preset]][1],
    )
    temperature = cfg.temperature if cfg.temperature is not None else (0.07 if lup else 0.2)
    return recipe, temperature
