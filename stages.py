"""The stage commands and how one runs: the registry the CLI (``pipeline.py``) and the demo share.

Each command names its settings class and stage function as ``"module:name"`` strings, imported
only when that command runs, so ``python pipeline.py --help`` stays instant. ``run_stage`` runs a
stage function ``fn(settings, root) -> summary dict`` and records its settings under
``<root>/settings/``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from common.errors import UsageError
from common.settings import resolve_settings, save_settings
from common.workspace import hold_workspace, is_lock_holder

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class Command:
    """One subcommand: its settings class, YAML section and the stage function it runs."""

    settings: str  # "module:Class"
    section: str
    function: str  # "module:function"
    help: str
    # how the command holds the workspace (common.lock): exclusive for writers of the dataset,
    # shared for readers of it, None when it does not touch the dataset
    root_lock: Literal["exclusive", "shared"] | None = "exclusive"
    run_lock: bool = False  # also holds <root>/runs/<run_name> exclusively
    # "module:function" of (settings, root) -> the other roots whose files the command reads,
    # held shared like root_lock "shared" (pretrain --shards in another root)
    reads: str | None = None
    # on a root it cannot write, run unlocked as a reader instead of refusing (no one here can
    # change such a root): stats still prints Table 1, then names what it could not write
    read_only_root_ok: bool = False
    # the stages whose settings the function also takes, ``fn(settings, root, {stage: settings})``:
    # each the user's last run of it (``settings/<stage>.yaml``), then ``--config`` (the streaming
    # build runs their per-video code)
    runs: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {
    "crawl": Command(
        "collect.settings:CrawlSettings",
        "crawl",
        "collect.crawl:crawl",
        "search YouTube for city street-view videos with yt-dlp and download them",
    ),
    "filter": Command(
        "filter.settings:FilterSettings",
        "filter",
        "filter.videos:filter_videos",
        "drop duplicate, short, static, VR and unreadable videos",
    ),
    "detect": Command(
        "detect.settings:DetectSettings",
        "detect",
        "detect.run:detect",
        "sample every 100th frame, detect persons, keypoints, validity rules",
    ),
    "build-shards": Command(
        "shards.settings:ShardSettings",
        "shards",
        "shards.build:build_shards",
        "write valid person crops as WebDataset shards (runs filter and detect first)",
    ),
    "stream": Command(
        "stream.settings:StreamSettings",
        "stream",
        "stream.build:stream",
        "download, filter, detect and cut each video, then delete it: the full build on bounded disk",
        runs=("crawl", "filter", "detect", "build-shards"),
    ),
    "stats": Command(
        "shards.settings:StatsSettings",
        "stats",
        "shards.checks.stats:stats",
        "dataset statistics (the paper's Table 1) and figures",
        read_only_root_ok=True,
    ),
    "verify-shards": Command(
        "shards.settings:VerifySettings",
        "verify",
        "shards.checks.verify:verify_shards",
        "re-read every shard, check sha256 and decode every image",
        root_lock="shared",
    ),
    "export-lmdb": Command(
        "shards.settings:ExportLmdbSettings",
        "export_lmdb",
        "shards.release.export_lmdb:export_lmdb",
        "write the shards as the official LUPerson LMDB with keys.pkl",
    ),
    "takedown": Command(
        "shards.settings:TakedownSettings",
        "takedown",
        "shards.release.takedown:takedown",
        "remove crops (by video id or key) from the shards, tables and LMDB export, and from every later build",
    ),
    "pretrain": Command(
        "pretrain.settings:PretrainSettings",
        "pretrain",
        "pretrain.launch:pretrain",
        "Re-ID MoCo v2 pre-training on the shards, one GPU to many",
        root_lock="shared",
        run_lock=True,
        reads="pretrain.shardlist:shard_roots",
    ),
    "finetune": Command(
        "finetune.settings:FinetuneSettings",
        "finetune",
        "finetune.train:finetune",
        "fine-tune a backbone on a Re-ID benchmark and report mAP / CMC",
        root_lock=None,
        run_lock=True,
    ),
    "evaluate": Command(
        "finetune.settings:EvaluateSettings",
        "evaluate",
        "finetune.evaluate_cmd:evaluate_command",
        "evaluate a backbone (frozen or fine-tuned) with the Market-1501 protocol",
        root_lock=None,
    ),
    "fetch-samples": Command(
        "common.data:FetchSettings",
        "fetch_samples",
        "common.data:fetch_samples",
        "fetch the sample footage (CC-BY-4.0) and the BlazePose/BlazeFace models, sha256-checked, into the data folder",
        root_lock=None,
    ),
    "demo": Command(
        "demo:DemoSettings",
        "demo",
        "demo:demo",
        "run every stage on the sample footage in ../shared/data, CPU-sized",
    ),
}

# build-shards chains these stages first when it cuts crops from its own detections; a run that
# imports crops or takes released detections (any of shards.settings.IMPORTER_FIELDS set) skips them.
CHAINED_BEFORE = {"build-shards": ("filter", "detect")}
CHAIN_FLAGS = ("engine", "address")


def load_attr(spec: str) -> Any:
    """Import ``"module:name"``."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def resolve(command: str, config: str | None, flags: dict[str, Any], saved: Path | None = None) -> Any:
    """Resolved settings of ``command``: defaults < ``saved`` (a settings file) < YAML section < flags."""
    cmd = COMMANDS[command]
    return resolve_settings(load_attr(cmd.settings), cmd.section, config, flags, base=saved)


