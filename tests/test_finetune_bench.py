"""The transfer experiment driver in smoke mode: every stage runs and the table adds up."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import torchvision

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def transfer():
    spec = importlib.util.spec_from_file_location("bench_transfer", REPO / "bench" / "transfer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_transfer"] = module
    spec.loader.exec_module(module)
    return module


def test_transfer_smoke(tmp_path, transfer, shared_data, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torchvision finds "ImageNet" weights
    imagenet = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    imagenet.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), imagenet)
    out = tmp_path / "transfer.json"
    report = transfer.main(["--smoke", "--root", str(tmp_path / "ws"), "--out", str(out)])
    saved = json.loads(out.read_text())
    inits = [row["init"] for row in saved["table"]]
    assert inits == ["lup", "mocov2", "random", "imagenet"] and set(inits[:2]) == set(report["pretrain"])
    norms = {row["init"]: row["norm"] for row in saved["table"]}
    assert norms == {"lup": "lup", "mocov2": "imagenet", "random": "lup", "imagenet": "imagenet"}
    for run in saved["runs"]:
        assert run["finetuned"]["n_query"] == run["frozen"]["n_query"] == 316
        assert 0.0 <= run["frozen"]["mAP"] <= 100.0 and 0.0 <= run["finetuned"]["mAP"] <= 100.0
    random_row = saved["table"][2]
    assert random_row["ft_mAP_vs_random"] == pytest.approx(1.0)
    random_run = [r for r in saved["runs"] if r["init"] == "random"][0]
    assert random_row["finetuned_mAP"][0] == pytest.approx(random_run["finetuned"]["mAP"])
    md = out.with_suffix(".md").read_text()
    assert md.count("| viper |") == len(inits)
    for preset, summary in report["pretrain"].items():
        assert (tmp_path / "ws" / "runs" / f"transfer_{preset}").is_dir() and summary["backbone"]
    for run in saved["runs"]:  # every pre-trained backbone tensor reached the fine-tuned model
        init = run["finetuned"]["init"]
        if run["init"] in report["pretrain"]:
            assert init["source"] == "state_dict" and init["missing"] == 0 and init["matched"] > 0
        if run["init"] == "imagenet":
            assert init["source"] == "imagenet" and init["missing"] == 0 and init["matched"] == 120


def test_a_forced_normalisation_gets_its_own_run_folders(transfer):
    args = transfer.parse_args(["--normalisation", "lup", "--presets", "mocov2", "--baselines"])
    assert (args.normalisation, args.presets, args.baselines) == ("lup", ["mocov2"], [])
    assert transfer.run_suffix(args) == "_norm-lup"
    assert transfer.run_suffix(transfer.parse_args([])) == ""


def test_instance_against_tracklet_positives_smoke(tmp_path, transfer, shared_data):
    """``--positives instance,tracklet``: one pre-training per kind on the same tracklet shards
    (TownCentre's people are tracklets), one row each."""
    out = tmp_path / "transfer.json"
    argv = ["--smoke", "--root", str(tmp_path / "ws"), "--out", str(out), "--presets", "mocov2"]
    report = transfer.main([*argv, "--positives", "instance,tracklet", "--baselines", "random"])
    saved = json.loads(out.read_text())
    assert [row["init"] for row in saved["table"]] == ["mocov2 instance", "mocov2 tracklet", "random"]
    shards = saved["shards"]  # 8 crops of each of the 4 folders: TownCentre's 8 are in tracklets
    assert shards["crops"] == 32 and shards["crops_in_tracklets"] == 8 and 1 <= shards["tracklets"] < 8
    for name, positives in (("mocov2 instance", "instance"), ("mocov2 tracklet", "tracklet")):
        card = json.loads(Path(report["pretrain"][name]["backbone"]).with_suffix(".json").read_text())
        assert card["positives"] == positives and card["preset"] == "mocov2"
        assert card["steps"] == 1 and card["batch_size"] == 8  # the same budget
    assert {r["finetuned"]["init"]["source"] for r in saved["runs"] if r["init"] != "random"} == {
        "state_dict"
    }
    with pytest.raises(SystemExit):
        transfer.parse_args(["--positives", "instance,bogus"])
    # every crop's JSON (read with tarfile) names the tracklet TOWNCENTRE gives its path, or none
    import re
    import tarfile

    from bench.transfer_shards import TOWNCENTRE

    named = {}
    for url in sorted((tmp_path / "ws" / "shards").glob("*.tar")):
        with tarfile.open(url) as tar:
            for member in (m for m in tar.getmembers() if m.name.endswith(".json")):
                meta = json.loads(tar.extractfile(member).read())
                match = re.fullmatch(TOWNCENTRE, meta["path"])
                assert meta.get("tracklet") == (match.group("tracklet") if match else None), meta
                named[meta["path"]] = meta.get("tracklet")
    assert len(named) == 32 and sum(t is not None for t in named.values()) == 8
