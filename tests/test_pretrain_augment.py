"""The batched augmentation against torchvision's own transforms, on a real crop; presets and switches."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from common.normalisation import IMAGENET_MEAN, LUP_MEAN, LUP_STD
from pretrain.augment import (
    NO_BLUR_SIGMA,
    BatchAugment,
    PerSampleAugment,
    ViewParams,
    render_view,
    sample_boxes,
    sample_view,
)
from pretrain.settings import PretrainSettings, Recipe, recipe_from_settings

RECIPE = Recipe(height=64, width=32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def crop(unlabeled_dir: Path) -> torch.Tensor:
    """One real person crop, float 1 x 3 x H x W in [0, 1] at its original size."""
    path = sorted((unlabeled_dir / "CUHK").glob("*.jpg"))[0]
    image = cv2.imread(str(path))[:, :, ::-1].copy()
    assert image.shape[:2] == (160, 80), "the boxes below assume this 160x80 crop"
    return torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255


def params(
    box, flip=False, sigma=NO_BLUR_SIGMA, jitter=False, factors=(1, 1, 1, 0), order=(0, 1, 2, 3), gray=False
):
    return ViewParams(
        boxes=torch.tensor([box], dtype=torch.float),
        flip=torch.tensor([flip]),
        sigma=torch.tensor([float(sigma)]),
        jitter=torch.tensor([jitter]),
        factors=torch.tensor([factors], dtype=torch.float),
        order=torch.tensor([order]),
        gray=torch.tensor([gray]),
        erase=torch.tensor([False]),
        erase_boxes=torch.zeros(1, 4),
    )


def torchvision_view(image, box, recipe, flip=False, sigma=None, ops=(), gray=False):
    """The official order with torchvision's functional ops: crop+resize, jitter, gray, blur, flip, normalise."""
    y = TF.resized_crop(image, *[int(v) for v in box], [recipe.height, recipe.width], antialias=True)
    for op, factor in ops:
        y = op(y, factor)
    if gray:
        y = TF.rgb_to_grayscale(y, 3)
    if sigma:
        y = TF.gaussian_blur(y, [recipe.blur_kernel] * 2, [sigma] * 2)
    if flip:
        y = TF.horizontal_flip(y)
    return TF.normalize(y, list(recipe.mean), list(recipe.std))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"flip": True},
        {"sigma": 1.3},
        {"gray": True},
        {"flip": True, "sigma": 0.6, "gray": True},
    ],
    ids=["crop-resize", "flip", "blur", "grayscale", "all-spatial"],
)
@pytest.mark.parametrize(
    "box", [(0, 0, 160, 80), (10, 5, 100, 40), (30, 20, 20, 10)], ids=["whole", "down", "up"]
)
def test_spatial_and_gray_match_torchvision(crop, box, kwargs):
    sizes = torch.tensor([crop.shape[2:]])
    ours = render_view(crop, sizes, params(box, **kwargs), RECIPE)[0]
    theirs = torchvision_view(crop[0], box, RECIPE, **kwargs)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    ("factors", "order"),
    [
        ((0.8, 1.3, 0.6, 0.1), (1, 3, 2, 0)),
        ((1.0, 1.0, 1.0, -0.08), (3, 0, 1, 2)),
        ((1.2, 0.7, 1.3, 0.08), (2, 0, 1, 3)),
    ],
)
def test_colour_jitter_matches_torchvision(crop, factors, order):
    recipe = dataclasses.replace(RECIPE, jitter_p=0.8)
    box = (10, 5, 100, 40)
    sizes = torch.tensor([crop.shape[2:]])
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    ours = render_view(crop, sizes, params(box, jitter=True, factors=factors, order=order), recipe)[0]
    theirs = torchvision_view(crop[0], box, recipe, ops=[(ops[o], factors[o]) for o in order])
    diff = (ours - theirs).abs()
    # torchvision clips to [0, 1] between operators, we only after each affine stage: the clipped
    # pixels differ, and through contrast's mean gray level all others by far less than a gray level.
    assert diff.mean() < 0.01 and torch.quantile(diff.flatten(), 0.95) < 1e-3


def test_random_draws_follow_the_recipe():
    g = torch.Generator().manual_seed(0)
    n = 4000
    sizes = torch.tensor([[160, 64]] * n)
    recipe = dataclasses.replace(RECIPE, erasing_p=0.5, jitter_p=0.8)
    p = sample_view(sizes, recipe, g)
    for flags, prob in [(p.flip, 0.5), (p.jitter, 0.8), (p.gray, 0.2), (p.erase, 0.5), (p.sigma > 0.01, 0.5)]:
        assert abs(flags.float().mean().item() - prob) < 0.03
    top, left, h, w = p.boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 160).all() and (left + w <= 64).all()
    area = h * w / (160 * 64)
    assert area.min() >= 0.2 - 0.02 and area.max() <= 1.0
    et, el, eh, ew = p.erase_boxes.unbind(1)
    assert (et + eh <= 64).all() and (el + ew <= 32).all()
    assert (eh * ew / (64 * 32)).max() <= 0.6 + 0.02  # Table 3: up to area 0.6


