"""Images, transforms and the P x K identity sampler for fine-tuning and feature extraction."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision import transforms as T

from common.normalisation import Normalisation
from finetune.records import Sample


def train_transform(height: int, width: int, norm: Normalisation) -> T.Compose:
    """Bag-of-tricks augmentation: resize, flip, pad-and-crop, random erasing (fast-reid defaults).

    ``norm`` is the mean/std the backbone was trained with (``finetune.normalisation``)."""
    pad = max(1, round(10 * height / 256))
    return T.Compose(
        [
            T.Resize((height, width), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.Pad(pad),
            T.RandomCrop((height, width)),
            T.ToTensor(),
            T.Normalize(norm.mean, norm.std),
            T.RandomErasing(p=0.5, value=0),
        ]
    )


def test_transform(height: int, width: int, norm: Normalisation) -> T.Compose:
    return T.Compose(
        [
            T.Resize((height, width), interpolation=T.InterpolationMode.BICUBIC),
            T.ToTensor(),
            T.Normalize(norm.mean, norm.std),
        ]
    )


class ImageDataset(Dataset):
    """``(image tensor, label, camera)`` for each sample; ``label`` is the sample's pid."""

    def __init__(self, samples: list[Sample], transform: T.Compose) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        s = self.samples[i]
        with Image.open(s.path) as im:
            image = im.convert("RGB")
        return self.transform(image), s.pid, s.camid


class IdentitySampler(Sampler[list[int]]):
    """Batches of P identities x K images (K drawn with replacement for identities with fewer).

    An epoch has ``max(1, len(samples) // (P * K))`` batches; identities are drawn without
    replacement inside a batch, in a fresh random order per epoch (seeded by ``seed + epoch``).
    """

    def __init__(self, samples: list[Sample], batch_size: int, instances: int, seed: int = 0) -> None:
        self.by_pid: dict[int, list[int]] = defaultdict(list)
        for i, s in enumerate(samples):
            self.by_pid[s.pid].append(i)
        self.pids = sorted(self.by_pid)
        self.k = instances
        self.p = max(1, min(len(self.pids), batch_size // instances))
        self.n_batches = max(1, len(samples) // (self.p * self.k))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        pool: list[int] = []
        for _ in range(self.n_batches):
            if len(pool) < self.p:
                pool = rng.sample(self.pids, len(self.pids))
            chosen, pool = pool[: self.p], pool[self.p :]
            batch = []
            for pid in chosen:
                idx = self.by_pid[pid]
                batch += rng.sample(idx, self.k) if len(idx) >= self.k else rng.choices(idx, k=self.k)
            yield batch
