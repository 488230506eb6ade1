"""The augmentation recipe (``settings.Recipe``) applied two ways: to a whole batch on the training
device (``BatchAugment``, GPU or CPU), or one sample at a time with torchvision in the loader
workers (``PerSampleAugment``, ``--no-gpu-augment``).

Batched, the two random views of a batch are augmented together. Input: decoded uint8 images of
one fixed size (B x H0 x W0 x 3) and their original sizes; the crop boxes are drawn in original
pixels, so crop ratios mean what torchvision's mean. The recipe's order is the official one
(crop, colour jitter, grayscale, blur, flip, normalise, erasing):

    spatial  = Ry @ X @ Rx^T      crop + antialiased resize, blur and flip folded into Ry, Rx
    colour   = clamp(M x + b)     jitter and grayscale as affine maps per image (+ one hue pass)
    erasing  = where(box, noise, x)

Every random draw comes from one ``torch.Generator`` on the device (saved in checkpoints), and no
step synchronises with the host.

Spatial: crop, resize, flip and blur as per-sample linear maps (two small matrices per image). A
RandomResizedCrop followed by an antialiased bilinear resize is, per image, ``Ry @ X @ Rx^T``
with ``Ry`` (H x H0) and ``Rx`` (W x W0) built from the crop box; a horizontal flip reverses the
rows of ``Rx``; a Gaussian blur with reflect padding is ``By @ Ry`` and ``Bx @ Rx``. So the whole
spatial part of the augmentation is two batched matrix products per view, instead of per-sample
grid sampling and grouped blur convolutions on images (DESIGN.md: those cost more than the network).

Colour: jitter and grayscale as affine colour maps ``x -> M x + b`` and one hue pass. Brightness,
saturation and grayscale are linear in RGB, and contrast mixes with the image's mean gray level
(known from the per-channel means), so consecutive ones compose into one 3x3 matrix and a bias
per image. Hue (an HSV rotation, not linear) splits each sample's random order in two:
``post(hue(pre(x)))``, three passes over the batch whatever the order. torchvision clamps to
[0, 1] after every operator; we clamp after each affine stage.

Per sample (``torchvision_transform``) is the official MoCo recipe's way (one image at a time on
CPU workers); it is also the reference that the batched augmentation is checked against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from pretrain.settings import Recipe


def uniform(lo: float, hi: float, shape: tuple[int, ...], g: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g, device=device)


def sample_boxes(
    sizes: torch.Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    g: torch.Generator,
    attempts: int = 10,
) -> torch.Tensor:
    """RandomResizedCrop boxes as in torchvision, for a batch: Bx4 (top, left, height, width) pixels.

    ``sizes`` is Bx2 (height, width) of the original images. Like torchvision, try ``attempts``
    (area, log-ratio) draws and take the first that fits; otherwise a central crop.
    """
    dev = sizes.device
    b = sizes.shape[0]
    h0, w0 = sizes[:, 0:1].float(), sizes[:, 1:2].float()  # Bx1
    area = h0 * w0 * uniform(scale[0], scale[1], (b, attempts), g, dev)  # B x attempts
    log_r = uniform(math.log(ratio[0]), math.log(ratio[1]), (b, attempts), g, dev)
    w = torch.round(torch.sqrt(area * torch.exp(log_r)))
    h = torch.round(torch.sqrt(area / torch.exp(log_r)))
    ok = (w > 0) & (w <= w0) & (h > 0) & (h <= h0)
    first = ok.float().argmax(dim=1, keepdim=True)  # B x 1: first attempt that fits
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    h0, w0 = h0[:, 0], w0[:, 0]
    # Fallback (torchvision): the largest central crop whose ratio is inside ``ratio``.
    in_ratio = w0 / h0
    fh = torch.where(in_ratio < ratio[0], torch.round(w0 / ratio[0]), h0)
    fw = torch.where(in_ratio > ratio[1], torch.round(h0 * ratio[1]), w0)
    fh = torch.where(in_ratio > ratio[1], h0, fh)
    fw = torch.where(in_ratio < ratio[0], w0, fw)
    found = ok.any(dim=1)
    h, w = torch.where(found, h, fh), torch.where(found, w, fw)
    top = torch.floor(torch.rand(b, generator=g, device=dev) * (h0 - h + 1))
    left = torch.floor(torch.rand(b, generator=g, device=dev) * (w0 - w + 1))
    top = torch.where(found, top, torch.div(h0 - h, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(w0 - w, 2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], dim=1)


def resize_matrix(start: torch.Tensor, length: torch.Tensor, src: int, out: int) -> torch.Tensor:
    """B x out x src weights of an antialiased bilinear resize of [start, start+length) to ``out``.

    The triangle filter widens with the downscale factor (PIL / torchvision ``antialias=True``);
    only source pixels whose centre lies inside the box contribute, and each row sums to one.
    """
    dev = start.device
    step = (length / out)[:, None, None]  # source pixels per output pixel
    support = step.clamp(min=1.0)
    centre = start[:, None, None] + (torch.arange(out, device=dev)[None, :, None] + 0.5) * step
    pix = torch.arange(src, device=dev, dtype=torch.float32)[None, None, :] + 0.5  # pixel centres
    weight = (1 - (pix - centre).abs() / support).clamp(min=0)  # B x out x src
    inside = (pix >= start[:, None, None]) & (pix <= (start + length)[:, None, None])
    weight = weight * inside
    return weight / weight.sum(dim=2, keepdim=True).clamp(min=1e-12)


def gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """B x size normalised Gaussian kernels (torchvision ``gaussian_blur``'s formula)."""
    half = (size - 1) / 2
    x = torch.linspace(-half, half, size, device=sigma.device)
    k = torch.exp(-0.5 * (x[None, :] / sigma[:, None]) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def blur_rows(matrix: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Blur along the output axis (dim 1) of B x out x src matrices, reflect padding: ``K @ M``.

    One grouped convolution over the small matrices (not the images): groups = B.
    """
    b, n, s = matrix.shape
    pad = kernels.shape[1] // 2
    x = F.pad(matrix.transpose(1, 2).reshape(1, b * s, n), (pad, pad), mode="reflect")  # 1 x B*src x out+2p
    weight = kernels.repeat_interleave(s, dim=0)[:, None, :]  # B*src x 1 x size
    y = F.conv1d(x, weight, groups=b * s)  # 1 x B*src x out
    return y.reshape(b, s, n).transpose(1, 2)


def apply_matrices(images: torch.Tensor, ry: torch.Tensor, rx: torch.Tensor) -> torch.Tensor:
    """``Ry @ X @ Rx^T`` per image: images BxCxH0xW0, ry BxHxH0, rx BxWxW0 -> BxCxHxW."""
    t = torch.einsum("bhi,bcij->bchj", ry, images)  # B x C x H x W0
    return torch.einsum("bchj,bwj->bchw", t, rx)  # B x C x H x W


GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
HUE = 3  # index of hue among (brightness, contrast, saturation, hue)


def _gray_rows(b: int, device) -> torch.Tensor:
    """B x 3 x 3 whose rows are the gray weights: every channel becomes the gray level."""
    return torch.tensor(GRAY, device=device).expand(b, 1, 3).expand(b, 3, 3)


def jitter_stage(
    means: torch.Tensor,
    factors: torch.Tensor,
    order: torch.Tensor,
    active: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Affine map (M: Bx3x3, b: Bx3) of the linear jitter operators at the ``active`` positions.

    ``means`` Bx3: channel means of the images the map applies to; ``factors`` Bx4 (brightness,
    contrast, saturation, hue); ``order`` Bx4 each sample's operator order; ``active`` Bx4 bools
    per position (the hue position is never composed here).
    """
    b, dev = means.shape[0], means.device
    eye = torch.eye(3, device=dev).expand(b, 3, 3)
    gray = torch.tensor(GRAY, device=dev)
    m, c = eye.clone(), torch.zeros(b, 3, device=dev)
    sat = factors[:, 2, None, None]
    linear = torch.stack(
        [
            factors[:, 0, None, None] * eye,  # brightness: f x
            factors[:, 1, None, None] * eye,  # contrast: f x + (1 - f) mean_gray
            sat * eye + (1 - sat) * _gray_rows(b, dev),  # saturation: lerp to gray
            eye,  # hue: applied separately
        ],
        dim=1,
    )  # B x 4 x 3 x 3
    rows = torch.arange(b, device=dev)
    for pos in range(4):
        op = order[:, pos]
        on = active[:, pos] & (op != HUE)
        a = torch.where(on[:, None, None], linear[rows, op], eye)
        mean_gray = ((m @ means[:, :, None])[:, :, 0] + c) @ gray  # B: current mean gray level
        shift = torch.where(on & (op == 1), (1 - factors[:, 1]) * mean_gray, torch.zeros_like(mean_gray))
        m = a @ m
        c = (a @ c[:, :, None])[:, :, 0] + shift[:, None]
    return m, c


def grayscale_maps(
    m: torch.Tensor, c: torch.Tensor, apply: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Follow the maps (m, c) by RandomGrayscale where ``apply``."""
    g = _gray_rows(m.shape[0], m.device)
    gm, gc = g @ m, (g @ c[:, :, None])[:, :, 0]
    keep = apply[:, None, None]
    return torch.where(keep, gm, m), torch.where(keep[:, :, 0], gc, c)


def shift_hue(images: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_hue`` with a factor per image: images Bx3xHxW in [0, 1], hue B turns.

    HSV keeps max and min; only the hue angle moves: RGB = max - (max - min) * clamp(min(k, 4 - k)),
    k = (n + 6 h) mod 6 with n = 5, 3, 1 for R, G, B.
    """
    maxc, arg = images.max(dim=1)  # B x H x W; ties pick R before G before B, as torchvision
    span = maxc - images.amin(dim=1)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    r, g, b = images.unbind(dim=1)
    h6 = torch.where(
        arg == 0, ((g - b) / safe) % 6, torch.where(arg == 1, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    h6 = (h6 + 6 * hue[:, None, None]) % 6
    n = torch.tensor([5.0, 3.0, 1.0], device=images.device)[None, :, None, None]
    k = (n + h6[:, None]) % 6  # B x 3 x H x W
    return maxc[:, None] - span[:, None] * torch.minimum(k, 4 - k).clamp(0, 1)


def sample_jitter(
    b: int, strength: tuple[float, float, float, float], g: torch.Generator, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bx4 factors drawn as ColorJitter(brightness, contrast, saturation, hue) does, and Bx4 orders."""
    br, co, sa, hu = strength
    factors = torch.stack(
        [
            uniform(max(0.0, 1 - br), 1 + br, (b,), g, device),
            uniform(max(0.0, 1 - co), 1 + co, (b,), g, device),
            uniform(max(0.0, 1 - sa), 1 + sa, (b,), g, device),
            uniform(-hu, hu, (b,), g, device),
        ],
        dim=1,
    )
    order = torch.argsort(torch.rand(b, 4, generator=g, device=device), dim=1)
    return factors, order


def apply_colour(images: torch.Tensor, m: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``M x + b`` per pixel, clamped to [0, 1]: images BxCxHxW."""
    out = torch.einsum("bij,bjhw->bihw", m, images) + c[:, :, None, None]
    return out.clamp_(0, 1)


def jitter_and_gray(
    x: torch.Tensor,
    factors: torch.Tensor,
    order: torch.Tensor,
    jitter: torch.Tensor,
    gray: torch.Tensor,
    with_jitter: bool,
) -> torch.Tensor:
    """RandomApply(ColorJitter) where ``jitter``, then RandomGrayscale where ``gray``: Bx3xHxW."""
    if with_jitter:
        hue_pos = (order == HUE).float().argmax(dim=1, keepdim=True)  # B x 1
        pos = torch.arange(4, device=x.device)[None, :]
        m, c = jitter_stage(x.mean(dim=(2, 3)), factors, order, (pos < hue_pos) & jitter[:, None])
        x = shift_hue(
            apply_colour(x, m, c), torch.where(jitter, factors[:, HUE], torch.zeros_like(factors[:, 0]))
        )
        m, c = jitter_stage(x.mean(dim=(2, 3)), factors, order, (pos > hue_pos) & jitter[:, None])
    else:
        b = x.shape[0]
        m, c = torch.eye(3, device=x.device).expand(b, 3, 3), torch.zeros(b, 3, device=x.device)
    m, c = grayscale_maps(m, c, gray)
    return apply_colour(x, m, c)


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
