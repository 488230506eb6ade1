"""Colour jitter and grayscale for a batch: affine colour maps ``x -> M x + b`` and one hue pass.

Brightness, saturation and grayscale are linear in RGB, and contrast mixes with the image's mean
gray level (known from the per-channel means), so consecutive ones compose into one 3x3 matrix
and a bias per image. Hue (an HSV rotation, not linear) splits each sample's random order in
two: ``post(hue(pre(x)))``, three passes over the batch whatever the order. torchvision clamps to
[0, 1] after every operator; we clamp after each affine stage.
"""

from __future__ import annotations

import torch

from pretrain.geometry import uniform

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
