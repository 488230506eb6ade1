"""Files of a run that must survive kills, full disks and bit rot.

* ``write_checked(path, save)``: ``save(tmp)`` writes a temporary sibling; its sha256 goes to
  ``<path>.sha256`` (``sha256sum -c`` format) *before* the temporary is renamed onto ``path``, so
  a file that exists always has its checksum beside it. A failed write (a full disk: ``OSError``
  or the ``RuntimeError`` of torch's C++ writer) ends in one ``UsageError`` line; a write cut
  short before the rename (Ctrl-C included) puts the sidecar back as it was.
* ``checked_digest(path)``: the sha256 of ``path`` when it equals its sidecar, else ``Damaged``.
* ``remove_stale_temporaries``: the ``.NAME.PID.tmp`` files (``common.atomic``) a killed
  process left behind, only for names this stage writes and pids that are gone, and the
  sidecars whose file is gone (a ``kill -9`` between the sidecar and the rename).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from common.atomic import atomic_path, write_text
from common.errors import UsageError

log = logging.getLogger(__name__)
SUFFIX = ".sha256"
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class Damaged(Exception):
    """A file whose bytes are not the ones that were written (or whose checksum is gone)."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sidecar(path: Path) -> Path:
    """``<path>.sha256``."""
    return path.with_name(path.name + SUFFIX)


def write_failure(path: Path, e: BaseException) -> UsageError:
    """One line for a write that failed, with the free space of the disk it went to."""
    if isinstance(e, OSError) and e.strerror:
        reason = e.strerror
    else:  # torch's C++ writer: "[enforce fail at inline_container.cc:672] . unexpected pos ..."
        lines = str(e).strip().splitlines() or [type(e).__name__]
        reason = "torch.save: " + re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", lines[-1])[-120:]
    try:
        free = f"; {shutil.disk_usage(path.parent).free // 2**20} MiB free there"
    except OSError:
        free = ""
    return UsageError(f"cannot write {path} ({reason}{free})")


def write_checked(path: Path, save: Callable[[Path], None]) -> str:
    """Write ``path`` atomically through ``save(tmp)`` with its sha256 sidecar; the hex digest."""
    side = sidecar(path)
    try:
        before = side.read_bytes()
    except FileNotFoundError:
        before = None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # common.atomic's temporary name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(tmp)
        digest = sha256_file(tmp)
        with open(tmp, "rb") as f:  # data reaches the disk before the name does
            os.fsync(f.fileno())
        write_text(side, f"{digest}  {path.name}\n")
        os.replace(tmp, path)
    except BaseException as e:
        if tmp.exists():  # not renamed: the sidecar goes back to describing what ``path`` holds
            _put_back(side, before)
        if isinstance(e, (OSError, RuntimeError)):  # RuntimeError: torch's C++ writer, disk full
            raise write_failure(path, e) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def _put_back(side: Path, before: bytes | None) -> None:
    """Restore a sidecar to ``before`` (None: it did not exist)."""
    if before is None:
        side.unlink(missing_ok=True)
        return
    with atomic_path(side) as tmp:
        tmp.write_bytes(before)


def recorded_digest(path: Path) -> str | None:
    """The sha256 written beside ``path``, or None."""
    try:
        fields = sidecar(path).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    return fields[0] if fields and re.fullmatch(r"[0-9a-f]{64}", fields[0]) else None


def checked_digest(path: Path) -> str:
    """The sha256 of ``path``; ``Damaged`` when it differs from its sidecar or has none."""
    want = recorded_digest(path)
    if want is None:
        raise Damaged(f"no readable {sidecar(path).name}")
    try:
        got = sha256_file(path)
    except OSError as e:
        raise Damaged(f"unreadable: {e.strerror}") from None
    if got != want:
        raise Damaged(f"sha256 {got[:12]}... differs from {sidecar(path).name} ({want[:12]}...)")
    return got


def _gone(pid: int) -> bool:
    """True when no process ``pid`` runs here (our own pid: a predecessor's, we wrote nothing yet)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale_temporaries(folder: Path, names: re.Pattern[str]) -> list[Path]:
    """Delete ``.NAME.PID.tmp`` files in ``folder`` whose NAME matches ``names`` and whose
    writer is gone, and ``NAME.sha256`` sidecars whose file NAME is gone; call before this
    process writes there. The removed paths."""
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        m = TEMPORARY.match(p.name)
        stale = m and names.fullmatch(m["name"]) and _gone(int(m["pid"]))
        orphan = p.name.endswith(SUFFIX) and names.fullmatch(p.name) and not p.with_suffix("").exists()
        if (stale or orphan) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.info("removed %d temporary file(s) of killed writes in %s", len(removed), folder)
    return removed