def test_crop_boxes_fall_back_to_a_central_crop():
    """An image far too wide for any ratio in (3/4, 4/3) gets torchvision's central fallback."""
    g = torch.Generator().manual_seed(0)
    boxes = sample_boxes(torch.tensor([[10, 400]]), (0.9, 1.0), (3 / 4, 4 / 3), g)
    top, left, h, w = boxes[0].tolist()
    assert (h, w) == (10, round(10 * 4 / 3)) and left == (400 - w) // 2 and top == 0


def test_erasing_replaces_a_box_with_noise(crop):
    recipe = dataclasses.replace(RECIPE, erasing_p=1.0)
    g = torch.Generator().manual_seed(1)
    images = (crop[0].permute(1, 2, 0) * 255).round().to(torch.uint8)
    images = torch.from_numpy(cv2.resize(images.numpy(), (32, 64)))[None].repeat(64, 1, 1, 1)
    sizes = torch.tensor([[160, 80]] * 64)
    clean = dataclasses.replace(RECIPE, erasing_p=0.0)
    p = sample_view(sizes, recipe, torch.Generator().manual_seed(2))
    x = images.permute(0, 3, 1, 2).float() / 255
    erased = render_view(x, sizes, p, recipe, g)
    plain = render_view(x, sizes, p, clean, g)
    changed = (erased != plain).any(dim=1)  # B x H x W
    expected = p.erase_boxes[:, 2] * p.erase_boxes[:, 3]
    torch.testing.assert_close(changed.sum(dim=(1, 2)).float(), expected)
    noise = erased[changed[:, None].expand_as(erased)]
    assert abs(noise.mean().item()) < 0.05 and abs(noise.std().item() - 1) < 0.05  # N(0, 1) values


def test_batch_augment_gives_two_different_normalised_views(unlabeled_dir):
    files = sorted(unlabeled_dir.glob("*/*.jpg"))[::500][:16]
    images, sizes = [], []
    for f in files:
        im = cv2.imread(str(f))[:, :, ::-1]
        sizes.append(im.shape[:2])
        images.append(cv2.resize(im, (32, 64), interpolation=cv2.INTER_AREA))
    batch = torch.from_numpy(np.stack(images))
    q, k = BatchAugment(RECIPE, torch.Generator().manual_seed(0))(batch, torch.tensor(sizes))
    assert q.shape == k.shape == (16, 3, 64, 32) and not torch.equal(q, k)
    # Without erasing, every value is a normalised [0, 1] pixel.
    low = (0 - torch.tensor(LUP_MEAN)) / torch.tensor(LUP_STD)
    high = (1 - torch.tensor(LUP_MEAN)) / torch.tensor(LUP_STD)
    per_channel = q.permute(1, 0, 2, 3).reshape(3, -1)
    assert (per_channel.min(1).values >= low - 1e-5).all() and (
        per_channel.max(1).values <= high + 1e-5
    ).all()


def test_per_sample_path_is_seeded_and_leaves_the_global_rng_alone(crop):
    aug = PerSampleAugment(dataclasses.replace(RECIPE, erasing_p=0.5, jitter_p=0.8))
    image = (crop[0] * 255).to(torch.uint8)
    state = torch.get_rng_state()
    a1, b1 = aug(image, 7)
    a2, b2 = aug(image, 7)
    a3, _ = aug(image, 8)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a1, a2) and torch.equal(b1, b2) and not torch.equal(a1, b1) and not torch.equal(a1, a3)
    assert a1.shape == (3, 64, 32) and a1.dtype == torch.float32


def test_presets_and_single_factor_switches():
    lup, tau = recipe_from_settings(PretrainSettings())
    assert tau == 0.07 and lup.jitter_p == 0 and lup.erasing_p == 0.5 and lup.erasing_area == (0.02, 0.6)
    assert (lup.grayscale_p, lup.blur_p, lup.crop_scale) == (0.2, 0.5, (0.2, 1.0)) and lup.mean == LUP_MEAN
    moco, tau = recipe_from_settings(PretrainSettings(preset="mocov2"))
    assert tau == 0.2 and moco.jitter_p == 0.8 and moco.jitter == (0.4, 0.4, 0.4, 0.1) and moco.erasing_p == 0
    assert moco.mean == IMAGENET_MEAN
    # Table 2 (-GS, -GB, -CJ, +RE), Table 3 (erasing area), Table 4 (temperature)
    r, t = recipe_from_settings(
        PretrainSettings(
            preset="mocov2", grayscale=False, blur=False, color_jitter=False, random_erasing=True
        )
    )
    assert (r.grayscale_p, r.blur_p, r.jitter_p, r.erasing_p) == (0, 0, 0, 0.5)
    r, t = recipe_from_settings(PretrainSettings(erasing_max_area=0.4, temperature=0.1))
    assert r.erasing_area == (0.02, 0.4) and t == 0.1
    assert RECIPE.blur_kernel == 2 * math.ceil(3 * 2.0) + 1
