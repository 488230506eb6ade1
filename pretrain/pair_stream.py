"""The batch stream of ``--positives tracklet``: query crops and their tracklet partners.

The same stream as ``data.BatchStream`` (shards split by node and slot, resampled, shuffled,
skipped on resume, decoded in the workers or on the device), with two changes: the tars' JSON
members are read too, and each shard's samples are paired (``tarstream.tracklet_samples``) before the
shuffle buffer. A batch of B pairs is

* batched augmentation: uint8 2B x H x W x 3 images (the B query crops, then their B partners),
  int64 2B x 2 original sizes, int64 B tracklet ids;
* ``raw`` (``gpu_decode``): the 2B JPEG files end to end, their 2B lengths, the B ids;
* per-sample augmentation: the B query views, the B key views (each drawn from its own crop), the ids.

An id is ``tarstream.tracklet_hash`` of the tracklet (-1: none); MoCo keeps it beside each
queued key so a query's own tracklet is not counted as a negative.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import islice

import numpy as np
import torch
import webdataset as wds

from pretrain.data import BatchStream, _seed, collate_jpegs, fit_image, resampled_shards, slot_shards
from pretrain.tarstream import SUFFIXES, StreamGuard, tar_samples, tracklet_samples

log = logging.getLogger(__name__)


def pair_image_batches(pairs: Iterator[tuple], batch: int, height: int, width: int):
    """Full batches of decoded pairs, resized straight into their batch (queries first, then partners)."""
    while True:
        out = np.empty((2 * batch, height, width, 3), np.uint8)
        sizes, ids = [None] * (2 * batch), []
        for i, (query, partner, tracklet) in enumerate(islice(pairs, batch)):
            fit_image(query, height, width, out[i])
            sizes[i] = query.shape[:2]
            if partner is query:
                out[batch + i] = out[i]
            else:
                fit_image(partner, height, width, out[batch + i])
            sizes[batch + i] = partner.shape[:2]
            ids.append(tracklet)
        if len(ids) < batch:
            return
        yield (
            torch.from_numpy(out),
            torch.tensor(sizes, dtype=torch.long),
            torch.tensor(ids, dtype=torch.long),
        )


def collate_pair_jpegs(samples: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> ``collate_jpegs`` of the B queries then the B partners, and the B tracklet ids."""
    data, lengths = collate_jpegs([s[0] for s in samples] + [s[1] for s in samples])
    return data, lengths, torch.tensor([s[2] for s in samples], dtype=torch.long)


def collate_pair_views(samples: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> B query views, B key views, B tracklet ids."""
    ids = torch.tensor([s[2] for s in samples], dtype=torch.long)
    return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples]), ids


class PairStream(BatchStream):
    """``BatchStream`` of (query crop, partner crop of its tracklet) pairs; ``window``: see ``tarstream``."""

    def __init__(self, urls, recipe, *, window: int, **kwargs):
        super().__init__(urls, recipe, **kwargs)
        self.window = window

    def slot_batches(self, epoch: int, rank: int, world: int, slot: int, slots: int, skip: int):
        guard = StreamGuard(slot_shards(self.urls, rank, world, slot, slots))
        shards = guard.urls_of(resampled_shards(self.urls, self.seed, epoch, rank, world, slot, slots))

        def read(item):
            return guard.samples_of(tar_samples([item], guard.handler, SUFFIXES, self.open_shard))

        samples = tracklet_samples(shards, read, self.window, _seed(self.seed, epoch, rank, slot, 2))
        seed = _seed(self.seed, epoch, rank, slot, 1)
        samples = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, seed=seed)(samples)
        samples = islice(samples, skip * self.batch, None)  # already trained on: not decoded
        decoded = self.decode(samples, (self.seed, epoch, rank, slot), skip * self.batch, guard)
        if not self.raw and self.augment is None:
            return pair_image_batches(decoded, self.batch, self.recipe.height, self.recipe.width)
        collate = collate_pair_jpegs if self.raw else collate_pair_views
        return wds.batched(self.batch, collation_fn=collate, partial=False)(decoded)

    def decode(self, samples, stream_id: tuple[int, ...], first: int, guard: StreamGuard | None = None):
        for i, sample in enumerate(samples, start=first):
            query = self.decode_one(sample.get("jpg", b""))
            same = sample["partner_key"] == sample["__key__"]
            partner = query if same else self.decode_one(sample.get("partner_jpg", b""))
            if guard is not None:
                guard.image(query is not None)
            if query is None or partner is None:
                what = "query" if query is None else f"partner {sample['partner_key']}"
                log.warning("sample %s: no decodable .jpg (%s), skipped", sample.get("__key__"), what)
            elif self.augment is not None:
                q, k = (torch.from_numpy(im).permute(2, 0, 1) for im in (query, partner))
                yield (*self.augment.pair(q, k, _seed(*stream_id, i)), sample["tracklet"])
            else:
                yield query, partner, sample["tracklet"]
