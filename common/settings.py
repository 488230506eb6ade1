"""Typed, frozen settings: dataclass defaults < YAML section (``--config``) < command-line flags.

Every stage declares one frozen dataclass whose defaults are the paper's values. This module
turns such a class into argparse flags, reads a YAML section into it, checks types and unknown
keys, and writes the resolved settings back as YAML beside a run's outputs.

A feature that owns several settings declares them as a frozen dataclass of its own, nested with
:func:`group`: its fields become the flags ``--<prefix>-<field>`` and a mapping under the group's
name in YAML and in the saved settings, and a consumer (or a fingerprint) takes the group whole.

Example::

    @dataclass(frozen=True)
    class CrawlSettings:
        per_city: int = setting(730, "videos to keep per city (the paper: ~730)")

        def __post_init__(self):
            check_positive(self, "per_city")
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from common.atomic import write_text
from common.errors import SettingsError

T = TypeVar("T")
MAX_CONFIG_BYTES = 1 << 20  # a settings file is a few kB; anything near this is not one


def _show_value(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters: an error line stays one short line whatever the input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without anchors and aliases: settings never need them, and a few hundred
    bytes of nested aliases expand into gigabytes (the "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise SettingsError(f"YAML aliases (*name) are not allowed in settings (line {mark.line + 1})")
        return super().compose_node(parent, index)


def setting(default: Any, help: str, *, saved: bool = True, flag: str | None = None) -> Any:
    """A dataclass field with a default and a help text shown by ``--help``.

    ``saved=False`` marks a one-off permission (``--replace-shards``): the settings file a run
    writes records its default, so reusing that file as ``--config`` never repeats it unasked.
    ``flag`` names the command-line flag of a field in a :func:`group` when ``--<prefix>-<field>``
    would not read well (``--cut-unverified``).
    """
    metadata = {"help": help, "saved": saved} | ({"flag": flag} if flag else {})
    return dataclasses.field(default=default, metadata=metadata)


def group(cls: type, prefix: str, help: str) -> Any:
    """A nested settings dataclass: the flags ``--<prefix>-<field>``, YAML ``<name>: {field: ...}``."""
    return dataclasses.field(default_factory=cls, metadata={"help": help, "group": prefix, "saved": True})


def _is_group(f: dataclasses.Field) -> bool:
    return "group" in f.metadata


def check_positive(obj: Any, *names: str) -> None:
    """Raise ``SettingsError`` unless every named numeric field is > 0 (``None`` is allowed)."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and value <= 0:
            raise SettingsError(f"{name} must be > 0, got {value}")


def check_nonnegative(obj: Any, *names: str) -> None:
    """Raise ``SettingsError`` unless every named numeric field is >= 0 (``None`` is allowed)."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < 0:
            raise SettingsError(f"{name} must be >= 0, got {value}")


def check_range(obj: Any, name: str, low: float, high: float) -> None:
    """Raise ``SettingsError`` unless ``low <= value <= high``."""
    value = getattr(obj, name)
    if value is not None and not low <= value <= high:
        raise SettingsError(f"{name} must be in [{low}, {high}], got {value}")


def check_folder_name(value: str, what: str) -> None:
    """``SettingsError`` unless ``value`` names one plain folder (no ``/``, ``\\``, ``..``, NUL)."""
    if value in ("", ".", "..") or any(c in value for c in "/\\\0"):
        raise SettingsError(f"{what} must be one plain folder name (no '/', '..'), got {value[:60]!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _split_optional(annotation: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Check and convert one value (from YAML or argparse) to the field's annotated type."""
    base, optional = _split_optional(annotation)
    if value is None or (optional and isinstance(value, str) and value.lower() == "none"):
        if optional:
            return None
        raise SettingsError(f"{name} must not be empty")
    origin = get_origin(base)
    if origin is Literal:
        choices = get_args(base)
        if value not in choices:
            raise SettingsError(
                f"{name} must be one of {', '.join(map(str, choices))}, got {_show_value(value)}"
            )
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            value = [value]
        item_type = get_args(base)[0]
        return tuple(_coerce(v, item_type, name) for v in value)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(f"{name} must be true or false, got {_show_value(value)}")
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{name} must be an integer, got {_show_value(value)}")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{name} must be a number, got {_show_value(value)}")
        if not math.isfinite(value):
            raise SettingsError(f"{name} must be a finite number, got {value}")
        return float(value)
    if base is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise SettingsError(f"{name} must be a string, got {_show_value(value)}")
        return str(value)
    raise TypeError(f"settings field {name}: unsupported annotation {annotation!r}")


