"""One writer per workspace: an advisory ``flock`` on ``<folder>/.luperson.lock``.

A stage that writes the dataset holds the root's lock exclusively for its whole run; a stage
that only reads it (``verify-shards``, ``pretrain`` reading the shards) holds it shared, so a
rebuild cannot change the shards under a training run. The kernel drops a ``flock`` when its
holder dies in any way (``kill -9`` included), so a dead holder's lock is free at once: there is
no stale-lock guessing. The file's text names the holders (stage, pid, host, start time) for
the message the next comer gets; it is advice only, the ``flock`` is the lock.

A lock belongs to the process that took it, never to the children it forks: a ``flock`` is
held by the open file, which a forked child (a DataLoader worker) shares, so a child outliving a
killed holder would keep the lock. Forked children close the inherited descriptors at once
(``os.register_at_fork``); ``exec`` closes them anyway (``O_CLOEXEC``).

A command refused as bad input (``UsageError``) removes the lock file it created, holding it
exclusively when it does so; whoever takes a lock checks afterwards that the path still names the
file it locked, and opens it anew when a refused command removed it in between.

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
_held: set[int] = set()  # descriptors of the locks this process holds


def _close_inherited() -> None:
    """In a forked child: close the parent's lock descriptors (closing, unlike LOCK_UN, leaves
    the parent's lock alone)."""
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_inherited)


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


def _open(path: Path, shared: bool) -> tuple[int, bool] | None:
    """The lock file's descriptor and whether this call created the file; None for a reader of a
    folder it cannot write (or that is absent)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
    try:
        try:
            return os.open(path, flags | os.O_EXCL, 0o644), True
        except FileExistsError:
            return os.open(path, flags, 0o644), False
    except OSError as e:
        if not shared:
            raise UsageError(f"{path.parent} is not writable ({e.strerror})") from None
        log.warning("%s: %s; reading it without a lock", path.parent, e.strerror)
        return None


def _still_named(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a refused command may have removed it)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def _acquire(path: Path, shared: bool) -> tuple[int, bool] | None:
    """``flock`` the lock file (``_open``'s answer); ``UsageError`` naming the holder when taken."""
    while True:
        opened = _open(path, shared)
        if opened is None:
            return None
        fd, created = opened
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holders = _holders(fd)
            os.close(fd)
            raise UsageError(
                f"{path.parent} is in use by {holders}: wait for it to finish, or use another --root"
            ) from None
        if _still_named(fd, path):
            return fd, created
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, stage: str, *, shared: bool = False) -> Iterator[Path]:
    """Hold ``<folder>/.luperson.lock`` (exclusive, or ``shared``) while the body runs.

    Raises ``UsageError`` at once, naming the holder, when another process holds it in a
    conflicting mode, or when a writer cannot create the lock file (a read-only folder); a
    reader of such a folder goes on without a lock. The lock is released when the body ends,
    however it ends; a body that raises ``UsageError`` also removes the lock file when this call
    created it and no one else holds it.
    """
    path = Path(folder) / LOCK_NAME
    acquired = _acquire(path, shared)
    if acquired is None:
        yield path
        return
    fd, created = acquired
    owner = os.getpid()
    _held.add(fd)
    refused = False
    try:
        line = holder_line(stage).encode()
        if shared:  # readers add their line; the next exclusive holder starts the file anew
            os.lseek(fd, 0, os.SEEK_END)
        else:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, line)
        yield path
    except UsageError:
        refused = True
        raise
    finally:
        if os.getpid() == owner:  # not in a forked child that unwinds this frame
            if refused and created:
                _remove_if_alone(fd, path)
            _held.discard(fd)
            os.close(fd)  # closing the only descriptor releases the flock


def _remove_if_alone(fd: int, path: Path) -> None:
    """Remove the lock file while holding it exclusively (never under another holder)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    if _still_named(fd, path):
        path.unlink(missing_ok=True)
