"""bench/gpu.py: every part in a CPU smoke run, the budget that stops and skips parts, no GPU = exit 2."""

from __future__ import annotations

import json
import math
import tarfile
import time
from pathlib import Path

import pytest
import torch

from bench.gpu import main, parse
from bench.gpu_parts.budget import Clock, allowed_s, run_part
from bench.gpu_parts.parts import DEFAULT_TOTAL_S, PARTS, STARTUP_S
from bench.gpu_parts.report import NOT_MEASURED
from pretrain.logs import read_metrics

REPO = Path(__file__).resolve().parent.parent
HANG_S = 300  # each part's deadline in the smoke run: ~6x the slowest part on a busy 2-core machine
COMMITTED = (REPO / "bench" / "results" / "gpu.json", REPO / "docs" / "performance.md")


def snapshot() -> list[bytes | None]:
    return [p.read_bytes() if p.is_file() else None for p in COMMITTED]


def test_smoke_runs_every_part(tmp_path, unlabeled_dir, videos_dir, reid_dir, capsys):
    before = snapshot()
    out, md, work = tmp_path / "gpu.json", tmp_path / "performance.md", tmp_path / "w"
    budgets = [f"{name}={HANG_S}" for name in PARTS]  # on the CPU the H200 budgets mean nothing
    argv = ["--smoke", "--parts", *PARTS, "--out", str(out), "--md", str(md), "--work", str(work)]
    report = main([*argv, "--part-budget", *budgets])
    assert snapshot() == before  # the committed results and docs are never a smoke run's
    saved = json.loads(out.read_text())
    assert list(report["parts"]) == list(PARTS)  # run in dependency order
    assert set(saved["parts"]) == set(PARTS) and saved["device"] == "cpu" and saved["smoke"]
    for name, part in saved["parts"].items():
        assert part["status"] == "ok" or (name == "decode" and part["status"] == "not available"), part
        if part["status"] == "ok":  # what the printed table and the markdown show of every row
            assert part["rows"] and all(math.isfinite(r["value"]) and r["unit"] for r in part["rows"]), name
    # Counts of what the parts processed, against the files they read: the shards part wrote every
    # crop of the smoke subset once, byte for byte (read back with tarfile) ...
    crops = sorted((work / "smoke_unlabeled").glob("*/*.jpg"))
    folders = [p for p in unlabeled_dir.iterdir() if p.is_dir()]
    assert len(crops) == 24 * len(folders) == saved["parts"]["shards"]["raw"]["samples"]
    jpgs = []
    for shard in sorted((work / "lup" / "shards").glob("lup-*.tar")):
        with tarfile.open(shard) as tar:
            jpgs += [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")]
    assert sorted(jpgs) == sorted(p.read_bytes() for p in crops)
    # ... pretrain's (c) trained on them for its warm-up and timed steps, decode timed whole
    # batches of them, and every detect row ran its 5 batches of one frame.
    steps = read_metrics(work / "pretrain_b16" / "runs" / "c" / "metrics.csv")
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    decoded = saved["parts"]["decode"]["raw"]["measure_decode"]
    assert decoded["images"] == len(crops)
    assert all(n >= 16 and n % 16 == 0 for n, _ in decoded["timed"].values())
    detect = saved["parts"]["detect"]["raw"]
    timed = {k: r for k, r in detect["rows"].items() if not k.startswith("decode")}
    assert len(timed) == 3 and all((r["batches"], r["frames"]) == (5, 5) for r in timed.values())
    transfer = saved["parts"]["transfer"]["tables"][0]
    assert {(r["dataset"], r["init"]) for r in transfer["rows"]} == {
        ("viper", "lup"), ("viper", "mocov2"), ("viper", "random")
    }  # fmt: skip
    assert all(0 < r["finetuned_mAP"][0] <= 100 for r in transfer["rows"])
    assert saved["parts"]["ablations"]["tables"][0]["title"] == "ablation lup -RE"
    tracklets = saved["parts"]["tracklets"]["tables"][0]["rows"]
    assert {r["init"] for r in tracklets} == {"mocov2 instance", "mocov2 tracklet", "random"}
    scale = saved["parts"]["data-scale"]
    assert (
        scale["raw"]["crops"]["0.5"] == 48 and scale["raw"]["epoch_size"] == 96
    )  # half the crops, same epoch
    assert {r["unit"] for r in saved["parts"]["detect"]["rows"]} == {"frames/s", "boxes/s"}
    printed = capsys.readouterr().out
    assert "part" in printed and "measurement" in printed and "transfer (mean ± std over seeds, %)" in printed
    assert all(f"[gpu.py] {name}: " in printed for name in PARTS)  # each part's elapsed time
    text = md.read_text()
    assert report["command"] in text and "| part | measurement | value |" in text
    assert "## How the 10 minutes are split" in text and NOT_MEASURED not in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_without_a_gpu_exits_2_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path / "g.json"), "--md", str(tmp_path / "g.md")])
    assert stop.value.code == 2
    ours = [line for line in capsys.readouterr().err.splitlines() if "bench/gpu.py" in line]
    assert len(ours) == 1 and "no GPU is visible" in ours[0]  # one line (torch may warn on its own)
    assert not (tmp_path / "g.json").exists()


