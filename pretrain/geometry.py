"""Batched crop, resize, flip and blur as per-sample linear maps (two small matrices per image).

A RandomResizedCrop followed by an antialiased bilinear resize is, per image, ``Ry @ X @ Rx^T``
with ``Ry`` (H x H0) and ``Rx`` (W x W0) built from the crop box; a horizontal flip reverses the
rows of ``Rx``; a Gaussian blur with reflect padding is ``By @ Ry`` and ``Bx @ Rx``. So the whole
spatial part of the augmentation is two batched matrix products per view, instead of per-sample
grid sampling and grouped blur convolutions on images (DESIGN.md: those cost more than the network).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
