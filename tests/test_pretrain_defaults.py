"""`python pipeline.py pretrain --gpus 8` is the paper's run (§5.1) without extra flags, and a
batch that does not fit the GPU ends in one line saying what to pass instead."""

from __future__ import annotations

import types

import pytest
import torch

import pipeline
from pretrain import trainer
from pretrain.shardlist import ShardList
from pretrain.trainer import peak_lr


def test_help_shows_the_papers_batch_lr_and_epochs(capsys):
    with pytest.raises(SystemExit):
        pipeline.main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE global batch size (§5.1: 2,560 on 8 GPUs) (default: 2560)" in text
    assert (
        "--base-lr BASE_LR learning rate at base_batch (§5.1: 0.3 at 2,560), scaled linearly with the batch (default: 0.3)"
        in text
    )
    assert "--epochs EPOCHS training epochs (§5.1: 200) (default: 200)" in text
    cfg = pipeline.resolve("pretrain", None, {"gpus": 8})
    assert peak_lr(cfg.base_lr, cfg.batch_size, cfg.base_batch) == pytest.approx(0.3)
    assert cfg.batch_size // cfg.gpus == 320


def test_a_batch_too_large_for_the_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    def out_of_memory(self):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

    monkeypatch.setattr(trainer.Trainer, "__init__", lambda self, cfg, root, shards=None: None)
    monkeypatch.setattr(trainer.Trainer, "fit", out_of_memory)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=80 * 2**30)
    )
    shards = tmp_path / "shards"
    shards.mkdir()
    monkeypatch.setattr("pretrain.launch._check_before_launch", lambda cfg, root: ShardList(["x.tar"], 10**6))
    status = pipeline.main(["pretrain", "--root", str(tmp_path), "--shards", str(shards), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert "batch 2560 (2560 per GPU at 256x128) does not fit in the 80 GiB of a GPU" in err[0]
    assert "--batch-size 1280" in err[0] and "0.3 x 1280/2560" in err[0]
