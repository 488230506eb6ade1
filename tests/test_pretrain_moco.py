"""MoCo v2 pieces against independent references: Eq. 1, Eq. 2, the queue, Shuffle-BN, the LR rule."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pretrain.augment import BatchAugment
from pretrain.moco import (
    MoCo,
    SplitBatchNorm2d,
    batch_shuffle,
    batch_unshuffle,
    info_nce_logits,
    info_nce_loss,
    momentum_update,
)
from pretrain.settings import Recipe
from pretrain.trainer import lr_at, peak_lr

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def real_crops(unlabeled: Path, n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` real crops spread over the folders: uint8 n x height x width x 3 and original sizes."""
    files = sorted(unlabeled.glob("*/*.jpg"))
    files = files[:: max(1, len(files) // n)][:n]
    images, sizes = [], []
    for f in files:
        image = cv2.imread(str(f))[:, :, ::-1]
        sizes.append(image.shape[:2])
        images.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    return torch.from_numpy(np.stack(images)), torch.tensor(sizes)


def test_info_nce_equals_handwritten_eq1():
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=1)
    k = F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=1)
    queue = F.normalize(torch.randn(8, 13, generator=g, dtype=torch.float64), dim=0)
    tau = 0.07
    expected = []
    for i in range(5):  # Eq. 1, one query at a time
        pos = math.exp(float(q[i] @ k[i]) / tau)
        neg = sum(math.exp(float(q[i] @ queue[:, j]) / tau) for j in range(13))
        expected.append(-math.log(pos / (pos + neg)))
    loss = info_nce_loss(info_nce_logits(q.float(), k.float(), queue.float(), tau))
    assert loss.item() == pytest.approx(sum(expected) / 5, rel=1e-5)


def test_queue_wraps_around_when_k_is_not_a_multiple_of_the_batch():
    model = MoCo("resnet18", dim=4, queue_size=10)
    before = model.queue.clone()
    batches = [torch.full((4, 4), float(i + 1)) for i in range(3)]
    for keys in batches:
        model.enqueue(keys)
    q = model.queue
    assert model.queue_ptr.item() == 2  # 12 keys into 10 slots
    assert torch.equal(q[:, 0:2], batches[2][2:].t())  # the third batch wrapped to the front
    assert torch.equal(q[:, 2:4], batches[0][2:].t())  # oldest survivors of the first batch
    assert torch.equal(q[:, 4:8], batches[1].t())
    assert torch.equal(q[:, 8:10], batches[2][:2].t())
    model.queue.copy_(before)
    assert not torch.equal(before[:, 2:4], batches[0][2:].t())


