"""Stream the shards with webdataset: resampled, split by node and worker, decoded on CPU workers,
batched for either ``--positives`` mode (``BatchStream``: instance; ``PairStream``: tracklet).

The batches are a pure function of their position, so a resumed run sees exactly the batches an
uninterrupted run would have seen. Batch j of epoch e on rank r is defined as batch j // W of
the stream of "slot" j % W (W loader workers), where a slot's stream is

    shards --node split--> --slot split--> resample --> tar samples --> shuffle buffer
           --> decode (+ per-sample augment) --> batches,     seeded by (seed, e, r, slot)

exactly what worker j % W of a loader started at the beginning of the epoch would produce. One
loader serves the whole run (its workers are never restarted at epoch boundaries): its worker w
makes the global batches n = n0 + w, n0 + w + W, ... and, in each epoch, plays the slot those
batches belong to, skipping (before decoding) the slot's batches that were trained on already.

The tars are read by ``tarstream`` (only the ``.jpg`` members; ~9x less Python per sample than
webdataset's ``tarfile`` reader) and decoded by OpenCV straight to RGB. With ``raw`` the workers
do not decode: a batch is the JPEG bytes, decoded in one batched call on the training device
(``views.py``, ``gpu_decode``).

``--positives tracklet`` (``PairStream``): query crops and their tracklet partners. The same
stream as ``BatchStream``, with two changes: the tars' JSON members are read too, and each
shard's samples are paired (``tarstream.tracklet_samples``) before the shuffle buffer. A batch
of B pairs is

* batched augmentation: uint8 2B x H x W x 3 images (the B query crops, then their B partners),
  int64 2B x 2 original sizes, int64 B tracklet ids;
* ``raw`` (``gpu_decode``): the 2B JPEG files end to end, their 2B lengths, the B ids;
* per-sample augmentation: the B query views, the B key views (each drawn from its own crop), the ids.

An id is ``tarstream.tracklet_hash`` of the tracklet (-1: none); MoCo keeps it beside each
queued key so a query's own tracklet is not counted as a negative.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset

from common.media.images import decode_rgb, is_jpeg
from pretrain.settings import Recipe
from pretrain.tarstream import SUFFIXES, Opener, StreamGuard, open_tar, tar_samples, tracklet_samples

log = logging.getLogger(__name__)


def count_samples(urls: list[str]) -> int:
    """Images in the shards: from ``index.parquet`` beside them when it lists them all, else by reading headers."""
    index = Path(urls[0]).parent / "index.parquet"
    if index.is_file():
        import pandas as pd

        df = pd.read_parquet(index)
        names = {Path(u).name for u in urls}
        listed = {Path(s).name for s in df["shard"].astype(str)}
        if names <= listed:
            return int(df[df["shard"].astype(str).map(lambda s: Path(s).name in names)]["n_samples"].sum())
    total = 0
    for url in urls:
        try:
            with tarfile.open(url) as tar:
                total += sum(1 for m in tar if m.name.endswith(".jpg"))
        except (tarfile.TarError, OSError) as e:
            log.warning("shard %s unreadable (%s): skipped from the count", url, e)
    return total


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def worker_plan(
    n0: int, steps_per_epoch: int, workers: int, worker: int
) -> Iterator[tuple[int, int, int, int]]:
    """(epoch, slot, skip, count) for loader worker ``worker`` of a loader starting at global batch n0.

    The worker makes global batches n = n0 + worker (mod workers), n >= n0. In epoch e those are
    batches j = n - e * steps_per_epoch, all with the same j mod W (the slot): it skips the slot's
    first ``skip`` batches and makes the next ``count``.
    """
    s, w = steps_per_epoch, max(1, workers)
    epoch = n0 // s
    while True:
        base = epoch * s
        first = max(n0, base)
        n = first + ((n0 + worker - first) % w)  # first global batch of this worker in the epoch
        if n < base + s:
            j = n - base
            yield epoch, j % w, j // w, len(range(j, s, w))
        epoch += 1


def slot_shards(urls: list[str], rank: int, world: int, slot: int, slots: int) -> list[str]:
    """The shards of one rank and slot: an explicit split of the list when there are enough
    shards (each node, then each slot, gets its own subset), else all of them."""
    mine = urls
    if len(mine) >= world:
        mine = mine[rank::world]
    if len(mine) >= slots:
        mine = mine[slot::slots]
    return mine


def resampled_shards(urls: list[str], seed: int, epoch: int, rank: int, world: int, slot: int, slots: int):
    """Endless shard URLs of one rank and slot (``slot_shards``), sampled with replacement."""
    mine = slot_shards(urls, rank, world, slot, slots)
    rng = np.random.default_rng(_seed(seed, epoch, rank, slot))
    while True:
        yield {"url": mine[int(rng.integers(len(mine)))]}


def fit_image(image: np.ndarray, height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """Resize to the training size (into ``out`` when given): area averaging when it shrinks the
    image, bilinear when it grows it."""
    h0, w0 = image.shape[:2]
    interp = cv2.INTER_AREA if h0 * w0 > height * width else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), dst=out, interpolation=interp)


def collate_images(samples: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> uint8 B x H x W x 3 images, int64 B x 2 original (height, width)."""
    images = torch.from_numpy(np.stack([s[0] for s in samples]))
    sizes = torch.tensor([s[1] for s in samples], dtype=torch.long)
    return images, sizes


