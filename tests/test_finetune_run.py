"""A tiny CPU fine-tuning run on VIPeR, end to end, and the evaluate command on its checkpoint."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
import torchvision

from common.errors import UsageError
from finetune.datasets import load_split
from finetune.evaluate_cmd import evaluate_command
from finetune.settings import EvaluateSettings, FinetuneSettings
from finetune.train import finetune

TINY = dict(
    arch="resnet18", height=64, width=32, epochs=1, batch_size=32, id_share=0.25, workers=0, device="cpu"
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, reid_dir):
    root = tmp_path_factory.mktemp("ft")
    torch.manual_seed(0)
    init = root / "backbone.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), init)
    cfg = FinetuneSettings(
        dataset="viper", data_dir=str(reid_dir / "VIPeR"), init=str(init), run_name="tiny", **TINY
    )
    return cfg, root, finetune(cfg, root)


def test_tiny_viper_finetune_reports_map(tiny_run, reid_dir):
    cfg, root, summary = tiny_run
    assert math.isfinite(summary["mAP"]) and 0.0 <= summary["mAP"] <= 100.0
    assert 0.0 <= summary["rank1"] <= summary["rank5"] <= summary["rank10"] <= 100.0
    split = load_split("viper", reid_dir / "VIPeR", split_seed=0)
    assert summary["n_query"] == len(split.query) == 316
    assert summary["n_gallery"] == len(split.gallery) == 316
    assert summary["train_ids"] == round(0.25 * 316) and summary["train_images"] == 2 * summary["train_ids"]
    assert summary["init"] == {"source": "state_dict", "matched": 120, "missing": 0, "unexpected": 0}
    run = root / "runs" / "tiny"
    assert json.loads((run / "results.json").read_text())["mAP"] == summary["mAP"]
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["epoch"]) == [1] and math.isfinite(metrics["loss"][0])


def test_evaluate_command_reproduces_finetuned_map(tiny_run, reid_dir):
    cfg, root, summary = tiny_run
    ckpt = str(root / "runs" / "tiny" / "checkpoint.pt")
    ev = evaluate_command(
        EvaluateSettings(dataset="viper", data_dir=cfg.data_dir, weights=ckpt, workers=0), root
    )
    assert ev["weights"]["source"] == "finetune"
    assert (ev["mAP"], ev["rank1"], ev["n_query"]) == (summary["mAP"], summary["rank1"], summary["n_query"])


def test_rerun_resumes_without_training_again(tiny_run):
    cfg, root, summary = tiny_run
    again = finetune(cfg, root)
    assert again["mAP"] == summary["mAP"] and again["steps"] == summary["steps"]
    assert len(pd.read_csv(root / "runs" / "tiny" / "metrics.csv")) == 1
    with pytest.raises(UsageError, match="batch_size"):
        finetune(FinetuneSettings(**{**cfg.__dict__, "batch_size": 16}), root)


def test_frozen_evaluate_of_a_state_dict(tiny_run, reid_dir):
    _, root, _ = tiny_run
    cfg = EvaluateSettings(
        dataset="prid", data_dir=str(reid_dir / "PRID"), weights=str(root / "backbone.pth"), arch="resnet18",
        height=32, width=16, workers=0, device="cpu",
    )  # fmt: skip
    ev = evaluate_command(cfg, root)
    assert (ev["n_query"], ev["n_gallery"], ev["n_valid_query"]) == (100, 834, 100)
    assert ev["weights"]["matched"] == 120 and 0.0 <= ev["mAP"] <= 100.0


def test_killed_run_resumes_and_duplicates_nothing(tmp_path, reid_dir, monkeypatch):
    import finetune.train as train_module

    cfg = FinetuneSettings(
        dataset="viper", data_dir=str(reid_dir / "VIPeR"), run_name="killed",
        **{**TINY, "epochs": 2, "height": 32, "width": 16, "id_share": 0.1},
    )  # fmt: skip
    real_write = train_module.write_metrics

    def killed_after_first_epoch(path, history):
        real_write(path, history)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "write_metrics", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, tmp_path)
    assert not (tmp_path / "runs" / "killed" / "results.json").exists()
    monkeypatch.setattr(train_module, "write_metrics", real_write)
    summary = finetune(cfg, tmp_path)
    metrics = pd.read_csv(tmp_path / "runs" / "killed" / "metrics.csv")
    per_epoch = (2 * round(0.1 * 316)) // 32  # images // batch: 2 batches of P=8 ids x K=4
    assert list(metrics["epoch"]) == [1, 2] and list(metrics["steps"]) == [per_epoch, 2 * per_epoch]
    assert summary["epochs"] == 2 and summary["steps"] == 2 * per_epoch


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tiny_finetune_on_cuda(tmp_path, reid_dir):
    cfg = FinetuneSettings(
        dataset="viper", data_dir=str(reid_dir / "VIPeR"), run_name="cuda", **{**TINY, "device": "cuda"}
    )
    summary = finetune(cfg, tmp_path)
    assert math.isfinite(summary["mAP"]) and 0.0 <= summary["mAP"] <= 100.0 and summary["n_query"] == 316
    # the GPU checkpoint evaluates on the CPU (fp32 there, bf16 autocast on the GPU: close, not equal)
    ckpt = str(tmp_path / "runs" / "cuda" / "checkpoint.pt")
    ev = evaluate_command(
        EvaluateSettings(dataset="viper", data_dir=cfg.data_dir, weights=ckpt, device="cpu"), tmp_path
    )
    assert ev["n_query"] == 316 and abs(ev["mAP"] - summary["mAP"]) < 3.0
