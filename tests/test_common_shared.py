"""Helpers that were written once per stage and now live once in ``common/`` (issue 14): the
device choice, the aligned-table printer and the resume-settings check."""

from __future__ import annotations

import pytest
import torch

from common.device import pick_device
from common.errors import UsageError
from common.resume import check_resume_settings
from common.table import aligned


def test_pick_device_auto_cpu_and_numbering(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device("cpu", 3) == torch.device("cpu")
    with pytest.raises(UsageError, match="^device cuda: no CUDA GPU is visible$"):
        pick_device("cuda")
    with pytest.raises(UsageError, match="device cuda:1: no CUDA GPU"):
        pick_device("cuda:1")
    with pytest.raises(UsageError, match="not a device"):
        pick_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")
    assert pick_device("auto", 2) == torch.device("cuda", 2)
    assert pick_device("cuda:1", 0) == torch.device("cuda", 1)  # a numbered device stays as asked


def test_stage_wrappers_keep_their_forms(monkeypatch):
    from common.detectors.yolo import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda:0" and resolve_device("cuda:3") == "cuda:3"


def test_aligned_table():
    rows = [("a", "bb", "c"), ("long", "", "12"), ("x", "y", "3")]
    assert aligned(rows) == "a     bb  c\n----  --  --\nlong      12\nx     y   3"
    assert aligned(rows, right=(2,), rule="full") == "a     bb   c\n------------\nlong      12\nx     y    3"
    assert aligned(rows, rule=None, strip=False) == "a     bb  c \nlong      12\nx     y   3 "


def test_resume_settings():
    saved = {"lr": 0.1, "workers": 4}
    check_resume_settings(
        saved, {"lr": 0.1, "workers": 8}, {"workers"}, made_with="m", fix="f", missing_ok=False
    )
    with pytest.raises(UsageError, match=r"^run was made with lr=0.1, not 0.2: start over$"):
        check_resume_settings(
            saved, {"lr": 0.2}, {"workers"}, made_with="run was made with", fix="start over", missing_ok=False
        )
    new = {"lr": 0.1, "new_setting": 1}
    check_resume_settings(saved, new, (), made_with="m", fix="f", missing_ok=True)
    with pytest.raises(UsageError, match="new_setting=None, not 1"):
        check_resume_settings(saved, new, (), made_with="m", fix="f", missing_ok=False)
