"""The lean tar reader, the decoders and the ``gpu_decode`` path, on real crops.

The tar reader yields webdataset's samples; OpenCV's and torchvision's decodes give PIL's pixels;
a batch decoded on the training device (``views.py``) equals the batch the workers decode.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import tarfile
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from common.errors import SettingsError, UsageError
from common.manifests.shard_index import write_shard_index
from common.media.images import decode_rgb
from pretrain.data import BatchStream, collate_images, collate_jpegs, fit_image
from pretrain.launch import pretrain
from pretrain.settings import PretrainSettings, Recipe
from pretrain.tarstream import tar_samples
from pretrain.views import decode_batch, decode_to_batch, split_jpegs
from shards.write.tarshard import ShardWriter

pytestmark = pytest.mark.usefixtures("one_torch_thread")
IMAGES = 64


@pytest.fixture(scope="module")
def crops(unlabeled_dir: Path) -> list[Path]:
    """64 real crops from every folder of ../shared/data/unlabeled."""
    files = sorted(unlabeled_dir.glob("*/*.jpg"))
    return files[:: len(files) // IMAGES][:IMAGES]


@pytest.fixture(scope="module")
def shards(crops: list[Path], tmp_path_factory) -> Path:
    """The crops in 2 shards written by build-shards' writer, with their index."""
    out = tmp_path_factory.mktemp("shards")
    for s in range(2):
        writer = ShardWriter(out / f"lup-{s:06d}.tar", IMAGES, 1 << 30)
        for f in crops[s * 32 : (s + 1) * 32]:
            writer.add(f"{f.parent.name}_{f.stem}", {"jpg": f.read_bytes(), "json": b'{"a": 1}'})
        writer.close()
    write_shard_index(out)
    return out


def pil_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def raise_it(exn: BaseException) -> bool:
    raise exn


def test_tar_reader_yields_webdatasets_samples(shards, crops, tmp_path):
    urls = [{"url": str(p)} for p in sorted(shards.glob("*.tar"))]
    theirs = list(wds.tarfile_to_samples()(urls))
    assert list(tar_samples(urls, raise_it, ("jpg", "json"))) == theirs and len(theirs) == IMAGES
    jpg_only = list(tar_samples(urls, raise_it, ("jpg",)))  # the .json members are not read
    assert [set(s) for s in jpg_only] == [{"__key__", "__url__", "jpg"}] * IMAGES
    # webdataset's own writer (pax headers), a long name (pax path record), dotted suffixes, a
    # name without a dot and a meta file (both skipped), a sample with no wanted member.
    path = tmp_path / "wds.tar"
    with wds.TarWriter(str(path)) as tar:
        tar.write({"__key__": "d/" + "k" * 150, "jpg": crops[0].read_bytes(), "seg.png": b"x"})
        tar.write({"__key__": "only_json", "json": b"{}"})
        tar.write({"__key__": "k2", "JPG": b"y"})
    theirs = list(wds.tarfile_to_samples()([{"url": str(path)}]))
    assert list(tar_samples([{"url": str(path)}], raise_it, ("jpg", "json", "seg.png"))) == theirs
    assert [s["__key__"] for s in tar_samples([{"url": str(path)}], raise_it, ())] == [
        "d/" + "k" * 150,
        "only_json",
        "k2",
    ]


def test_tar_reader_errors_go_to_the_handler_with_the_url(shards, tmp_path):
    good = sorted(shards.glob("*.tar"))[0]
    cut, garbage, flipped = tmp_path / "cut.tar", tmp_path / "garbage.tar", tmp_path / "flipped.tar"
    data = good.read_bytes()
    cut.write_bytes(data[:70_000])
    garbage.write_bytes(bytes(range(256)) * 40)
    with tarfile.open(good) as tar:
        third = tar.getmembers()[4].offset  # the header of the third sample's .jpg
    flipped.write_bytes(data[:third] + bytes([data[third] ^ 1]) + data[third + 1 :])  # a bit of its name
    errors = []
    urls = [cut, garbage, flipped, tmp_path / "missing.tar", good]
    samples = list(tar_samples([{"url": str(u)} for u in urls], lambda e: errors.append(e) or True, ("jpg",)))
    assert [e.args[-1] for e in errors] == [str(u) for u in urls[:4]]
    assert "checksum" in str(errors[2])
    assert 0 < sum(s["__url__"] == str(cut) for s in samples) < 32  # the samples before the cut
    assert sum(s["__url__"] == str(flipped) for s in samples) == 1  # the first; the second was still open
    assert sum(s["__url__"] == str(good) for s in samples) == 32
    assert list(tar_samples([{"url": str(garbage)}, {"url": str(good)}], lambda e: False, ())) == []


def test_decoders_give_pils_pixels(crops):
    data = [f.read_bytes() for f in crops]
    decoded = decode_batch(split_jpegs(*collate_jpegs(data)), "cpu")
    for jpeg, chw in zip(data, decoded, strict=True):
        want = pil_rgb(jpeg).astype(int)
        assert np.abs(decode_rgb(jpeg).astype(int) - want).max() <= 1  # OpenCV, in the workers
        assert np.abs(chw.permute(1, 2, 0).numpy().astype(int) - want).max() <= 1  # torchvision
    assert decode_rgb(b"not a jpeg") is None and decode_rgb(b"") is None


