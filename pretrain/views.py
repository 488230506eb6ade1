"""A loader batch -> the two views MoCo trains on (and the pairs' tracklet ids), on the training device.

With ``gpu_decode`` the batch is JPEG bytes, decoded here in one call on the training device. The
loader workers then only read the tars (``BatchStream(raw=True)``: a batch is the JPEG files end
to end and their lengths); ``torchvision.io.decode_jpeg`` decodes the whole batch in one call
(nvJPEG on CUDA; libjpeg-turbo on the CPU, the same pixels as PIL), and each image is resized to
the training size as ``Ry @ X @ Rx^T`` (``augment.resize_matrix``: antialiased bilinear; the
workers' OpenCV resize agrees to a few grey levels), giving what the workers would have given:
uint8 B x H x W x 3 images and their original sizes, which ``batch_views`` then augments.

>>> images, sizes = decode_to_batch(data, lengths, torch.device("cuda"), 256, 128)
"""

from __future__ import annotations

import logging

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from common.errors import UsageError
from pretrain.augment import BatchAugment, apply_matrices, resize_matrix
from pretrain.settings import Recipe

log = logging.getLogger(__name__)
CHUNK = 64  # images resized together: the padded float canvas stays small for large crops
_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _decode(jpegs: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """``decode_jpeg`` of a list, RGB; on CUDA, its outputs are made safe for the current stream.

    torchvision allocates the outputs on the current stream but nvJPEG writes them on its own
    stream without waiting for the current one (pytorch/vision#9606): an output could be a block
    freed by the training loop that its queued kernels still read. Decoding with a side stream
    current keeps the outputs out of the training stream's free blocks; the training stream then
    waits for the side stream (which decode_jpeg makes wait for the decode) and owns the outputs.
    """
    if device.type != "cuda":
        return decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device)
    main = torch.cuda.current_stream(device)
    if main.device not in _SIDE_STREAMS:
        _SIDE_STREAMS[main.device] = torch.cuda.Stream(main.device)
    side = _SIDE_STREAMS[main.device]
    with torch.cuda.stream(side):
        images = decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=main.device)
    main.wait_stream(side)
    for image in images:
        image.record_stream(main)
    return images


def split_jpegs(data: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """The files of ``data.collate_jpegs``' batch: views of ``data`` (1-D uint8, on the CPU)."""
    return list(torch.split(data, lengths.tolist()))


def decode_batch(jpegs: list[torch.Tensor], device: torch.device | str) -> list[torch.Tensor]:
    """RGB uint8 3 x Hi x Wi images on ``device``, in one batched ``decode_jpeg`` call.

    A file that does not decode (a corrupt shard written by hand: build-shards decodes every crop
    when it writes it) is logged and replaced by the batch's first good image, so that the batch
    keeps its size; a batch of which nothing decodes is a ``UsageError``.
    """
    device = torch.device(device)
    try:
        return _decode(jpegs, device)
    except RuntimeError:
        pass
    images: list[torch.Tensor | None] = []
    for i, jpeg in enumerate(jpegs):
        try:
            images.append(_decode([jpeg], device)[0])
        except RuntimeError as e:
            log.warning("JPEG %d of the batch does not decode (%s): replaced", i, str(e).splitlines()[0])
            images.append(None)
    good = next((im for im in images if im is not None), None)
    if good is None:
        raise UsageError(f"none of the {len(jpegs)} JPEG files of a batch decodes: check the shards")
    return [good if im is None else im for im in images]


def fit_batch(images: list[torch.Tensor], height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """3 x Hi x Wi uint8 images -> uint8 B x height x width x 3 and int64 B x 2 (Hi, Wi), on their device."""
    device = images[0].device
    sizes = torch.tensor([im.shape[1:] for im in images], dtype=torch.long)
    out = []
    for first in range(0, len(images), CHUNK):
        chunk, size = images[first : first + CHUNK], sizes[first : first + CHUNK].to(device)
        h0, w0 = (int(v) for v in sizes[first : first + CHUNK].max(dim=0).values)
        canvas = torch.zeros(len(chunk), 3, h0, w0, dtype=torch.float32, device=device)
        for c, im in zip(canvas, chunk, strict=True):
            c[:, : im.shape[1], : im.shape[2]] = im  # top-left; the resize reads only the image
        zero = torch.zeros(len(chunk), device=device)
        ry = resize_matrix(zero, size[:, 0].float(), h0, height)  # b x height x h0
        rx = resize_matrix(zero, size[:, 1].float(), w0, width)  # b x width x w0
        x = apply_matrices(canvas, ry, rx)  # b x 3 x height x width
        out.append(x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    return torch.cat(out).contiguous(), sizes.to(device)


def decode_to_batch(
    data: torch.Tensor, lengths: torch.Tensor, device: torch.device | str, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A raw loader batch -> uint8 B x height x width x 3 images and B x 2 original sizes on ``device``."""
    return fit_batch(decode_batch(split_jpegs(data, lengths), device), height, width)


def batch_views(
    batch,
    device: torch.device,
    recipe: Recipe,
    augment: BatchAugment | None,
    *,
    gpu_decode: bool,
    channels_last: bool,
    tracklets: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Query views, key views and (``tracklets``: ``data.PairStream``'s batches) the B tracklet ids.

    ``augment`` None: the workers made the views (per-sample augmentation); else the batch is
    uint8 images and original sizes (``gpu_decode``: JPEG bytes, decoded here first), augmented
    here: two views of each image, or (``tracklets``) a view of each query and one of its partner.
    """
    ids = None
    if tracklets:  # the batch's last tensor: B tracklet ids
        *batch, ids = batch
        ids = ids.to(device, non_blocking=True)
    if gpu_decode:  # JPEG bytes -> uint8 images and original sizes, decoded on the device
        batch = decode_to_batch(*batch, device, recipe.height, recipe.width)
    a, b = (t.to(device, non_blocking=True) for t in batch)
    if augment is not None:
        a, b = (augment.pairs if tracklets else augment)(a, b)  # uint8 images, original sizes -> views
    if channels_last:
        a, b = (
            a.contiguous(memory_format=torch.channels_last),
            b.contiguous(memory_format=torch.channels_last),
        )
    return a, b, ids
