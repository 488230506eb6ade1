"""Errors that mean "the user asked for something impossible", not "the program is broken"."""

import re
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class UsageError(Exception):
    """Bad input from the user: a missing path, a malformed file, an impossible setting.

    ``pipeline.py`` prints it as one line and exits with status 2, without a traceback.
    """


class SettingsError(UsageError, ValueError):
    """A settings value or YAML file that cannot be used."""


def require_path(path: str | None, what: str, *, is_dir: bool | None = None) -> Path:
    """Return ``path`` as a ``Path`` or raise ``UsageError`` naming ``what`` when it is missing."""
    if path is None or str(path) == "":
        raise UsageError(f"{what}: no path given")
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what}: {p} does not exist")
    if is_dir is True and not p.is_dir():
        raise UsageError(f"{what}: {p} is not a directory")
    if is_dir is False and not p.is_file():
        raise UsageError(f"{what}: {p} is not a file")
    return p


def one_line(text: str, limit: int = 300) -> str:
    """``text`` without colour codes, ``ERROR:`` prefixes and line breaks, at most ``limit`` chars."""
    text = ANSI.sub("", str(text))
    text = re.sub(r"^(ERROR|WARNING):\s*", "", text.strip())
    text = re.sub(r"\s*\(caused by .*\)\s*$", "", text, flags=re.S)  # yt-dlp repeats the cause
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