def settings_file(command: str, root: Path) -> Path:
    """Where a run of ``command`` records its resolved settings."""
    return root / "settings" / f"{COMMANDS[command].section}.yaml"


def run_stage(command: str, settings: Any, root: Path, runs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the stage function, then save its settings under ``<root>/settings/``; ``runs``: the
    settings of the stages it runs (``Command.runs``), passed on and saved too.

    Settings are saved once the stage got past its input checks: not after a ``UsageError``
    (bad input), but after success or any failure during the work.
    """
    cmd = COMMANDS[command]
    log.info("%s: %s", command, settings)
    if cmd.runs and runs is None:
        runs = stage_settings(command, settings, None, root)
    saved = {command: settings, **(runs or {})}
    try:
        fn = load_attr(cmd.function)
        summary = (fn(settings, root, runs) if cmd.runs else fn(settings, root)) or {}
    except UsageError:
        raise
    except BaseException:
        for name, value in saved.items():
            _save_settings(name, value, root)
        raise
    for name, value in saved.items():
        _save_settings(name, value, root)
    return summary


def _save_settings(command: str, settings: Any, root: Path) -> None:
    if not is_lock_holder():  # under torchrun every rank runs this; rank 0 writes
        return
    try:
        save_settings(settings, settings_file(command, root), COMMANDS[command].section)
    except OSError as e:  # a read-only root of a stage that only reads
        log.warning("settings not saved to %s (%s)", settings_file(command, root), e.strerror)


def chained_settings(before: str, command_settings: Any, config: str | None, root: Path) -> Any:
    """Settings of a stage chained before another: the user's last run of it, then ``--config``.

    Where the work runs (``CHAIN_FLAGS``) is one choice for the whole chain: the command's own.
    """
    shared = {k: getattr(command_settings, k) for k in CHAIN_FLAGS if hasattr(command_settings, k)}
    saved = settings_file(before, root)
    return resolve(before, config, shared, saved if saved.is_file() else None)


def stage_settings(command: str, settings: Any, config: str | None, root: Path) -> dict[str, Any]:
    """The settings of the stages ``command`` runs (``Command.runs``), as ``chained_settings`` resolves them."""
    return {name: chained_settings(name, settings, config, root) for name in COMMANDS[command].runs}


def workspace(command: str, settings: Any, root: Path):
    """The locks ``command`` holds on ``root`` (``common.lock``) while it runs."""
    cmd = COMMANDS[command]
    if not is_lock_holder() or getattr(settings, "node_rank", 0) != 0:
        return contextlib.nullcontext()
    run_dir = root / "runs" / settings.run_name if cmd.run_lock else None
    reads = load_attr(cmd.reads)(settings, root) if cmd.reads else []
    mode = cmd.root_lock
    if cmd.read_only_root_ok and root.is_dir() and not os.access(root, os.W_OK):
        mode = "shared"
    return hold_workspace(root, command, mode, run_dir, reads)
