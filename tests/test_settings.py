"""Settings: paper defaults, precedence defaults < YAML < flags, saved YAML reloads identically."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import REPO

import pipeline
from common.errors import SettingsError
from common.settings import read_yaml_section, resolve_settings, save_settings


def test_paper_defaults_match_design():
    """The numbers of the paper's §3.1 / §4 / §5.1 as listed in ../shared/DESIGN.md."""
    from detect.settings import DetectSettings
    from filter.settings import FilterSettings
    from pretrain.settings import PretrainSettings

    d = DetectSettings()
    assert (d.frame_step, d.min_score, d.min_width, d.min_aspect, d.max_aspect) == (100, 0.72, 48, 1.5, 5)
    assert FilterSettings().min_frames == 100 and FilterSettings().static_frames == 5
    p = PretrainSettings()
    assert (p.queue_size, p.momentum, p.dim, p.height, p.width) == (65536, 0.999, 128, 256, 128)
    assert (p.base_lr, p.base_batch, p.weight_decay, p.epochs, p.preset) == (0.3, 2560, 1e-4, 200, "lup")
    assert p.batch_size == 2560  # §5.1: `pretrain --gpus 8` is the paper without extra flags


def test_paper_yaml_is_generated_from_the_dataclasses():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "write_paper_yaml", REPO / "configs" / "write_paper_yaml.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (REPO / "configs" / "paper.yaml").read_text() == module.paper_yaml(), (
        "configs/paper.yaml is stale: run python configs/write_paper_yaml.py"
    )


@pytest.mark.parametrize("name", ["paper.yaml", "demo.yaml"])
def test_presets_resolve_for_every_stage(name: str):
    for command in pipeline.COMMANDS:
        settings = pipeline.resolve(command, str(REPO / "configs" / name), {})
        assert dataclasses.is_dataclass(settings)


def test_precedence_defaults_then_yaml_then_flags(tmp_path):
    from detect.settings import DetectSettings

    cfg = tmp_path / "c.yaml"
    cfg.write_text("detect:\n  frame_step: 50\n  detector: hog\n")
    s = resolve_settings(DetectSettings, "detect", cfg, {"frame_step": 10})
    assert s.frame_step == 10  # flag beats YAML
    assert s.detector == "hog"  # YAML beats default
    assert s.min_score == 0.72  # default kept


def test_a_group_takes_its_flags_yaml_mapping_and_saved_file(tmp_path):
    """A nested group (calibration): flags --calibrate-* and --cut-unverified from the real parser,
    a YAML mapping merged key by key under them, checked, saved nested and reloaded equal."""
    from common.settings import nest_flags
    from shards.settings import Calibration, ShardSettings

    args = pipeline.build_parser().parse_args(
        ["build-shards", "--calibrate-frames", "3", "--cut-unverified", "--no-calibrate-rescale"]
    )
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "root", "config", "verbose")}
    assert nest_flags(flags) == {"calibration": {"frames": 3, "cut_unverified": True, "rescale": False}}
    cfg = tmp_path / "c.yaml"
    cfg.write_text("shards:\n  calibration:\n    frames: 8\n    height: 540\n")
    s = resolve_settings(ShardSettings, "shards", cfg, flags)
    assert s.calibration == Calibration(frames=3, height=540, rescale=False, cut_unverified=True)
    save_settings(s, tmp_path / "shards.yaml", "shards")
    saved = yaml.safe_load((tmp_path / "shards.yaml").read_text())["shards"]
    assert saved["calibration"]["height"] == 540 and "calibrate_height" not in saved
    assert resolve_settings(ShardSettings, "shards", tmp_path / "shards.yaml", {}) == s
    for text, message in (("frames: 0", "frames must be > 0"), ("fps: 3", "unknown setting 'fps'")):
        cfg.write_text(f"shards:\n  calibration:\n    {text}\n")
        with pytest.raises(SettingsError, match=message):
            resolve_settings(ShardSettings, "shards", cfg, {})
    saved = tmp_path / "settings" / "shards.yaml"  # a file with the flat names of before the groups
    saved.parent.mkdir()
    saved.write_text("shards:\n  calibrate_frames: 3\n")
    with pytest.raises(SettingsError, match=rf"{saved} \[shards\]: unknown setting 'calibrate_frames'"):
        resolve_settings(ShardSettings, "shards", None, {}, base=saved)
    cfg.write_text("shards:\n  calibration: 3\n")
    with pytest.raises(SettingsError, match="calibration must be a mapping"):
        resolve_settings(ShardSettings, "shards", cfg, {})


def test_saved_settings_reload_identically(tmp_path):
    from pretrain.settings import PretrainSettings

    s = resolve_settings(PretrainSettings, "pretrain", None, {"batch_size": 64, "preset": "mocov2"})
    save_settings(s, tmp_path / "pretrain.yaml", "pretrain")
    assert yaml.safe_load((tmp_path / "pretrain.yaml").read_text())["pretrain"]["batch_size"] == 64
    assert resolve_settings(PretrainSettings, "pretrain", tmp_path / "pretrain.yaml", {}) == s


def test_settings_are_frozen():
    from detect.settings import DetectSettings

    with pytest.raises(dataclasses.FrozenInstanceError):
        DetectSettings().frame_step = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [("[1, 2]\n", "must be a mapping"), ("detect: 3\n", "section 'detect' must be a mapping")],
)
def test_yaml_shape_errors(tmp_path, text: str, message: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(SettingsError, match=message):
        read_yaml_section(cfg, "detect")


def test_bool_and_literal_values_are_checked():
    from detect.settings import DetectSettings

    with pytest.raises(SettingsError, match="detector must be one of"):
        resolve_settings(DetectSettings, "detect", None, {"detector": "ssd"})
    with pytest.raises(SettingsError, match="max_aspect"):
        resolve_settings(DetectSettings, "detect", None, {"min_aspect": 5.0, "max_aspect": 1.5})


_SEEN: dict = {}


def _record(cfg, root):
    _SEEN["cfg"] = cfg
    return {"ran": 1}


def test_stage_run_writes_resolved_settings(tmp_path, monkeypatch):
    """run_stage saves the settings it ran with under <root>/settings/, loadable with --config."""
    from filter.settings import FilterSettings

    recorder = dataclasses.replace(pipeline.COMMANDS["filter"], function=f"{__name__}:_record")
    monkeypatch.setitem(pipeline.COMMANDS, "filter", recorder)
    settings = FilterSettings(min_frames=7)
    assert pipeline.run_stage("filter", settings, tmp_path) == {"ran": 1}
    saved = tmp_path / "settings" / "filter.yaml"
    assert resolve_settings(FilterSettings, "filter", saved, {}) == settings
    assert _SEEN["cfg"] is settings