def test_momentum_update_is_eq2():
    torch.manual_seed(0)
    key = [torch.randn(3, 4), torch.randn(7)]
    query = [torch.randn(3, 4), torch.randn(7)]
    expected = [0.999 * k + 0.001 * q for k, q in zip(key, query, strict=True)]
    momentum_update(key, query, 0.999)
    for got, want in zip(key, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_moco_forward_uses_the_old_queue_and_momentum_keys():
    torch.manual_seed(0)
    model = MoCo("resnet18", dim=16, queue_size=12, momentum=0.9, temperature=0.2, bn_groups=2)
    with torch.no_grad():  # make the query encoder differ from the key encoder
        for p in model.encoder_q.parameters():
            p.add_(0.01 * torch.randn_like(p))
    old_queue = model.queue.clone()
    key_before = [p.clone() for p in model.encoder_k.parameters()]
    query_params = [p.clone() for p in model.encoder_q.parameters()]
    x = torch.randn(4, 3, 32, 16)
    logits = model(x, x.flip(3), torch.Generator().manual_seed(0))
    assert logits.shape == (4, 13)
    for k0, q, k1 in zip(key_before, query_params, model.encoder_k.parameters(), strict=True):
        torch.testing.assert_close(k1, 0.9 * k0 + 0.1 * q)  # Eq. 2 ran before the keys were encoded
    q = F.normalize(model.encoder_q(x), dim=1)  # same queries again (train-mode BN: batch statistics)
    keys = model.queue[:, :4].t()  # this batch's keys, enqueued at slots 0..3
    torch.testing.assert_close(logits[:, 1:], q @ old_queue / 0.2)  # negatives: the queue before this step
    torch.testing.assert_close(logits[:, 0], (q * keys).sum(1) / 0.2)  # positives: the new keys
    assert torch.allclose(keys.norm(dim=1), torch.ones(4), atol=1e-5)
    assert model.queue_ptr.item() == 4


def test_split_batchnorm_normalises_each_group_on_its_own():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 4) * torch.tensor([1.0, 3.0, 0.5])[None, :, None, None]
    x[4:] += 2.0  # the two groups have different statistics
    split = SplitBatchNorm2d(3, groups=2)
    halves = [nn.BatchNorm2d(3), nn.BatchNorm2d(3)]
    out = split(x)
    expected = torch.cat([bn(part) for bn, part in zip(halves, x.chunk(2), strict=True)])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(split.running_mean, (halves[0].running_mean + halves[1].running_mean) / 2)
    torch.testing.assert_close(split.running_var, (halves[0].running_var + halves[1].running_var) / 2)
    split.eval()
    reference = nn.BatchNorm2d(3).eval()
    reference.load_state_dict(split.state_dict())
    torch.testing.assert_close(split(x), reference(x))


def test_batch_shuffle_is_undone_by_unshuffle():
    x = torch.arange(16.0).view(8, 2)
    shuffled, unshuffle = batch_shuffle(x, torch.Generator().manual_seed(3))
    assert not torch.equal(shuffled, x)
    assert sorted(shuffled[:, 0].tolist()) == x[:, 0].tolist()
    torch.testing.assert_close(batch_unshuffle(shuffled, unshuffle), x)


def test_loss_falls_on_a_fixed_batch_of_real_crops(unlabeled_dir):
    """Training on 8 real crops against fixed negatives (24 other real crops) lowers Eq. 1."""
    torch.manual_seed(0)
    images, sizes = real_crops(unlabeled_dir, 32, 64, 32)
    g = torch.Generator().manual_seed(0)
    view_q, view_k = BatchAugment(Recipe(height=64, width=32), g)(images, sizes)
    model = MoCo("resnet18", dim=32, queue_size=24, momentum=0.99, temperature=0.2, bn_groups=2)
    with torch.no_grad():
        negatives = F.normalize(model.encoder_k(view_k[8:]), dim=1).t()  # C x 24
    opt = torch.optim.SGD(model.encoder_q.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(12):
        model.queue.copy_(negatives)  # hold the negatives fixed: only the batch's fit changes
        loss = info_nce_loss(model(view_q[:8], view_k[:8], g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(25), abs=0.3)  # random init: all 25 logits alike
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])


def test_learning_rate_scales_linearly_with_the_batch():
    assert peak_lr(0.3, 2560) == pytest.approx(0.3)
    assert peak_lr(0.3, 256) == pytest.approx(0.03)
    assert peak_lr(0.3, 32, 2560) == pytest.approx(0.00375)
    peak, total, warm = 0.03, 100, 10
    assert lr_at(0, peak, total, warm) == pytest.approx(0.003)  # warm-up from peak / warm
    assert lr_at(9, peak, total, warm) == pytest.approx(peak)
    assert lr_at(10, peak, total, warm) == pytest.approx(peak)  # cosine starts at the peak
    assert lr_at(55, peak, total, warm) == pytest.approx(peak / 2)  # half-way down
    after = [lr_at(s, peak, total, warm) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False)) and after[-1] < 1e-4
    assert lr_at(0, peak, total, 0) == pytest.approx(peak)  # no warm-up