def test_default_parts_fit_ten_minutes():
    args = parse([])
    assert args.budget_s == DEFAULT_TOTAL_S == 600
    assert args.parts == ["shards", "pretrain", "detect", "features", "decode", "transfer"]
    assert STARTUP_S + sum(args.budgets[name] for name in args.parts) <= args.budget_s
    long = parse(["--parts", "ablations", "--part-budget", "ablations=100"])
    assert long.parts == ["shards", "ablations"] and long.budget_s == DEFAULT_TOTAL_S
    assert parse(["--parts", "data-scale"]).budget_s == STARTUP_S + 25 + PARTS["data-scale"].budget_s


def test_a_part_is_stopped_at_its_deadline_and_keeps_its_rows():
    def slow(ctx, record):
        record["rows"].append({"name": "first", "value": 1.0, "unit": "x"})
        time.sleep(60)
        record["rows"].append({"name": "never", "value": 2.0, "unit": "x"})

    start = time.perf_counter()
    record = run_part("slow", slow, None, 0.3, False, Clock(60))
    assert time.perf_counter() - start < 30  # interrupted, not raised once the 60 s sleep was over
    assert record["status"] == "stopped" and [r["name"] for r in record["rows"]] == ["first"]
    assert "deadline" in record["notes"][0]


def test_a_part_that_does_not_fit_is_skipped_with_a_note():
    called = []
    record = run_part("big", lambda ctx, rec: called.append(1), None, 500, False, Clock(100))
    assert record["status"] == "skipped" and not called and "raise --budget-s" in record["notes"][0]


def test_an_elastic_part_gets_what_earlier_parts_left_but_not_later_parts_budgets():
    clock = Clock(600)  # nothing spent yet: 590 s after the reserve
    assert allowed_s(330, True, clock) == pytest.approx(590 - clock.elapsed(), abs=1)
    assert allowed_s(330, True, clock, later_s=200) == pytest.approx(390, abs=1)
    assert allowed_s(330, True, clock, later_s=500) == 330 and allowed_s(330, False, clock) == 330
    assert allowed_s(700, True, clock) is None


def test_a_failing_part_is_recorded_and_the_run_goes_on():
    def broken(ctx, record):
        raise ValueError("no such shard")

    record = run_part("broken", broken, None, 5, False, Clock(60))
    assert record["status"] == "failed" and "ValueError: no such shard" in record["notes"][0]


def test_committed_docs_invent_no_gpu_number():
    """Until a GPU run wrote bench/results/gpu.json, every part of docs/performance.md is 'not measured yet'."""
    results, docs = COMMITTED
    if results.is_file():
        pytest.skip("a GPU run exists")
    text = docs.read_text()
    for name in PARTS:
        assert f"| {name} | " in text and NOT_MEASURED in text.split(f"| {name} | ", 1)[1].split("\n", 1)[0]


def test_gpu_sized_transfer_arguments_are_accepted(tmp_path):
    """The non-smoke arguments of the transfer parts parse in bench/transfer.py and name real settings."""
    from bench import transfer as bench_transfer
    from bench.gpu_parts.context import Context
    from bench.gpu_parts.experiments import ablation_plan
    from bench.gpu_parts.transfer_runs import transfer_argv
    from pretrain.settings import PretrainSettings

    ctx = Context(work=tmp_path, device="cuda", smoke=False, data=tmp_path, options=parse([]))
    plans = ablation_plan(ctx)
    assert [p[0] for p in plans] == [
        "ablation lup",
        "ablation lup -RE",
        "ablation lup tau 0.2",
        "ablation lup +CJ",
    ]
    for _, _, switches in [*plans, ("scale", None, ["epoch_size=14834"])]:
        argv = transfer_argv(ctx, tmp_path / "ws", ["lup"], [], switches)
        args = bench_transfer.parse_args([*argv, "--datasets", "cuhk03", "--out", str(tmp_path / "t.json")])
        assert (args.arch, args.height, args.width, args.seeds) == ("resnet50", 128, 64, [0, 1, 2])
        assert (args.pretrain_epochs, args.finetune_epochs, args.baselines) == (10, 6, [])
        extra = bench_transfer.key_values(args.pretrain_set)
        assert extra["warmup_epochs"] == 1
        PretrainSettings(**extra)  # every switch is a setting with a valid value
    full = transfer_argv(ctx, tmp_path / "ws", ["lup", "mocov2"], ["random"], [])
    args = bench_transfer.parse_args([*full, "--datasets", "viper"])
    assert args.presets == ["lup", "mocov2"] and args.baselines == ["random"] and args.device == "cuda"
