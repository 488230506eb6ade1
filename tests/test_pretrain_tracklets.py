"""``pretrain --positives tracklet`` on real TownCentre tracks: pairs, queue mask, resume, a real run."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from common.backbone_card import read_card
from common.errors import UsageError
from common.manifests.shard_index import write_shard_index
from common.media.images import decode_rgb
from pretrain.data import PairStream, fit_image, make_loader
from pretrain.launch import pretrain
from pretrain.moco import MoCo, info_nce_logits, info_nce_loss, mask_own_tracklet
from pretrain.settings import PretrainSettings, Recipe
from pretrain.tarstream import (
    NO_TRACKLET,
    UnreadableShards,
    shard_pairs,
    shard_samples,
    tracklet_hash,
    tracklet_of,
    tracklet_samples,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PERSONS, PER_PERSON, OTHERS, SHARDS = 16, 4, 32, 3  # 96 crops, 32 a shard
H, W = 32, 16


def track_files(unlabeled: Path) -> dict[str, list[Path]]:
    """TownCentre person -> their crops (``<person>_<frame>.jpg``), frame order."""
    tracks: dict[str, list[Path]] = {}
    for f in (unlabeled / "TownCentre").glob("*.jpg"):
        tracks.setdefault(f.stem.split("_")[0], []).append(f)
    return {p: sorted(fs, key=lambda f: int(f.stem.split("_")[1])) for p, fs in tracks.items()}


@pytest.fixture(scope="module")
def tracks(unlabeled_dir: Path, tmp_path_factory) -> dict:
    """96 real crops in 3 key-ordered shards written with TarWriter: 16 TownCentre people x 4
    crops (JSON ``{"tracklet": "TownCentre/<person>"}``) and 32 CUHK/INRIA crops (no tracklet)."""
    people = sorted(p for p, fs in track_files(unlabeled_dir).items() if len(fs) >= PER_PERSON)
    crops = {}  # key -> (file, tracklet)
    for person in people[:: len(people) // PERSONS][:PERSONS]:
        for f in track_files(unlabeled_dir)[person][:PER_PERSON]:
            crops[f"TownCentre_{f.stem}"] = (f, f"TownCentre/{person}")
    for folder in ("CUHK", "INRIA"):
        for f in sorted((unlabeled_dir / folder).glob("*.jpg"))[: OTHERS // 2]:
            crops[f"{folder}_{f.stem}"] = (f, "")
    out = tmp_path_factory.mktemp("tracklet_shards")
    keys = sorted(crops)  # build-shards' key order: a person's crops lie together
    size = len(keys) // SHARDS
    shard_of = {}
    for s in range(SHARDS):
        url = out / f"lup-{s:06d}.tar"
        with wds.TarWriter(str(url)) as tar:
            for key in keys[s * size : (s + 1) * size]:
                f, tracklet = crops[key]
                meta = {"tracklet": tracklet} if tracklet else {"src": f.name}
                tar.write({"__key__": key, "jpg": f.read_bytes(), "json": json.dumps(meta).encode()})
                shard_of[key] = str(url)
    write_shard_index(out)
    return {"dir": out, "crops": crops, "shard_of": shard_of}


def tiny(shards: Path, **changes) -> PretrainSettings:
    base = PretrainSettings(
        shards=str(shards), arch="resnet18", height=H, width=W, batch_size=16, queue_size=40,
        epochs=2, warmup_epochs=1, bn_groups=2, workers=0, device="cpu", log_every=2,
        checkpoint_every=6, shuffle_buffer=40, positives="tracklet",
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_json_is_read_only_in_tracklet_mode(tracks):
    url = sorted(tracks["dir"].glob("*.tar"))[0]
    lean = list(shard_samples(str(url), ("jpg",)))
    full = list(shard_samples(str(url), ("jpg", "json")))
    assert all("json" not in s for s in lean) and all("json" in s for s in full)
    assert [s["jpg"] for s in lean] == [s["jpg"] for s in full]
    assert tracklet_of(full[0]["json"]) == tracks["crops"][full[0]["__key__"]][1]
    assert [tracklet_of(b) for b in (None, b"", b"[]", b'{"tracklet": 7}', b"{bad")] == [""] * 5
    assert tracklet_hash("") == NO_TRACKLET and tracklet_hash("a") == tracklet_hash("a") >= 0
    assert tracklet_hash("a") != tracklet_hash("b")


def test_pairs_share_a_tracklet_within_a_shard(tracks):
    crops, shard_of = tracks["crops"], tracks["shard_of"]
    urls = [{"url": str(u)} for u in sorted(tracks["dir"].glob("*.tar"))] * 4
    pairs = list(tracklet_samples(urls, lambda i: shard_samples(i["url"], ("jpg", "json")), 64, seed=3))
    assert len(pairs) == 4 * len(crops)
    in_shard = Counter((crops[k][1], u) for k, u in shard_of.items())  # crops of a tracklet per shard
    partners: dict[str, set] = {}
    for p in pairs:
        key, partner, tracklet = p["__key__"], p["partner_key"], crops[p["__key__"]][1]
        assert shard_of[partner] == shard_of[key] and crops[partner][1] == tracklet
        assert p["tracklet"] == tracklet_hash(tracklet)
        if tracklet and in_shard[(tracklet, shard_of[key])] >= 2:
            assert partner != key
        else:
            assert partner == key and p["partner_jpg"] == p["jpg"]
        assert p["partner_jpg"] == crops[partner][0].read_bytes()
        partners.setdefault(key, set()).add(partner)
    assert max(len(s) for s in partners.values()) >= 2  # drawn at random: not always the same crop


def test_window_bounds_the_partner_and_the_draws_are_seeded():
    # two interleaved tracklets and crops without one; positions are the keys
    samples = [
        {"__key__": str(i), "json": b'{"tracklet": "%s"}' % (b"ab"[i % 2 : i % 2 + 1])} for i in range(40)
    ]
    samples[7]["json"] = b"{}"
    samples.append({"__key__": "40", "json": b'{"tracklet": "lonely"}'})
    for window in (1, 2, 5, 100):
        out = list(shard_pairs(iter(samples), window, np.random.default_rng(0)))
        assert [p["__key__"] for p in out] == [s["__key__"] for s in samples]
        for p in out:
            i, j = int(p["__key__"]), int(p["partner_key"])
            if i in (7, 40) or window == 1:  # no tracklet, a tracklet of one, or no other crop in reach
                assert j == i
            else:
                assert j != i and abs(j - i) <= window and (j % 2 == i % 2) and j != 7
        again = list(shard_pairs(iter(samples), window, np.random.default_rng(0)))
        assert [p["partner_key"] for p in again] == [p["partner_key"] for p in out]


def pixels_to_key(crops: dict) -> dict[bytes, str]:
    out = {}
    for key, (f, _) in crops.items():
        out[fit_image(decode_rgb(f.read_bytes()), H, W).tobytes()] = key
    return out


def loader(tracks, start: int, stop: int, workers: int, **kw):
    return make_loader(
        [str(u) for u in sorted(tracks["dir"].glob("*.tar"))], Recipe(H, W), seed=5, start=start,
        stop=stop, steps_per_epoch=6, batch=8, workers=workers, shuffle_buffer=24,
        stream_type=PairStream, window=256, **kw,
    )  # fmt: skip


def test_batches_hold_tracklet_pairs_and_resume_exactly(tracks):
    crops, shard_of, lookup = tracks["crops"], tracks["shard_of"], pixels_to_key(tracks["crops"])
    in_shard = Counter((crops[k][1], u) for k, u in shard_of.items())
    whole = list(loader(tracks, 0, 14, workers=2))
    assert len(whole) == 14
    different = 0
    for images, sizes, ids in whole:
        assert images.shape == (16, H, W, 3) and sizes.shape == (16, 2) and ids.shape == (8,)
        for i in range(8):
            key, partner = lookup[images[i].numpy().tobytes()], lookup[images[8 + i].numpy().tobytes()]
            tracklet = crops[key][1]
            assert crops[partner][1] == tracklet and int(ids[i]) == tracklet_hash(tracklet)
            assert (partner != key) == bool(tracklet and in_shard[(tracklet, shard_of[key])] >= 2)
            different += partner != key
    assert different > 0
    single = list(loader(tracks, 0, 14, workers=0))
    for start, workers, reference in ((5, 2, whole), (13, 2, whole), (9, 0, single)):
        rest = list(loader(tracks, start, 14, workers=workers))  # a resumed loader (same workers)
        assert len(rest) == 14 - start
        for a, b in zip(reference[start:], rest, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_raw_and_per_sample_batches_carry_the_pairs(tracks):
    from pretrain.augment import PerSampleAugment
    from pretrain.views import decode_to_batch

    images, _, ids = next(iter(loader(tracks, 0, 1, workers=0)))
    data, lengths, raw_ids = next(iter(loader(tracks, 0, 1, workers=0, raw=True)))
    assert torch.equal(ids, raw_ids) and lengths.shape == (16,)
    decoded, _ = decode_to_batch(data, lengths, "cpu", H, W)
    # the same crops, queries then partners: each decoded row is nearest its worker-decoded row
    # (the device resize differs from OpenCV's area filter by a few grey levels at 32x16)
    dist = (decoded.float()[:, None] - images.float()[None]).abs().mean(dim=(2, 3, 4))  # 16 x 16
    assert torch.equal(dist.diagonal(), dist.min(dim=1).values) and dist.diagonal().max() < 4
    q, k, views_ids = next(iter(loader(tracks, 0, 1, workers=0, augment=PerSampleAugment(Recipe(H, W)))))
    assert q.shape == k.shape == (8, 3, H, W) and torch.equal(views_ids, ids)


def test_queue_mask_is_exactly_the_query_tracklet():
    torch.manual_seed(0)
    model = MoCo("resnet18", dim=8, queue_size=12, temperature=0.1, tracklets=True)
    assert model.queue_ids.tolist() == [-1] * 12
    queued = torch.tensor([5, -1, 7, 5, 9, 9, -1, 7, 5, 3])  # 10 keys, then 4 more wrap around
    model.enqueue(torch.nn.functional.normalize(torch.randn(10, 8), dim=1), queued)
    model.enqueue(torch.nn.functional.normalize(torch.randn(4, 8), dim=1), torch.tensor([9, 1, 1, -1]))
    expect_queue = [1, -1, 7, 5, 9, 9, -1, 7, 5, 3, 9, 1]
    assert model.queue_ids.tolist() == expect_queue and model.queue_ptr.item() == 2
    ids = torch.tensor([5, -1, 9, 1, 4])
    q, k = (torch.nn.functional.normalize(torch.randn(5, 8), dim=1) for _ in range(2))
    plain = info_nce_logits(q, k, model.queue, 0.1)
    masked = mask_own_tracklet(plain, ids, model.queue_ids)
    for n, tid in enumerate(ids.tolist()):
        own = [c + 1 for c, qid in enumerate(expect_queue) if tid != -1 and qid == tid]
        assert torch.isinf(masked[n]).nonzero().flatten().tolist() == own
        keep = [0] + [c for c in range(1, 13) if c not in own]
        assert torch.equal(masked[n, keep], plain[n, keep])
        target = -torch.log_softmax(plain[n, keep], 0)[0]  # Eq. 1 over the other negatives only
        assert info_nce_loss(masked[n : n + 1]).item() == pytest.approx(target.item(), rel=1e-5)
    logits = model(torch.randn(5, 3, H, W), torch.randn(5, 3, H, W), ids=ids)
    assert torch.isinf(logits).sum().item() == 2 + 0 + 3 + 2 + 0 and torch.isfinite(info_nce_loss(logits))
    assert model.queue_ids.tolist()[2:7] == ids.tolist() and model.queue_ptr.item() == 7
    with pytest.raises(ValueError, match="tracklet ids"):
        model(torch.randn(5, 3, H, W), torch.randn(5, 3, H, W))
    assert "queue_ids" not in MoCo("resnet18", dim=8, queue_size=12).state_dict()  # instance mode


def test_tracklet_run_end_to_end_and_resumes(tracks, tmp_path):
    cfg = tiny(tracks["dir"], epoch_size=80)
    whole = pretrain(dataclasses.replace(cfg, run_name="whole"), tmp_path)
    assert whole["steps"] == 10
    card = read_card(whole["backbone"])
    assert card["positives"] == "tracklet" and card["tracklet_window"] == 256
    state = torch.load(tmp_path / "runs" / "whole" / "checkpoints" / "step_00000010.pt", weights_only=True)
    assert state["positives"] == "tracklet" and state["settings"]["positives"] == "tracklet"
    queue_ids = state["model"]["queue_ids"]
    assert (queue_ids >= 0).any() and (queue_ids == -1).any()  # TownCentre tracklets and single crops
    pretrain(dataclasses.replace(cfg, run_name="cut", max_steps=7), tmp_path)
    rest = pretrain(dataclasses.replace(cfg, run_name="cut"), tmp_path)
    assert rest["resumed_from_step"] == 7 and rest["checksums"] == whole["checksums"]
    instance = dataclasses.replace(cfg, run_name="cut", positives="instance")
    with pytest.raises(UsageError, match="positives"):
        pretrain(dataclasses.replace(instance, max_steps=12, epochs=3), tmp_path)


@pytest.mark.parametrize(
    "changes", [{"gpu_augment": False}, {"gpu_decode": True}, {"positives": "instance"}],
    ids=["per-sample-augment", "gpu-decode", "instance"],
)  # fmt: skip
def test_other_paths_train_and_say_their_mode(tracks, tmp_path, changes):
    summary = pretrain(tiny(tracks["dir"], max_steps=2, run_name="other", **changes), tmp_path)
    assert summary["steps"] == 2 and np.isfinite(summary["last_loss"])
    card = read_card(summary["backbone"])
    mode = changes.get("positives", "tracklet")
    assert card["positives"] == mode and card["tracklet_window"] == (256 if mode == "tracklet" else None)
    state = torch.load(tmp_path / "runs" / "other" / "checkpoints" / "step_00000002.pt", weights_only=True)
    assert ("queue_ids" in state["model"]) == (mode == "tracklet")


def test_ddp_ranks_agree_on_the_queue_ids(tracks, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tiny(tracks["dir"], run_name="ddp", gpus=2, max_steps=2, master_port=port)
    summary = pretrain(cfg, tmp_path)
    assert summary["world_size"] == 2 and summary["ranks_agree"]
    state = torch.load(tmp_path / "runs" / "ddp" / "checkpoints" / "step_00000002.pt", weights_only=True)
    ids = state["model"]["queue_ids"]  # 2 steps x 2 ranks x 8 pairs, gathered from both ranks
    assert (ids[:32] != -1).any() and (ids[32:] == -1).all() and state["model"]["queue_ptr"].item() == 32


def test_shards_that_yield_nothing_end_the_stream(tmp_path):
    garbage = tmp_path / "lup-000000.tar"
    garbage.write_bytes(b"not a tar at all" * 100)
    stream = make_loader(
        [str(garbage)], Recipe(H, W), seed=0, start=0, stop=2, steps_per_epoch=2, batch=4, workers=0,
        shuffle_buffer=4, stream_type=PairStream, window=8,
    )  # fmt: skip
    with pytest.raises(UnreadableShards, match="yields a sample"):
        next(iter(stream))
