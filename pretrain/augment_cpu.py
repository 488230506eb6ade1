"""The same recipe per sample with torchvision transforms, for data-loader workers (``--no-gpu-augment``).

This is the official MoCo recipe's way (one image at a time on CPU workers); it is also the
reference that the batched augmentation in ``augment.py`` is checked against.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from pretrain.settings import Recipe


def torchvision_transform(recipe: Recipe) -> v2.Compose:
    """uint8 3xHxW tensor of any size -> normalised float 3 x height x width."""
    steps: list = [
        v2.RandomResizedCrop((recipe.height, recipe.width), scale=recipe.crop_scale, antialias=True)
    ]
    if recipe.jitter_p > 0:
        steps.append(v2.RandomApply([v2.ColorJitter(*recipe.jitter)], p=recipe.jitter_p))
    if recipe.grayscale_p > 0:
        steps.append(v2.RandomGrayscale(p=recipe.grayscale_p))
    if recipe.blur_p > 0:
        k = recipe.blur_kernel
        steps.append(v2.RandomApply([v2.GaussianBlur((k, k), sigma=recipe.blur_sigma)], p=recipe.blur_p))
    steps += [
        v2.RandomHorizontalFlip(p=recipe.flip_p),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(recipe.mean, recipe.std),
    ]
    if recipe.erasing_p > 0:
        steps.append(
            v2.RandomErasing(
                recipe.erasing_p, scale=recipe.erasing_area, ratio=recipe.erasing_ratio, value="random"
            )
        )
    return v2.Compose(steps)


class PerSampleAugment:
    """Two views of one decoded image, drawn from a generator seeded per sample (resumable)."""

    def __init__(self, recipe: Recipe):
        self.transform = torchvision_transform(recipe)

    def __call__(self, image: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        # torchvision draws from the global RNG: seed it per sample so a resumed run repeats the
        # views, inside fork_rng so the caller's RNG stream is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image), self.transform(image)

    def pair(self, query: torch.Tensor, key: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``--positives tracklet``: a view of the query crop and one of its partner crop."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(query), self.transform(key)
