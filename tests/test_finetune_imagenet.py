"""``--init imagenet``: torchvision's weight API from a prepared ``TORCH_HOME``; offline without the
file, one line naming it and exit 2 (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

import pipeline
from finetune.backbone import build_resnet, load_backbone_weights
from finetune.imagenet import cached_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty ``TORCH_HOME``; downloads fail fast (a proxy that refuses) whatever the network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    return tmp_path / "torch"


def test_the_file_name_is_torchvisions(torch_home):
    assert cached_file("resnet18") == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert cached_file("resnet50").name == "resnet50-0676ba61.pth"  # IMAGENET1K_V1, the classic


def test_imagenet_init_loads_through_torchvisions_api(torch_home):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    where = cached_file("resnet18")
    where.parent.mkdir(parents=True)
    torch.save(reference, where)
    model = build_resnet("resnet18")
    report = load_backbone_weights(model, "imagenet")
    assert report.source == "imagenet" and report.matched == 120 and report.missing == []
    assert report.unexpected == [] and report.normalisation.name == "imagenet"
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, reference[key]), key


def test_offline_without_the_file_is_one_line(torch_home, reid_dir, tmp_path, capsys):
    status = pipeline.main(
        ["evaluate", "--root", str(tmp_path / "ws"), "--dataset", "prid", "--data-dir", str(reid_dir / "PRID"),
         "--weights", "imagenet", "--arch", "resnet18", "--device", "cpu", "--workers", "0"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert "resnet18-f37072fd.pth" in err[0] and str(torch_home / "hub" / "checkpoints") in err[0]
    assert not (torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth").exists()
