"""Initial weights (state dict, MoCo checkpoints), heads, losses and the P x K sampler."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
import torchvision

from common.errors import UsageError
from finetune.backbone import build_resnet, load_backbone_weights
from finetune.heads import build_model, trunk_to_layer3
from finetune.loader import IdentitySampler
from finetune.losses import batch_hard_triplet, reid_loss
from finetune.records import Sample


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).state_dict()


def backbone_keys(state):
    return [k for k in state if not k.startswith("fc.")]


def assert_loaded(model, state):
    own = model.state_dict()
    for k in backbone_keys(state):
        assert torch.equal(own[k], state[k]), k


def test_torchvision_state_dict(tmp_path, source):
    path = tmp_path / "backbone.pth"
    torch.save(source, path)
    model = build_resnet("resnet18")
    report = load_backbone_weights(model, str(path))
    assert report.source == "state_dict"
    assert (report.matched, len(report.missing), len(report.unexpected)) == (len(backbone_keys(source)), 0, 0)
    assert_loaded(model, source)


def test_our_moco_checkpoint_with_ddp_prefix(tmp_path, source):
    other = {k: torch.zeros_like(v) for k, v in source.items()}
    model_dict = {f"module.encoder_q.backbone.{k}": v for k, v in source.items() if not k.startswith("fc.")}
    model_dict.update({f"module.encoder_k.backbone.{k}": v for k, v in other.items()})
    model_dict["module.encoder_q.head.0.weight"] = torch.ones(4, 512)
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": model_dict, "queue": torch.zeros(8, 4), "epoch": 3}, path)
    model = build_resnet("resnet18")
    report = load_backbone_weights(model, str(path))
    assert report.source == "moco" and report.matched == len(backbone_keys(source)) and not report.missing
    assert_loaded(model, source)  # encoder_q, not the zeroed encoder_k


def test_original_moco_checkpoint(tmp_path, source):
    state = {f"module.encoder_q.{k}": v for k, v in source.items() if not k.startswith("fc.")}
    state["module.encoder_q.fc.0.weight"] = torch.ones(2048, 512)  # the MLP head, never loaded
    path = tmp_path / "moco_v2.pth.tar"
    torch.save({"state_dict": state, "arch": "resnet18"}, path)
    model = build_resnet("resnet18")
    report = load_backbone_weights(model, str(path))
    assert report.source == "moco" and report.matched == len(backbone_keys(source))
    assert_loaded(model, source)


def test_wrong_arch_or_file_is_a_usage_error(tmp_path, source):
    path = tmp_path / "r18.pth"
    torch.save(source, path)
    with pytest.raises(UsageError, match="wrong --arch"):
        load_backbone_weights(build_resnet("resnet50"), str(path))
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(UsageError):
        load_backbone_weights(build_resnet("resnet18"), str(junk))
    with pytest.raises(UsageError, match="not a file"):
        load_backbone_weights(build_resnet("resnet18"), str(tmp_path / "absent.pth"))
    with pytest.raises(UsageError, match="not a torchvision ResNet"):
        build_resnet("vit_b_16")


@pytest.mark.parametrize("head", ["ide", "trip", "mgn"])
def test_heads_train_and_eval_outputs(head):
    torch.manual_seed(0)
    model = build_model(build_resnet("resnet18", last_stride=2 if head == "mgn" else 1), head, num_classes=7)
    x = torch.randn(8, 3, 64, 32)
    out = model.train()(x)
    n_logits, n_triplet = {"ide": (1, 0), "trip": (0, 1), "mgn": (8, 3)}[head]
    assert (len(out["logits"]), len(out["triplet"])) == (n_logits, n_triplet)
    assert all(lg.shape == (8, 7) for lg in out["logits"])
    loss, parts = reid_loss(out, torch.arange(8) % 4)
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.conv1.weight.grad is not None
    emb = model.eval()(x)
    assert emb.shape == (8, 512 if head != "mgn" else 8 * 256)


def test_extra_bn_after_pooled_feature():
    """§4.3: the IDE embedding is the BN-recalibrated pooled backbone feature."""
    torch.manual_seed(0)
    model = build_model(build_resnet("resnet18"), "ide", num_classes=3).eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
        x = torch.randn(4, 3, 64, 32)
        pooled = model.backbone.layer4(trunk_to_layer3(model.backbone, x)).mean(dim=(2, 3))
        expect = (pooled - model.bn.running_mean) / torch.sqrt(model.bn.running_var + model.bn.eps)
        expect = expect * model.bn.weight + model.bn.bias
        torch.testing.assert_close(model(x), expect)


def test_mgn_part_branches_keep_resolution():
    model = build_model(build_resnet("resnet18", last_stride=2), "mgn", num_classes=3).eval()
    mid = trunk_to_layer3(model.backbone, torch.randn(1, 3, 128, 64))
    assert model.backbone.layer4(mid).shape[-2:] == (4, 2)
    assert model.branch2(mid).shape[-2:] == (8, 4) == model.branch3(mid).shape[-2:]


def test_batch_hard_triplet_matches_loop():
    torch.manual_seed(1)
    feats, labels = torch.randn(12, 5), torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 5])
    losses = []
    for i in range(12):
        pos = [torch.dist(feats[i], feats[j]) for j in range(12) if j != i and labels[j] == labels[i]]
        neg = [torch.dist(feats[i], feats[j]) for j in range(12) if labels[j] != labels[i]]
        if pos and neg:
            losses.append(torch.relu(0.3 + max(pos) - min(neg)))
    torch.testing.assert_close(batch_hard_triplet(feats, labels, 0.3), torch.stack(losses).mean())


def test_identity_sampler_batches():
    samples = [Sample(Path(f"{p}_{i}"), p, 0) for p in range(10) for i in range(2 + p % 5)]
    sampler = IdentitySampler(samples, batch_size=16, instances=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(samples) // 16
    for batch in batches:
        counts = Counter(samples[i].pid for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {4}
    sampler.set_epoch(1)
    assert list(sampler) != batches
