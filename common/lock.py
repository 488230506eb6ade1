"""One writer per workspace: an advisory ``flock`` on ``<folder>/.luperson.lock``.

A stage that writes the dataset holds the root's lock exclusively for its whole run; a stage
that only reads it (``verify-shards``, ``pretrain`` reading the shards) holds it shared, so a
rebuild cannot change the shards under a training run. The kernel drops a ``flock`` when its
holder dies in any way (``kill -9`` included), so a dead holder's lock is free at once: there is
no stale-lock guessing. The file's text names the holders (stage, pid, host, start time) for
the message the next comer gets; it is advice only, the ``flock`` is the lock.

``flock`` is honoured across hosts on local disks and on NFSv4 (Linux emulates it with byte-range
locks); on other network filesystems run one writer per root yourself.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from common.errors import UsageError

LOCK_NAME = ".luperson.lock"
log = logging.getLogger(__name__)


def holder_line(stage: str) -> str:
    """``stage pid host start-time`` of this process, one line."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
    return f"{stage} pid={os.getpid()} host={socket.gethostname()} since={started}\n"


def _alive(line: str) -> bool:
    """False for a line of a process of this host that is gone (a reader's line outlives it)."""
    fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
    if fields.get("host") != socket.gethostname() or not fields.get("pid", "").isdigit():
        return True
    return Path(f"/proc/{fields['pid']}").exists()


def _holders(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip() and _alive(line)]
    return "; ".join(lines) or "another process"


def _open(path: Path, shared: bool) -> int | None:
    """The lock file's descriptor; None for a reader of a folder it cannot write (or that is absent)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if not shared:
            raise UsageError(f"{path.parent} is not writable ({e.strerror})") from None
        log.warning("%s: %s; reading it without a lock", path.parent, e.strerror)
        return None


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, stage: str, *, shared: bool = False) -> Iterator[Path]:
    """Hold ``<folder>/.luperson.lock`` (exclusive, or ``shared``) while the body runs.

    Raises ``UsageError`` at once, naming the holder, when another process holds it in a
    conflicting mode, or when a writer cannot create the lock file (a read-only folder); a
    reader of such a folder goes on without a lock. The lock is released when the body ends, however it ends.
    """
    path = Path(folder) / LOCK_NAME
    fd = _open(path, shared)
    if fd is None:
        yield path
        return
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"{folder} is in use by {_holders(fd)}: wait for it to finish, or use another --root"
            ) from None
        line = holder_line(stage).encode()
        if shared:  # readers add their line; the next exclusive holder starts the file anew
            os.lseek(fd, 0, os.SEEK_END)
        else:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, line)
        yield path
    finally:
        os.close(fd)  # closing the only descriptor releases the flock
