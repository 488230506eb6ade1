"""A backbone describes itself: ``backbone.json`` beside ``backbone.pth``, and ``finetune`` /
``evaluate`` normalise with the mean/std the backbone was trained with (issue 13)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision import transforms as T

import pipeline
from common.normalisation import IMAGENET_MEAN, IMAGENET_STD, LUP_MEAN, LUP_STD
from finetune.evaluate_cmd import evaluate_command
from finetune.settings import EvaluateSettings, FinetuneSettings
from finetune.train import finetune

PRETRAIN = dict(
    arch="resnet18", height=32, width=16, batch_size=16, queue_size=32, epochs=1, warmup_epochs=0,
    bn_groups=2, workers=0, device="cpu", log_every=1, checkpoint_every=2, shuffle_buffer=16, max_steps=2,
)  # fmt: skip
SMALL = dict(arch="resnet18", height=32, width=16, workers=0, device="cpu")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, unlabeled_dir: Path) -> dict[str, Path]:
    """``{preset: backbone.pth}`` of two real 2-step pre-training runs on shards of 48 real crops."""
    root = tmp_path_factory.mktemp("norm")
    crops = root / "crops"
    for f in sorted(unlabeled_dir.glob("*/*.jpg"))[::100][:48]:
        (crops / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, crops / f.parent.name / f.name)
    pipeline.run_stage(
        "build-shards", pipeline.resolve("build-shards", None, {"from_images": str(crops)}), root
    )
    out = {}
    for preset in ("lup", "mocov2"):
        flags = {**PRETRAIN, "preset": preset, "run_name": preset, "shards": str(root / "shards")}
        summary = pipeline.run_stage("pretrain", pipeline.resolve("pretrain", None, flags), root)
        out[preset] = Path(summary["backbone"])
    return out


@pytest.fixture
def normalize_calls(monkeypatch) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """Every (mean, std) a ``torchvision.transforms.Normalize`` is built with during the test."""
    calls: list[tuple[tuple[float, ...], tuple[float, ...]]] = []
    real_init = T.Normalize.__init__

    def spy(self, mean, std, inplace=False):
        calls.append((tuple(mean), tuple(std)))
        real_init(self, mean, std, inplace)

    monkeypatch.setattr(T.Normalize, "__init__", spy)
    return calls


def test_pretrain_writes_a_card_beside_the_backbone(pretrained):
    for preset, mean, std in (("lup", LUP_MEAN, LUP_STD), ("mocov2", IMAGENET_MEAN, IMAGENET_STD)):
        card = json.loads(pretrained[preset].with_suffix(".json").read_text())
        assert (card["arch"], card["height"], card["width"], card["preset"]) == ("resnet18", 32, 16, preset)
        assert tuple(card["mean"]) == mean and tuple(card["std"]) == std
        assert card["temperature"] == (0.07 if preset == "lup" else 0.2)
        assert card["steps"] == 2 and card["samples_seen"] == 32 and card["epochs"] == round(2 / 3, 3)
        assert card["switches"]["random_erasing"] is None and card["recipe"]["erasing_p"] == (
            0.5 if preset == "lup" else 0.0
        )
        assert len(card["shards_fingerprint"]) == 64 and card["project_commit"]


def test_each_backbone_is_finetuned_and_evaluated_with_its_own_statistics(
    pretrained, reid_dir, tmp_path, normalize_calls
):
    expected = {"lup": (LUP_MEAN, LUP_STD), "mocov2": (IMAGENET_MEAN, IMAGENET_STD)}
    for preset, (mean, std) in expected.items():
        normalize_calls.clear()
        cfg = FinetuneSettings(
            dataset="viper", data_dir=str(reid_dir / "VIPeR"), init=str(pretrained[preset]),
            run_name=f"ft_{preset}", epochs=1, max_steps=1, id_share=0.1, batch_size=16, **SMALL,
        )  # fmt: skip
        result = finetune(cfg, tmp_path)
        assert normalize_calls and set(normalize_calls) == {(mean, std)}, preset
        recorded = json.loads((tmp_path / "runs" / f"ft_{preset}" / "results.json").read_text())
        assert recorded["normalisation"]["name"] == ("lup" if preset == "lup" else "imagenet")
        assert tuple(result["normalisation"]["mean"]) == mean
        for weights in (str(pretrained[preset]), str(tmp_path / "runs" / f"ft_{preset}" / "checkpoint.pt")):
            normalize_calls.clear()
            ev = evaluate_command(
                EvaluateSettings(dataset="prid", data_dir=str(reid_dir / "PRID"), weights=weights, **SMALL),
                tmp_path,
            )
            assert set(normalize_calls) == {(mean, std)} and tuple(ev["normalisation"]["std"]) == std, weights


def test_a_moco_checkpoint_carries_its_recipe(pretrained, reid_dir, tmp_path, normalize_calls):
    checkpoint = sorted((pretrained["mocov2"].parent / "checkpoints").glob("*.pt"))[-1]
    cfg = EvaluateSettings(dataset="prid", data_dir=str(reid_dir / "PRID"), weights=str(checkpoint), **SMALL)
    ev = evaluate_command(cfg, tmp_path)
    assert ev["weights"]["source"] == "moco" and ev["normalisation"]["name"] == "imagenet"
    assert set(normalize_calls) == {(IMAGENET_MEAN, IMAGENET_STD)}


def test_a_bare_state_dict_keeps_lupersons_with_a_warning_and_a_flag_overrides(
    reid_dir, tmp_path, normalize_calls, caplog
):
    bare = tmp_path / "bare.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), bare)
    base = dict(dataset="prid", data_dir=str(reid_dir / "PRID"), weights=str(bare), **SMALL)
    with caplog.at_level(logging.WARNING):
        ev = evaluate_command(EvaluateSettings(**base), tmp_path)
    assert "records no normalisation" in caplog.text and ev["normalisation"]["name"] == "lup"
    assert set(normalize_calls) == {(LUP_MEAN, LUP_STD)}
    normalize_calls.clear()
    ev = evaluate_command(EvaluateSettings(**base, normalisation="imagenet"), tmp_path)
    assert ev["normalisation"]["source"] == "--normalisation imagenet"
    assert set(normalize_calls) == {(IMAGENET_MEAN, IMAGENET_STD)}


def test_a_damaged_card_is_one_line(pretrained, reid_dir, tmp_path, capsys):
    weights = tmp_path / "backbone.pth"
    shutil.copy(pretrained["lup"], weights)
    weights.with_suffix(".json").write_text('{"mean": [0.5, 0.5], "std": [1, 1, 1]}')
    status = pipeline.main(
        ["evaluate", "--root", str(tmp_path), "--dataset", "prid", "--data-dir", str(reid_dir / "PRID"),
         "--weights", str(weights), "--arch", "resnet18", "--device", "cpu", "--workers", "0"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "backbone.json" in err[0] and "three" in err[0], err