def test_device_decoded_batch_equals_the_workers_batch(shards):
    """The same stream, decoded by the workers and on the device: same samples, same sizes,
    pixels equal up to the resize filter (OpenCV's vs the antialiased matrices)."""
    urls = [str(p) for p in sorted(shards.glob("*.tar"))]
    recipe = Recipe(height=256, width=128)
    kw = dict(seed=3, n0=0, steps_per_epoch=4, batch=16, shuffle_buffer=20)
    workers = list(islice(iter(BatchStream(urls, recipe, **kw)), 4))
    raw = list(islice(iter(BatchStream(urls, recipe, raw=True, **kw)), 4))
    for (images, sizes), (data, lengths) in zip(workers, raw, strict=True):
        assert data.dtype == torch.uint8 and data.dim() == 1 and lengths.shape == (16,)
        got, got_sizes = decode_to_batch(data, lengths, "cpu", recipe.height, recipe.width)
        assert got.dtype == torch.uint8 and got.shape == images.shape == (16, 256, 128, 3)
        assert torch.equal(got_sizes, sizes)
        diff = (got.int() - images.int()).abs().float()
        assert diff.mean() < 0.5 and diff.max() <= 32, (diff.mean(), diff.max())


def test_fit_batch_matches_opencv_on_one_image(crops):
    jpeg = crops[0].read_bytes()
    image = decode_rgb(jpeg)
    want, sizes = collate_images([(fit_image(image, 256, 128), image.shape[:2])])
    data, lengths = collate_jpegs([jpeg])
    got, got_sizes = decode_to_batch(data, lengths, "cpu", 256, 128)
    assert torch.equal(got_sizes, sizes) and (got.int() - want.int()).abs().float().mean() < 0.5


def test_undecodable_files_are_replaced_or_refused(crops, caplog):
    good = [torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8) for f in crops[:3]]
    bad = torch.frombuffer(bytearray(b"\xff\xd8\xff" + bytes(200)), dtype=torch.uint8)
    with caplog.at_level(logging.WARNING):
        images = decode_batch([good[0], bad, good[1]], "cpu")
    assert len(images) == 3 and torch.equal(images[1], images[0])
    assert any("does not decode" in r.getMessage() for r in caplog.records)
    with pytest.raises(UsageError, match="none of the 2 JPEG files"):
        decode_batch([bad, bad], "cpu")


def test_raw_stream_skips_files_that_are_not_jpegs(shards, tmp_path):
    bad = tmp_path / "lup-000000.tar"
    with wds.TarWriter(str(bad)) as tar:
        for i, s in enumerate(wds.WebDataset(str(sorted(shards.glob("*.tar"))[0]), shardshuffle=False)):
            tar.write({"__key__": s["__key__"], "jpg": s["jpg"] if i % 4 else b"not a jpeg"})
    stream = BatchStream(
        [str(bad)],
        Recipe(height=32, width=16),
        seed=0,
        n0=0,
        steps_per_epoch=3,
        batch=8,
        shuffle_buffer=8,
        raw=True,
    )
    for data, lengths in islice(iter(stream), 3):
        assert lengths.shape == (8,) and all(
            j[:3].tolist() == [255, 216, 255] for j in split_jpegs(data, lengths)
        )
    with pytest.raises(ValueError, match="raw JPEG batches"):
        BatchStream([str(bad)], Recipe(32, 16), seed=0, n0=0, steps_per_epoch=1, batch=8, shuffle_buffer=8,
                    raw=True, augment=object())  # fmt: skip


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, CUDA])])
def test_gpu_decode_trains(shards, tmp_path, device):
    """The trainer with ``gpu_decode``: on the CPU (libjpeg-turbo) here, nvJPEG on a GPU."""
    cfg = PretrainSettings(
        shards=str(shards), arch="resnet18", height=32, width=16, batch_size=16, queue_size=32,
        epochs=1, warmup_epochs=0, bn_groups=2, workers=1, device=device, log_every=1,
        checkpoint_every=2, shuffle_buffer=20, max_steps=2, gpu_decode=True, run_name="gpu_decode",
    )  # fmt: skip
    summary = pretrain(cfg, tmp_path)
    assert summary["steps"] == 2 and np.isfinite(summary["last_loss"])
    assert summary["device"].startswith(device)
    saved = json.loads((tmp_path / "runs" / "gpu_decode" / "finished.json").read_text())
    assert saved["settings"]["gpu_decode"] is True
    with pytest.raises(SettingsError, match="gpu_decode needs gpu_augment"):
        dataclasses.replace(cfg, gpu_augment=False)


@pytest.mark.gpu
@CUDA
def test_cuda_decode_equals_the_cpu_decode(crops):
    data, lengths = collate_jpegs([f.read_bytes() for f in crops])
    on_gpu = decode_batch(split_jpegs(data, lengths), "cuda")
    on_cpu = decode_batch(split_jpegs(data, lengths), "cpu")
    assert all(g.is_cuda for g in on_gpu)
    assert max((g.cpu().int() - c.int()).abs().max().item() for g, c in zip(on_gpu, on_cpu, strict=True)) <= 2
    images, sizes = decode_to_batch(data, lengths, torch.device("cuda"), 256, 128)
    cpu_images, cpu_sizes = decode_to_batch(data, lengths, "cpu", 256, 128)
    assert images.is_cuda and torch.equal(sizes.cpu(), cpu_sizes)
    assert (images.cpu().int() - cpu_images.int()).abs().float().mean() < 0.5
