"""pretrain under corruption and kills: it never trains on damaged bytes (a damaged checkpoint,
stale temporaries of killed writes) and never rewrites a finished run.

Bad shards, bad names and a full disk: ``test_safety_pretrain_inputs.py``."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
from pretrain_safety import flags, flip, run_cli, tiny, write_shards

from common.errors import UsageError
from pretrain.launch import pretrain

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(unlabeled_dir: Path, tmp_path_factory) -> Path:
    """48 real crops in 3 shards of 16 with their index: 3 steps of 16 per epoch."""
    return write_shards(unlabeled_dir, tmp_path_factory.mktemp("shards"))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


# --- a damaged checkpoint, stale temporaries of killed writes --------------------------------


@pytest.fixture(scope="module")
def flipped(shards, tmp_path_factory):
    """A run cut at step 2 of 3 (checkpoints 1 and 2), step 2 bit-flipped, temporaries of killed
    writes planted, then resumed: its root, the resume's summary and warnings, the dead pid."""
    root = tmp_path_factory.mktemp("flipped")
    cfg = tiny(shards, run_name="flip", checkpoint_every=1)
    pretrain(dataclasses.replace(cfg, max_steps=2), root)
    run = root / "runs" / "flip"
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.glob("*.pt")) == ["step_00000001.pt", "step_00000002.pt"]
    flip(folder / "step_00000002.pt")
    gone = dead_pid()
    for name in (f".step_00000006.pt.{gone}.tmp", f".backbone.pth.{gone}.tmp"):
        (run / ("checkpoints" if name.startswith(".step") else "") / name).write_bytes(b"\0" * 2**20)
    (folder / ".step_00000006.pt.1.tmp").write_bytes(b"live")  # pid 1 is alive: not ours to remove
    (folder / f".notes.txt.{gone}.tmp").write_bytes(b"not a name pretrain writes")
    records = Records()
    logging.getLogger().addHandler(records)
    try:
        summary = pretrain(cfg, root)
    finally:
        logging.getLogger().removeHandler(records)
    return {"root": root, "summary": summary, "warnings": records.lines, "dead_pid": gone}


def test_flipped_checkpoint_is_detected_and_the_previous_one_used(flipped):
    summary, warnings = flipped["summary"], flipped["warnings"]
    assert summary["resumed_from_step"] == 1 and summary["steps"] == 3
    assert any("step_00000002.pt" in w and "damaged" in w for w in warnings), warnings


def test_stale_temporaries_of_killed_writes_are_removed(flipped):
    run = flipped["root"] / "runs" / "flip"
    left = {p.name for p in [*run.glob(".*.tmp"), *(run / "checkpoints").glob(".*.tmp")]}
    assert left == {f".notes.txt.{flipped['dead_pid']}.tmp", ".step_00000006.pt.1.tmp"}


def test_every_checkpoint_damaged_is_refused_not_restarted(flipped, shards, tmp_path):
    folder = tmp_path / "runs" / "flip" / "checkpoints"  # the same run, in another root
    shutil.copytree(flipped["root"] / "runs" / "flip" / "checkpoints", folder)
    for p in folder.glob("*.pt"):
        flip(p)
    with pytest.raises(UsageError, match="no usable checkpoint"):
        pretrain(tiny(shards, run_name="flip", checkpoint_every=1), tmp_path)
    assert not (tmp_path / "runs" / "flip" / "metrics.csv").exists()  # nothing trained from step 0


# --- a finished run ---------------------------------------------------------------------------


def snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(run)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != ".luperson.lock"
    }


def test_rerunning_a_finished_run_rewrites_nothing(shards, tmp_path):
    cfg = tiny(shards, run_name="done")
    assert pretrain(cfg, tmp_path)["steps"] == 3
    run = tmp_path / "runs" / "done"
    before = snapshot(run)
    assert "backbone.pth" in before and "loss_curve.png" in before
    status, err, _ = run_cli("pretrain", "--root", str(tmp_path), *flags(cfg), timeout=180)
    assert status == 0, err[-3000:]
    assert snapshot(run) == before  # same files, same bytes, same modification times
    assert "is finished at step 3" in err
