"""The two random views of a batch, augmented together on the training device (GPU or CPU).

Input: decoded uint8 images of one fixed size (B x H0 x W0 x 3) and their original sizes; the
crop boxes are drawn in original pixels, so crop ratios mean what torchvision's mean. The recipe's
order is the official one (crop, colour jitter, grayscale, blur, flip, normalise, erasing):

    spatial  = Ry @ X @ Rx^T      crop + antialiased resize, blur and flip folded into Ry, Rx
    colour   = clamp(M x + b)     jitter and grayscale as affine maps per image (+ one hue pass)
    erasing  = where(box, noise, x)

Every random draw comes from one ``torch.Generator`` on the device (saved in checkpoints), and no
step synchronises with the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pretrain.colour import jitter_and_gray, sample_jitter
from pretrain.geometry import (
    apply_matrices,
    blur_rows,
    gaussian_kernels,
    resize_matrix,
    sample_boxes,
    uniform,
)
from pretrain.settings import Recipe

NO_BLUR_SIGMA = 1e-3  # a kernel this narrow is the identity: unselected samples skip the blur this way


@dataclass
class ViewParams:
    """Every random choice for one view of a batch of B images."""

    boxes: torch.Tensor  # B x 4 crop (top, left, height, width) in original pixels
    flip: torch.Tensor  # B bool
    sigma: torch.Tensor  # B blur sigma (NO_BLUR_SIGMA = no blur)
    jitter: torch.Tensor  # B bool
    factors: torch.Tensor  # B x 4 brightness, contrast, saturation, hue
    order: torch.Tensor  # B x 4 jitter order
    gray: torch.Tensor  # B bool
    erase: torch.Tensor  # B bool
    erase_boxes: torch.Tensor  # B x 4 (top, left, height, width) in output pixels


def bernoulli(p: float, b: int, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(b, generator=g, device=device) < p


def sample_erasing(b: int, recipe: Recipe, g: torch.Generator, device, attempts: int = 10) -> torch.Tensor:
    """RandomErasing boxes as torchvision draws them (first of 10 attempts with h < H, w < W)."""
    h_img, w_img = recipe.height, recipe.width
    area = h_img * w_img * uniform(*recipe.erasing_area, (b, attempts), g, device)
    log_r = uniform(
        math.log(recipe.erasing_ratio[0]), math.log(recipe.erasing_ratio[1]), (b, attempts), g, device
    )
    h = torch.round(torch.sqrt(area * torch.exp(log_r)))
    w = torch.round(torch.sqrt(area / torch.exp(log_r)))
    ok = (h < h_img) & (w < w_img)
    first = ok.float().argmax(dim=1, keepdim=True)
    found = ok.any(dim=1)
    h = torch.where(found, h.gather(1, first)[:, 0], torch.zeros(b, device=device))
    w = torch.where(found, w.gather(1, first)[:, 0], torch.zeros(b, device=device))
    top = torch.floor(torch.rand(b, generator=g, device=device) * (h_img - h + 1))
    left = torch.floor(torch.rand(b, generator=g, device=device) * (w_img - w + 1))
    return torch.stack([top, left, h, w], dim=1)


def sample_view(sizes: torch.Tensor, recipe: Recipe, g: torch.Generator) -> ViewParams:
    """Draw one view's parameters for images of original ``sizes`` (B x 2: height, width)."""
    b, dev = sizes.shape[0], sizes.device
    blur = bernoulli(recipe.blur_p, b, g, dev)
    sigma = uniform(*recipe.blur_sigma, (b,), g, dev)
    factors, order = sample_jitter(b, recipe.jitter, g, dev)
    return ViewParams(
        boxes=sample_boxes(sizes, recipe.crop_scale, recipe.crop_ratio, g),
        flip=bernoulli(recipe.flip_p, b, g, dev),
        sigma=torch.where(blur, sigma, torch.full_like(sigma, NO_BLUR_SIGMA)),
        jitter=bernoulli(recipe.jitter_p, b, g, dev),
        factors=factors,
        order=order,
        gray=bernoulli(recipe.grayscale_p, b, g, dev),
        erase=bernoulli(recipe.erasing_p, b, g, dev),
        erase_boxes=sample_erasing(b, recipe, g, dev),
    )


def render_view(
    images: torch.Tensor,
    sizes: torch.Tensor,
    p: ViewParams,
    recipe: Recipe,
    g: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply ``p`` to float images B x 3 x H0 x W0 in [0, 1]: normalised B x 3 x H x W.

    ``g`` draws the erasing noise (standard normal, torchvision's ``value="random"``).
    """
    b, _, h0, w0 = images.shape
    dev = images.device
    # Crop boxes are in original pixels; the decoded image is the original resized to H0 x W0.
    sy, sx = h0 / sizes[:, 0].float(), w0 / sizes[:, 1].float()
    ry = resize_matrix(p.boxes[:, 0] * sy, p.boxes[:, 2] * sy, h0, recipe.height)  # B x H x H0
    rx = resize_matrix(p.boxes[:, 1] * sx, p.boxes[:, 3] * sx, w0, recipe.width)  # B x W x W0
    kernels = gaussian_kernels(p.sigma, recipe.blur_kernel)  # B x k
    ry, rx = blur_rows(ry, kernels), blur_rows(rx, kernels)  # blur commutes with the symmetric flip
    rx = torch.where(p.flip[:, None, None], rx.flip(1), rx)
    x = apply_matrices(images, ry, rx)  # B x 3 x H x W
    x = jitter_and_gray(x, p.factors, p.order, p.jitter, p.gray, recipe.jitter_p > 0)
    mean = torch.tensor(recipe.mean, device=dev)[None, :, None, None]
    std = torch.tensor(recipe.std, device=dev)[None, :, None, None]
    x = (x - mean) / std
    if recipe.erasing_p > 0:
        rows = torch.arange(recipe.height, device=dev)[None, :]
        cols = torch.arange(recipe.width, device=dev)[None, :]
        t, left, h, w = p.erase_boxes.unbind(dim=1)
        in_rows = (rows >= t[:, None]) & (rows < (t + h)[:, None])  # B x H
        in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # B x W
        box = (in_rows[:, :, None] & in_cols[:, None, :] & p.erase[:, None, None])[:, None]  # B x 1 x H x W
        noise = torch.randn(x.shape, generator=g, device=dev)
        x = torch.where(box, noise, x)
    return x


class BatchAugment:
    """Two augmented views of a uint8 batch, on the batch's device.

    >>> aug = BatchAugment(recipe, torch.Generator().manual_seed(0))
    >>> q, k = aug(images_bhwc_uint8, sizes)  # each B x 3 x H x W, normalised
    """

    def __init__(self, recipe: Recipe, generator: torch.Generator):
        self.recipe = recipe
        self.generator = generator

    def view(self, images: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        p = sample_view(sizes, self.recipe, self.generator)
        return render_view(images, sizes, p, self.recipe, self.generator)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float().div_(255).contiguous()  # B x 3 x H0 x W0
        return self.view(x, sizes), self.view(x, sizes)

    @torch.no_grad()
    def pairs(self, images: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``--positives tracklet``: 2B images (B queries, then their B partners) -> query views of
        the first half, key views of the second, each drawn independently."""
        b = images.shape[0] // 2
        x = images.permute(0, 3, 1, 2).float().div_(255).contiguous()  # 2B x 3 x H0 x W0
        return self.view(x[:b], sizes[:b]), self.view(x[b:], sizes[b:])
