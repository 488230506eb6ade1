"""The trainer end to end on real crops streamed from WebDataset shards: resume, DDP, two nodes, bench."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tarfile
from itertools import islice
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision
import webdataset as wds

from common.errors import SettingsError, UsageError
from common.manifests.shard_index import write_shard_index
from pretrain.data import BatchStream, count_samples, resampled_shards, worker_plan
from pretrain.launch import pretrain
from pretrain.logs import read_metrics
from pretrain.moco import MoCo
from pretrain.settings import PretrainSettings, Recipe
from pretrain.trainer import lr_at, peak_lr

REPO = Path(__file__).resolve().parent.parent
IMAGES = 96  # 6 batches of 16 per epoch


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def crop_shards(unlabeled_dir: Path, tmp_path_factory) -> Path:
    """96 real crops from every folder of ../shared/data/unlabeled in 3 shards and their
    index.parquet, the build-shards layout."""
    files = sorted(unlabeled_dir.glob("*/*.jpg"))
    files = files[:: len(files) // IMAGES][:IMAGES]
    out = tmp_path_factory.mktemp("shards")
    for s in range(3):
        with wds.TarWriter(str(out / f"lup-{s:06d}.tar")) as tar:
            for f in files[s * 32 : (s + 1) * 32]:
                key = f"{f.parent.name}_{f.stem}".replace(".", "_")
                tar.write(
                    {"__key__": key, "jpg": f.read_bytes(), "json": json.dumps({"src": f.name}).encode()}
                )
    write_shard_index(out)
    return out


def tiny(shards: Path, **changes) -> PretrainSettings:
    base = PretrainSettings(
        shards=str(shards),
        arch="resnet18",
        height=32,
        width=16,
        batch_size=16,
        queue_size=40,  # not a multiple of the batch: the queue wraps mid-batch
        epochs=2,
        warmup_epochs=1,
        bn_groups=2,
        workers=0,
        device="cpu",
        log_every=2,
        checkpoint_every=6,
        shuffle_buffer=40,
    )
    return dataclasses.replace(base, **changes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(root: Path, run: str) -> list[float]:
    return [r["loss"] for r in read_metrics(root / "runs" / run / "metrics.csv")]


@pytest.mark.parametrize("gpu_augment", [True, False], ids=["batched-augment", "per-sample-augment"])
def test_resumed_run_repeats_the_uninterrupted_run(crop_shards, tmp_path, gpu_augment):
    # 5 batches per epoch from 2 workers (5 % 2 != 0), cut in the middle of epoch 1
    cfg = tiny(crop_shards, workers=2, gpu_augment=gpu_augment, epoch_size=80)
    whole = pretrain(dataclasses.replace(cfg, run_name="whole"), tmp_path)
    assert whole["steps"] == 10 and whole["epochs"] == 2
    first = pretrain(dataclasses.replace(cfg, run_name="cut", max_steps=7), tmp_path)
    assert first["steps"] == 7
    ckpts = sorted(p.name for p in (tmp_path / "runs" / "cut" / "checkpoints").glob("*.pt"))
    assert ckpts == ["step_00000006.pt", "step_00000007.pt"]  # every 6 steps + the last
    state = torch.load(tmp_path / "runs" / "cut" / "checkpoints" / ckpts[-1], weights_only=True)
    assert state["data"] == {"epoch": 1, "batch": 2, "steps_per_epoch": 5}
    assert {"model", "optimizer", "schedule", "rng", "step"} <= set(state)
    assert state["model"]["queue_ptr"].item() == 7 * 16 % 40
    rest = pretrain(dataclasses.replace(cfg, run_name="cut"), tmp_path)
    assert rest["resumed_from_step"] == 7 and rest["steps"] == 10
    assert len(losses(tmp_path, "whole")) == 10
    assert losses(tmp_path, "cut") == losses(tmp_path, "whole")  # exactly, step by step
    assert rest["checksums"] == whole["checksums"]


def test_run_outputs_backbone_logs_and_lr(crop_shards, tmp_path):
    summary = pretrain(tiny(crop_shards, run_name="out", max_steps=7, preset="mocov2"), tmp_path)
    run = tmp_path / "runs" / "out"
    assert {
        "steps",
        "epochs",
        "first_loss",
        "last_loss",
        "images_per_s",
        "data_wait_share",
        "backbone",
    } <= set(summary)
    assert summary["images_per_s"] > 0 and 0 <= summary["data_wait_share"] <= 1
    # The backbone loads into torchvision's ResNet: only the classifier is missing.
    net = torchvision.models.resnet18()
    result = net.load_state_dict(torch.load(summary["backbone"]), strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    model = torch.load(sorted((run / "checkpoints").glob("*.pt"))[-1], weights_only=True)["model"]
    torch.testing.assert_close(net.conv1.weight, model["encoder_q.backbone.conv1.weight"])
    # metrics.csv: every step once, with the linearly scaled, warmed-up, cosine learning rate.
    rows = read_metrics(run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 8))
    peak = peak_lr(0.3, 16, 2560)
    for r in rows:
        assert r["lr"] == pytest.approx(lr_at(int(r["step"]) - 1, peak, 12, 6))
    assert summary["first_loss"] == rows[0]["loss"] and summary["last_loss"] == rows[-1]["loss"]
    import matplotlib.image

    assert matplotlib.image.imread(run / "loss_curve.png").shape[2] in (3, 4)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert "preset: mocov2" in (run / "settings.yaml").read_text()


def test_ddp_with_two_gloo_processes(crop_shards, tmp_path):
    cfg = tiny(crop_shards, run_name="ddp", gpus=2, max_steps=4, master_port=free_port())
    summary = pretrain(cfg, tmp_path)
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert summary["ranks_agree"]  # same query encoder, key encoder and queue on both ranks
    assert len(losses(tmp_path, "ddp")) == 4
    assert Path(summary["backbone"]).is_file()


def test_two_nodes_agree_on_parameters(crop_shards, tmp_path):
    """Two processes act as nodes 0 and 1 (nnodes=2, gloo on 127.0.0.1)."""
    port = free_port()
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from pretrain.launch import pretrain\n"
        "from pretrain.settings import PretrainSettings\n"
        "cfg = PretrainSettings(**json.loads(sys.argv[1]))\n"
        "print('SUMMARY ' + json.dumps(pretrain(cfg, Path(sys.argv[2]))))\n"
    )
    procs, logs = [], [tmp_path / "node0.log", tmp_path / "node1.log"]
    for node, log in enumerate(logs):
        cfg = tiny(crop_shards, run_name="nodes", nnodes=2, node_rank=node, max_steps=3, master_port=port)
        args = [
            sys.executable,
            "-c",
            script,
            json.dumps(dataclasses.asdict(cfg)),
            str(tmp_path / f"node{node}"),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(log, "w") as out:  # a file, not a pipe: a full pipe would stall that node
            procs.append(
                subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
            )
    summaries = []
    for p, log in zip(procs, logs, strict=True):
        try:
            p.wait(timeout=240)
        finally:
            p.kill()
        out = log.read_text()
        assert p.returncode == 0, out[-2000:]
        summaries.append(json.loads(out.split("SUMMARY ", 1)[1].splitlines()[0]))
    assert [s["world_size"] for s in summaries] == [2, 2]
    assert [s["steps"] for s in summaries] == [3, 3]
    assert summaries[0]["checksums"] == summaries[1]["checksums"]
    assert "backbone" in summaries[0] and "backbone" not in summaries[1]  # only rank 0 writes


def test_worker_plan_covers_every_batch_once_in_loader_order():
    """Whatever the start and the worker count, the loader yields epoch e's batch j as slot j mod W."""
    steps, total = 6, 20
    for workers in (1, 3, 4):
        for n0 in (0, 5, 13):
            made = []
            for w in range(workers):
                items = []
                for epoch, slot, skip, count in worker_plan(n0, steps, workers, w):
                    if epoch * steps >= total:
                        break
                    items += [(epoch, slot + (skip + i) * workers) for i in range(count)]
                made.append(iter(items))
            order = []
            for n in range(n0, total):  # a DataLoader takes batches from its workers in turn
                order.append(next(made[(n - n0) % workers]))
            assert order == [(n // steps, n % steps) for n in range(n0, total)]


def test_shards_split_by_node_and_worker(tmp_path):
    urls = [f"s{i}.tar" for i in range(8)]
    seen = {}
    for rank in range(2):
        for slot in range(2):
            stream = resampled_shards(urls, 0, 0, rank, 2, slot, 2)
            seen[rank, slot] = {next(stream)["url"] for _ in range(200)}
    assert all(len(s) == 2 for s in seen.values())
    assert set().union(*seen.values()) == set(urls)  # disjoint subsets that cover every shard
    few = resampled_shards(urls[:1], 0, 0, 1, 2, 1, 2)
    assert next(few)["url"] == "s0.tar"  # fewer shards than nodes: everyone resamples all


def test_sample_count_and_bad_input(crop_shards, tmp_path):
    urls = sorted(str(p) for p in crop_shards.glob("*.tar"))
    assert count_samples(urls) == IMAGES  # from the tar headers
    index = pd.DataFrame({"shard": [Path(u).name for u in urls], "n_samples": [30, 31, 32]})
    index.to_parquet(tmp_path / "index.parquet")
    copies = []
    for u in urls:
        copies.append(tmp_path / Path(u).name)
        copies[-1].write_bytes(Path(u).read_bytes())
    assert count_samples([str(c) for c in copies]) == 93  # from build-shards' index.parquet
    with pytest.raises(UsageError, match="does not exist"):
        pretrain(tiny(tmp_path / "missing"), tmp_path)
    with pytest.raises(UsageError, match="smaller than one batch"):
        pretrain(tiny(crop_shards, epoch_size=8), tmp_path)
    with pytest.raises(SettingsError, match="multiple of gpus"):
        tiny(crop_shards, gpus=3)
    with pytest.raises(SettingsError, match="queue_size"):
        tiny(crop_shards, queue_size=8)
    with pytest.raises(SettingsError, match="arch"):
        tiny(crop_shards, arch="vgg16")


def test_corrupt_images_are_skipped(crop_shards, tmp_path, caplog):
    """A sample whose .jpg does not decode is logged and skipped; the stream stays full."""
    bad = tmp_path / "bad"
    bad.mkdir()
    good = next(crop_shards.glob("*.tar"))
    with wds.TarWriter(str(bad / "lup-000000.tar")) as tar:
        for i, sample in enumerate(wds.WebDataset(str(good), shardshuffle=False)):
            jpg = sample["jpg"] if i % 4 else b"not a jpeg"
            tar.write({"__key__": sample["__key__"], "jpg": jpg, "json": sample["json"]})
    stream = BatchStream(
        [str(bad / "lup-000000.tar")],
        Recipe(height=32, width=16),
        seed=0,
        n0=0,
        steps_per_epoch=3,
        batch=8,
        shuffle_buffer=8,
    )
    batches = list(islice(iter(stream), 3))
    assert [b[0].shape for b in batches] == [(8, 32, 16, 3)] * 3  # 24 good crops from a shard of 32, 8 bad
    assert all((b[1] > 0).all() for b in batches)
    skipped = [r for r in caplog.records if "no decodable .jpg, skipped" in r.getMessage()]
    assert len(skipped) >= 8 * 24 // 32 - 1  # about one in four samples drawn was a bad one


def test_bench_smoke(tmp_path, unlabeled_dir, monkeypatch, capsys):
    """(c) trained on exactly the crops asked for, for the warm-up and timed steps; (a) is a fair
    baseline: the official momentum update computes what ours does."""
    import bench.pretrain_throughput as bench

    work = tmp_path / "work"
    monkeypatch.setattr(bench, "run", lambda args: bench.run_in(args, work))  # keep the temporary folder
    out = tmp_path / "bench.json"
    report = bench.main(["--smoke", "--out", str(out), "--unlabeled", str(unlabeled_dir)])
    saved = json.loads(out.read_text())
    assert report["device"] == "cpu" and saved["images_in_shards"] == 96
    assert 0 <= saved["pairs_per_s"]["c_data_wait_share"] <= 1
    assert "(c) our trainer streaming real shards" in capsys.readouterr().out
    # The shards hold the first 96 crops byte for byte (read with tarfile, not the trainer's reader).
    jpgs = []
    for shard in sorted((work / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            jpgs += [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")]
    assert sorted(jpgs) == sorted(p.read_bytes() for p in sorted(unlabeled_dir.glob("*/*.jpg"))[:96])
    # (c) is Trainer.fit on them: 1 warm-up step and the 3 timed steps, each logged once.
    assert [r["step"] for r in read_metrics(work / "runs" / "c" / "metrics.csv")] == [1, 2, 3, 4]
    # (a)'s per-tensor momentum loop computes Eq. 2 as our fused update does (else (a) is no baseline).
    model = MoCo("resnet18", dim=8, queue_size=8, momentum=0.9)
    with torch.no_grad():
        for param in model.encoder_q.parameters():
            param.add_(torch.randn_like(param))  # the query encoder moved away from the key encoder
    official = copy.deepcopy(model)
    bench.official_momentum_update(official)
    model.momentum_update()
    for ours, theirs in zip(model.encoder_k.parameters(), official.encoder_k.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_channels_last_run(crop_shards, tmp_path):
    summary = pretrain(tiny(crop_shards, run_name="gpu", device="cuda", max_steps=4, workers=2), tmp_path)
    assert summary["steps"] == 4 and summary["device"].startswith("cuda")
    assert torch.isfinite(torch.tensor(summary["last_loss"]))
