"""export-lmdb's output folder: it takes only a folder that is new, empty or its own.

The first thing an export writes into ``--output`` is the marker ``.luperson-export``; a folder is
taken when the marker is there and nothing else than what an export writes (``OWN_FILES``, the
database folders ``OWN_DIRS`` holding ``DATABASE_FILES``, and the ``TEMPORARY`` names of a write cut
short, which are removed). Anything else (the official release downloaded there, ``--root``
itself) is refused with one line before a byte changes: export-lmdb never deletes or replaces what
it did not write.
"""

from __future__ import annotations

import re
from pathlib import Path

from common.errors import UsageError

MARKER = ".luperson-export"
OWN_FILES = (MARKER, "keys.pkl", "keys.parquet", "export.json")
OWN_DIRS = ("lmdb", ".lmdb.tmp")
DATABASE_FILES = ("data.mdb", "lock.mdb")
TEMPORARY = re.compile(r"\.(keys\.pkl|keys\.parquet|export\.json)\.[0-9]+\.tmp")  # common.atomic's


def _plain_file(path: Path, own_name: bool) -> bool:
    return own_name and path.is_file() and not path.is_symlink()


def foreign(out: Path) -> list[str]:
    """What in ``out`` export-lmdb did not write: any name but its own files, folders, database
    files and temporaries, and any of those that is a link or of the wrong kind."""
    found = []
    for entry in sorted(out.iterdir()):
        if entry.name in OWN_DIRS and entry.is_dir() and not entry.is_symlink():
            inside = sorted(entry.iterdir())
            found += [
                f"{entry.name}/{p.name}" for p in inside if not _plain_file(p, p.name in DATABASE_FILES)
            ]
        elif not _plain_file(entry, entry.name in OWN_FILES or bool(TEMPORARY.fullmatch(entry.name))):
            found.append(entry.name)
    return found


def claim(out: Path) -> None:
    """Make ``out`` export-lmdb's (the marker first), or refuse it with one line, changing nothing.

    A new or empty folder is claimed; a marked one is taken when it holds nothing else than what
    an export writes, and the temporaries of a killed export are removed.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out} is a file, not a folder")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held:
        other = foreign(out) if MARKER in held else held
        if MARKER not in held or other:
            shown = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
            raise UsageError(
                f"{out} holds what export-lmdb did not write ({shown}); nothing was changed: "
                "name a new or empty folder with --output, or move them away"
            )
        for name in held:
            if TEMPORARY.fullmatch(name):
                (out / name).unlink()
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / MARKER, "x") as f:  # a kill after this leaves a folder the next run takes
            f.write("made by `python pipeline.py export-lmdb`, which replaces what it wrote here\n")
    except OSError as e:
        raise UsageError(f"--output {out} cannot be written ({e.strerror})") from None