def _argparse_type(annotation: Any, name: str):
    base, optional = _split_optional(annotation)
    if get_origin(base) is tuple:
        base = get_args(base)[0]

    def parse(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        try:
            raw: Any = {int: int, float: float}.get(base, str)(text)
        except ValueError:
            kind = "an integer" if base is int else "a number"
            raise argparse.ArgumentTypeError(f"{name} must be {kind}, got {_show_value(text)}") from None
        return raw

    return parse


def add_settings_flags(parser: argparse.ArgumentParser, cls: type, prefix: str = "", dest: str = "") -> None:
    """Add one flag per field of ``cls`` (and of its groups); ``--help`` shows each default.

    Defaults are suppressed in the namespace so that only flags the user typed override YAML. A
    group's flags land in the namespace as ``<group>.<field>`` (:func:`nest_flags` nests them).
    """
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _is_group(f):
            add_settings_flags(parser, hints[f.name], f.metadata["group"] + "_", f"{dest}{f.name}.")
            continue
        annotation = hints[f.name]
        base, _ = _split_optional(annotation)
        name = f.metadata.get("flag") or prefix + f.name
        help_text = f"{f.metadata.get('help', '')} (default: {_show(f.default)})"
        kwargs: dict[str, Any] = {"dest": dest + f.name, "default": argparse.SUPPRESS, "help": help_text}
        if base is bool:
            parser.add_argument(_flag(name), action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if get_origin(base) is Literal:
            kwargs["choices"] = get_args(base)
        elif get_origin(base) is tuple:
            kwargs["nargs"] = "+"
            kwargs["type"] = _argparse_type(annotation, name)
        else:
            kwargs["type"] = _argparse_type(annotation, name)
        if "choices" not in kwargs:
            kwargs["metavar"] = name.upper()
        parser.add_argument(_flag(name), **kwargs)


def nest_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """``{"calibration.frames": 3}`` (argparse's dests of a group) -> ``{"calibration": {"frames": 3}}``."""
    nested: dict[str, Any] = {}
    for key, value in flags.items():
        *groups, name = key.split(".")
        target = nested
        for g in groups:
            target = target.setdefault(g, {})
        target[name] = value
    return nested


def _merge(values: dict[str, Any], update: dict[str, Any]) -> None:
    """``values.update(update)``, a group's mapping merged key by key rather than replaced."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) if value else "()"
    return str(value)


def read_yaml_section(path: str | Path, section: str) -> dict[str, Any]:
    """Return the mapping under ``section`` in a YAML file ({} when absent)."""
    p = Path(path)
    if not p.is_file():
        raise SettingsError(f"config file {p} does not exist")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise SettingsError(f"config file {p} is {p.stat().st_size} bytes: not a settings file")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # noqa: S506 (safe loader)
    except UnicodeDecodeError as e:
        raise SettingsError(f"config file {p} is not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SettingsError(f"config file {p} is not valid YAML{where}") from None
    except SettingsError as e:
        raise SettingsError(f"config file {p}: {e}") from None
    except RecursionError:
        raise SettingsError(f"config file {p} is nested too deeply to be settings") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {p} must be a mapping of sections, got {type(data).__name__}")
    body = data.get(section) or {}
    if not isinstance(body, dict):
        raise SettingsError(f"config file {p}: section '{section}' must be a mapping")
    return body


def _check_names(cls: type, values: dict[str, Any], source: str) -> None:
    """``SettingsError`` naming ``source`` for a key that is no field of ``cls`` (or of its group)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields), key=str)
    if unknown:
        raise SettingsError(
            f"{source}: unknown setting {_show_value(unknown[0])} (known: {', '.join(sorted(fields))})"
        )
    hints = get_type_hints(cls)
    for name, value in values.items():
        if _is_group(fields[name]) and isinstance(value, dict):
            _check_names(hints[name], value, f"{source} {name}")


def build_settings(cls: type[T], values: dict[str, Any], source: str = "settings") -> T:
    """Construct ``cls`` from ``values``, rejecting unknown keys and wrongly typed values."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_names(cls, values, source)
    kwargs = {}
    for k, v in values.items():
        if not _is_group(fields[k]):
            kwargs[k] = _coerce(v, hints[k], k)
        elif isinstance(v, dict):
            kwargs[k] = build_settings(hints[k], v, source=f"{source} {k}")
        else:
            raise SettingsError(f"{source}: {k} must be a mapping of settings, got {_show_value(v)}")
    return cls(**kwargs)


def resolve_settings(
    cls: type[T],
    section: str,
    config: str | Path | None,
    flags: dict[str, Any],
    base: str | Path | None = None,
) -> T:
    """Defaults, then the ``section`` of a ``base`` settings file, of ``config``, then ``flags``
    (argparse's, a group's as ``<group>.<field>``)."""
    values: dict[str, Any] = {}
    for path in (p for p in (base, config) if p is not None):
        body = read_yaml_section(path, section)
        _check_names(cls, body, f"{path} [{section}]")  # an unknown key is named with its file
        _merge(values, body)
    _merge(values, nest_flags(flags))
    return build_settings(cls, values, source=f"{config or 'flags'} [{section}]")


def settings_to_dict(obj: Any) -> dict[str, Any]:
    """Plain, YAML-safe dict of a settings object (tuples become lists, groups mappings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return list(value) if isinstance(value, tuple) else value

    return plain(dataclasses.asdict(obj))


def save_settings(obj: Any, path: str | Path, section: str) -> None:
    """Write resolved settings as ``{section: {...}}`` YAML, loadable again with ``--config``.

    Fields marked ``saved=False`` are written with their default.
    """
    values = settings_to_dict(obj)
    for f in dataclasses.fields(obj):
        if not f.metadata.get("saved", True):
            values[f.name] = f.default
    write_text(path, yaml.safe_dump({section: values}, sort_keys=False))


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """Where a dataset stage runs its per-video tasks (``common.engine``); a base of its settings.

    A subclass that defines ``__post_init__`` calls ``super().__post_init__()``.
    """

    engine: Literal["local", "ray"] = setting(
        "local", "local: this machine's process pool; ray: Ray tasks/actors (a local Ray, or --address)"
    )
    address: str | None = setting(
        None, "with --engine ray: the cluster to join (auto, ray://head:10001); none starts a local Ray"
    )

    def __post_init__(self) -> None:
        if self.engine not in ("local", "ray"):
            raise SettingsError(f"engine must be local or ray, got {self.engine!r}")
        if self.address is not None and self.engine != "ray":
            raise SettingsError(f"address {self.address!r} needs --engine ray")
