"""pipeline.py as a user runs it: subcommands, --help, and one-line errors on bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

SUBCOMMANDS = [
    "crawl",
    "filter",
    "detect",
    "build-shards",
    "stats",
    "pretrain",
    "finetune",
    "evaluate",
    "demo",
    "stream",
    "verify-shards",
    "export-lmdb",
    "takedown",
    "fetch-samples",
]


def run_cli(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "pipeline.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_every_subcommand():
    import pipeline

    assert sorted(SUBCOMMANDS) == sorted(pipeline.COMMANDS)  # a new subcommand is added here too
    result = run_cli("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert f"    {name}" in result.stdout, name


def test_help_imports_no_heavy_library():
    code = (
        "import sys; sys.argv=['pipeline.py','--help']; import pipeline\n"
        "try:\n    pipeline.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy=[m for m in ('torch','cv2','yt_dlp','ultralytics','webdataset','pandas','timm') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("crawl", "(default: 730)"),
        ("detect", "(default: 0.72)"),
        ("detect", "(default: 100)"),
        ("pretrain", "(default: 65536)"),
        ("pretrain", "(default: 0.999)"),
        ("build-shards", "(default: 95)"),
        ("finetune", "(default: ide)"),
        ("evaluate", "(default: viper)"),
        ("demo", "(default: <data>/videos)"),
        ("fetch-samples", "else ~/.cache/luperson)"),
    ],
)
def test_subcommand_help_shows_defaults(command: str, expected: str):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert expected in " ".join(result.stdout.split()), result.stdout


def _assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_nonexistent_config(tmp_path):
    _assert_one_line_error(
        run_cli("crawl", "--config", str(tmp_path / "nope.yaml")), "nope.yaml", "does not exist"
    )


def test_nonexistent_videos_folder(tmp_path):
    result = run_cli("demo", "--videos", str(tmp_path / "missing"), "--root", str(tmp_path / "out"))
    _assert_one_line_error(result, "missing", "does not exist")


def test_malformed_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("detect:\n  frame_step: [1, 2\n")
    _assert_one_line_error(run_cli("detect", "--config", str(bad), "--root", str(tmp_path)), "not valid YAML")


def test_unknown_settings_key(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("detect:\n  frame_stpe: 50\n")
    _assert_one_line_error(run_cli("detect", "--config", str(cfg), "--root", str(tmp_path)), "frame_stpe")


def test_wrong_type_in_yaml(tmp_path):
    cfg = tmp_path / "type.yaml"
    cfg.write_text("pretrain:\n  batch_size: big\n")
    _assert_one_line_error(run_cli("pretrain", "--config", str(cfg), "--root", str(tmp_path)), "batch_size")


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        ("detect", "--frame-step", "0"),
        ("detect", "--min-width", "-5"),
        ("crawl", "--per-city", "-1"),
        ("pretrain", "--batch-size", "0"),
        ("pretrain", "--queue-size", "-65536"),
        ("build-shards", "--max-samples", "0"),
        ("finetune", "--height", "0"),
    ],
)
def test_zero_or_negative_sizes(tmp_path, command: str, flag: str, value: str):
    result = run_cli(command, flag, value, "--root", str(tmp_path))
    _assert_one_line_error(result, flag.lstrip("-").replace("-", "_"))


def test_unknown_flag_is_one_line():
    _assert_one_line_error(run_cli("crawl", "--no-such-flag"), "--no-such-flag")
