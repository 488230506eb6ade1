"""The transfer experiment driver in smoke mode: every stage runs and the table adds up."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def transfer():
    spec = importlib.util.spec_from_file_location("bench_transfer", REPO / "bench" / "transfer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_transfer"] = module
    spec.loader.exec_module(module)
    return module


def test_transfer_smoke(tmp_path, transfer, shared_data):
    out = tmp_path / "transfer.json"
    report = transfer.main(["--smoke", "--root", str(tmp_path / "ws"), "--out", str(out)])
    saved = json.loads(out.read_text())
    inits = [row["init"] for row in saved["table"]]
    assert inits[-1] == "random" and set(inits[:-1]) == set(report["pretrain"])
    for run in saved["runs"]:
        assert run["finetuned"]["n_query"] == run["frozen"]["n_query"] == 316
        assert 0.0 <= run["frozen"]["mAP"] <= 100.0 and 0.0 <= run["finetuned"]["mAP"] <= 100.0
    random_row = saved["table"][-1]
    assert random_row["ft_mAP_vs_random"] == pytest.approx(1.0)
    assert random_row["finetuned_mAP"][0] == pytest.approx(saved["runs"][-1]["finetuned"]["mAP"])
    md = out.with_suffix(".md").read_text()
    assert md.count("| viper |") == len(inits)
    for preset, summary in report["pretrain"].items():
        assert (tmp_path / "ws" / "runs" / f"transfer_{preset}").is_dir() and summary["backbone"]
    for run in saved["runs"]:  # every pre-trained backbone tensor reached the fine-tuned model
        init = run["finetuned"]["init"]
        if run["init"] != "random":
            assert init["source"] == "state_dict" and init["missing"] == 0 and init["matched"] > 0
