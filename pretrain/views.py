"""A loader batch -> the two views MoCo trains on (and the pairs' tracklet ids), on the training device."""

from __future__ import annotations

import torch

from pretrain.augment import BatchAugment
from pretrain.decode import decode_to_batch
from pretrain.settings import Recipe


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
    """Query views, key views and (``tracklets``: ``pair_stream``'s batches) the B tracklet ids.

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