def image_batches(images: Iterator[np.ndarray], batch: int, height: int, width: int):
    """Full batches of decoded images, each resized straight into its batch (no per-image array
    and copy): uint8 B x height x width x 3 images, int64 B x 2 original (height, width)."""
    while True:
        out = np.empty((batch, height, width, 3), np.uint8)
        sizes = []
        for i, image in enumerate(islice(images, batch)):
            fit_image(image, height, width, out[i])
            sizes.append(image.shape[:2])
        if len(sizes) < batch:
            return
        yield torch.from_numpy(out), torch.tensor(sizes, dtype=torch.long)


def collate_views(samples: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> two float B x 3 x H x W batches of views."""
    return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])


def collate_jpegs(samples: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> the JPEG files end to end (uint8) and the length of each (int64 B): two tensors to send
    from a worker, not B (each would take its own shared-memory segment); ``views.split_jpegs``."""
    data = torch.from_numpy(np.frombuffer(b"".join(samples), np.uint8).copy())
    return data, torch.tensor([len(s) for s in samples], dtype=torch.long)


class BatchStream(IterableDataset):
    """This rank's batches from global batch ``n0`` on, for a loader with any number of workers.

    ``augment`` None: images are resized to the training size for the batched augmentation (a
    batch is uint8 images + original sizes); else a ``PerSampleAugment`` runs here (a batch is
    two float views). ``raw``: not decoded here (a batch is ``collate_jpegs``' JPEG bytes and
    lengths). A sample without a decodable image (``raw``: without a JPEG marker) is logged and skipped.
    ``open_shard`` opens each drawn tar (``shardlist.ShardList.open``: only while it is the file
    that was checked).
    """

    def __init__(
        self,
        urls,
        recipe: Recipe,
        *,
        seed,
        n0,
        steps_per_epoch,
        batch,
        shuffle_buffer,
        augment=None,
        raw: bool = False,
        open_shard: Opener = open_tar,
    ):
        super().__init__()
        if raw and augment is not None:
            raise ValueError("raw JPEG batches cannot be augmented per sample in the workers")
        self.urls, self.recipe, self.seed, self.n0 = urls, recipe, seed, n0
        self.steps_per_epoch, self.batch, self.shuffle_buffer = steps_per_epoch, batch, shuffle_buffer
        self.augment, self.raw, self.open_shard = augment, raw, open_shard

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, world, worker, workers = wds.utils.pytorch_worker_info()
        cv2.setNumThreads(1)
        for epoch, slot, skip, count in worker_plan(self.n0, self.steps_per_epoch, workers, worker):
            stream = self.slot_batches(epoch, rank, world, slot, max(1, workers), skip)
            yield from islice(stream, count)
            stream.close()  # closes the open shard of this epoch

    def slot_batches(self, epoch: int, rank: int, world: int, slot: int, slots: int, skip: int):
        guard = StreamGuard(slot_shards(self.urls, rank, world, slot, slots))
        shards = guard.urls_of(resampled_shards(self.urls, self.seed, epoch, rank, world, slot, slots))
        samples = self.slot_samples(guard, shards, _seed(self.seed, epoch, rank, slot, 2))
        seed = _seed(self.seed, epoch, rank, slot, 1)
        samples = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, seed=seed)(samples)
        samples = islice(samples, skip * self.batch, None)  # already trained on: not decoded
        decoded = self.decode(samples, (self.seed, epoch, rank, slot), skip * self.batch, guard)
        return self.batches(decoded)

    def slot_samples(self, guard: StreamGuard, shards: Iterator[str], seed: int):
        """The slot's samples in stream order (``seed``: for a subclass that draws; unused here)."""
        return guard.samples_of(tar_samples(shards, guard.handler, ("jpg",), self.open_shard))

    def batches(self, decoded):
        """Decoded samples -> the loader's batches (images, JPEG bytes or views)."""
        if not self.raw and self.augment is None:
            return image_batches(decoded, self.batch, self.recipe.height, self.recipe.width)
        collate = collate_jpegs if self.raw else collate_views
        return wds.batched(self.batch, collation_fn=collate, partial=False)(decoded)

    def decode_one(self, data: bytes):
        """RGB pixels of one JPEG, or (``raw``) its bytes when they start like a JPEG; None if not."""
        if self.raw:  # decoded on the training device: only the marker is checked here
            return data if is_jpeg(data) else None
        return decode_rgb(data)

    def decode(
        self,
        samples: Iterator[dict],
        stream_id: tuple[int, ...],
        first: int,
        guard: StreamGuard | None = None,
    ) -> Iterator[tuple]:
        for i, sample in enumerate(samples, start=first):
            image = self.decode_one(sample.get("jpg", b""))
            if guard is not None:
                guard.image(image is not None)
            if image is None:
                log.warning("sample %s: no decodable .jpg, skipped", sample.get("__key__"))
            elif self.augment is not None:
                chw = torch.from_numpy(image).permute(2, 0, 1)
                yield self.augment(chw, _seed(*stream_id, i))  # seeded by position: resumable
            else:
                yield image  # JPEG bytes (raw), or pixels that ``image_batches`` resizes


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
    """``BatchStream`` of (query crop, partner crop of its tracklet) pairs; ``window``: see ``tarstream``'s pairing."""

    def __init__(self, urls, recipe, *, window: int, **kwargs):
        super().__init__(urls, recipe, **kwargs)
        self.window = window

    def slot_samples(self, guard: StreamGuard, shards: Iterator[str], seed: int):
        """(query, partner, tracklet id) samples: each shard's crops paired within their tracklet."""

        def read(item):
            return guard.samples_of(tar_samples([item], guard.handler, SUFFIXES, self.open_shard))

        return tracklet_samples(shards, read, self.window, seed)

    def batches(self, decoded):
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


def make_loader(
    urls: list[str],
    recipe: Recipe,
    *,
    seed: int,
    start: int,
    stop: int,
    steps_per_epoch: int,
    batch: int,
    workers: int,
    shuffle_buffer: int,
    augment=None,
    raw: bool = False,
    pin_memory: bool = False,
    open_shard: Opener = open_tar,
    stream_type: type[BatchStream] | None = None,
    **stream_options,
) -> wds.WebLoader:
    """Global batches ``start`` .. ``stop`` - 1 of this rank (``batch`` images each; ``raw``: JPEG bytes).

    ``stream_type`` (default ``BatchStream``) with its own ``stream_options``: ``PairStream``.
    """
    stream = (stream_type or BatchStream)(
        urls,
        recipe,
        seed=seed,
        n0=start,
        steps_per_epoch=steps_per_epoch,
        batch=batch,
        shuffle_buffer=shuffle_buffer,
        augment=augment,
        raw=raw,
        open_shard=open_shard,
        **stream_options,
    )
    loader = wds.WebLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
    )
    # Every worker's stream is endless: the loader, not the dataset, sets how many batches it gives.
    return loader.with_epoch(stop - start)
