"""Which shards pre-training reads: the ones ``index.parquet`` lists, checked against it.

``--shards`` (default ``<root>/shards``) is

* a folder: its ``index.parquet`` (``common.manifests.shard_index``) is the list. Every listed tar must be
  there with its recorded size; a ``.tar`` the index does not list is not trained on.
* one ``.tar`` or a brace pattern (``dir/lup-{000000..000009}.tar``): the named files. When an
  ``index.parquet`` lies beside them, each must be listed there and is checked like the above;
  without one they are used unchecked (a warning says so).

Sizes are checked whenever the list is made (cheap, every process); ``verify_shards`` checks
every listed tar's sha256 once before training starts (one read of the shards). The list records
each tar's identity then (device, inode, size, modification time), and every later open
(``ShardList.open``, at each resampled draw) compares the open file's ``fstat`` with it: a tar
removed, replaced or rewritten during the run ends it (``ShardChanged``) instead of being skipped
or read unchecked. ``pretrain`` also holds the shared lock of the root the shards belong to
(``shard_roots``), so a ``build-shards`` there waits for the run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from common.errors import UsageError
from common.manifests.shard_index import INDEX_NAME, read_shard_index
from pretrain.tarstream import BUFFER, ShardChanged

log = logging.getLogger(__name__)
Stamp = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns: which file, which version
RERUN = "rerun pretrain once the shards are settled (it resumes from its last checkpoint)"


def stamp_of(st: os.stat_result) -> Stamp:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class ShardList:
    """The tars to train on, their sample count, the sha256 the index records for each, and the
    identity (``Stamp``) of each file when the list was made."""

    urls: list[str]
    samples: int
    sha256: dict[str, str] = field(default_factory=dict)  # url -> hex; unindexed tars absent
    stamps: dict[str, Stamp] = field(default_factory=dict)

    def open(self, url: str) -> BinaryIO:
        """``url`` open for reading, while it is the file the list was made of; else ``ShardChanged``.

        One ``fstat`` of the open file, not a re-hash (that would read every tar twice): a new
        inode (a swap, a copy) or another size or mtime (rewritten in place) is another file.
        """
        try:
            f = open(url, "rb", buffering=BUFFER)  # noqa: SIM115  (the caller closes it)
        except FileNotFoundError:
            raise ShardChanged(f"shards: {url} was removed during the run: {RERUN}") from None
        want, got = self.stamps.get(url), stamp_of(os.fstat(f.fileno()))
        if want is not None and got != want:
            f.close()
            what = "replaced by another file" if got[:2] != want[:2] else "rewritten"
            raise ShardChanged(f"shards: {url} was {what} during the run: {RERUN}")
        return f

    def fingerprint(self) -> str:
        """sha256 over every shard's name and recorded sha256 (its size when unindexed), in order."""
        lines = []
        for url in self.urls:
            digest = self.sha256.get(url) or f"size={Path(url).stat().st_size}"
            lines.append(f"{Path(url).name} {digest}\n")
        return hashlib.sha256("".join(lines).encode()).hexdigest()


def _listed(folder: Path, names: list[str] | None) -> tuple[list[str], int, dict[str, str]]:
    """Urls, samples and hashes of ``names`` (None: every row) of ``folder``'s index, size-checked."""
    index = read_shard_index(folder)
    rows = {str(r.shard): r for r in index.itertuples(index=False)}
    where = folder / INDEX_NAME
    if names is None:
        names = list(rows)
        unlisted = sorted(p.name for p in folder.glob("*.tar") if p.name not in rows)
        if unlisted:
            log.warning(
                "%d .tar file(s) in %s are not in %s (%s, ...): not trained on",
                len(unlisted),
                folder,
                INDEX_NAME,
                unlisted[0],
            )
    urls, samples, hashes = [], 0, {}
    for name in names:
        if name not in rows:
            raise UsageError(f"shards: {folder / name} is not listed in {where}: not trained on")
        path = folder / name
        if not path.is_file():
            raise UsageError(f"shards: {path}, listed in {where}, is missing: rerun build-shards")
        size, want = path.stat().st_size, int(rows[name].bytes)
        if size != want:
            raise UsageError(f"shards: {path} is {size} bytes, {where} says {want}: rerun build-shards")
        urls.append(str(path))
        samples += int(rows[name].n_samples)
        hashes[str(path)] = str(rows[name].sha256)
    return urls, samples, hashes


def _stamped(urls: list[str], samples: int, hashes: dict[str, str]) -> ShardList:
    """The list, with each tar's identity now (before ``verify_shards`` hashes those files)."""
    stamps = {}
    for url in urls:
        try:
            stamps[url] = stamp_of(os.stat(url))
        except OSError as e:
            raise UsageError(f"shards: {url} cannot be read ({e.strerror})") from None
    return ShardList(urls, samples, hashes, stamps)


def shard_roots(cfg: Any, root: Path) -> list[Path]:
    """The workspaces whose shards ``cfg.shards`` names: the folder holding each shard folder
    (build-shards writes ``<root>/shards``); ``stages`` holds them shared while pretrain runs."""
    spec = cfg.shards or str(Path(root) / "shards")
    path = Path(spec)
    if path.is_dir():
        folders = {path}
    elif "{" in spec:
        import webdataset as wds

        folders = {Path(u).parent for u in wds.shardlists.expand_urls(spec) if Path(u).is_file()}
    else:
        folders = {path.parent} if path.is_file() else set()
    return sorted({f.resolve().parent for f in folders})


def shard_list(spec: str | None, root: Path) -> ShardList:
    """The shards ``spec`` names (see the module doc); ``UsageError`` when unusable."""
    from pretrain.data import count_samples

    spec = spec if spec else str(Path(root) / "shards")
    path = Path(spec)
    if path.is_dir():
        urls, samples, hashes = _listed(path, None)
        if not urls:
            raise UsageError(f"shards: {path / INDEX_NAME} lists no shards")
        return _stamped(urls, samples, hashes)
    if "{" in spec:
        import webdataset as wds

        named = [Path(u) for u in wds.shardlists.expand_urls(spec) if Path(u).is_file()]
    elif path.is_file():
        named = [path]
    else:
        raise UsageError(f"shards: {spec} does not exist (run build-shards first or pass --shards)")
    if not named:
        raise UsageError(f"shards: no .tar shards found in {spec}")
    by_folder: dict[Path, list[str]] = defaultdict(list)
    for p in named:
        by_folder[p.parent].append(p.name)
    urls, samples, hashes = [], 0, {}
    for folder, names in by_folder.items():
        if (folder / INDEX_NAME).is_file():
            got = _listed(folder, names)
            urls += got[0]
            samples += got[1]
            hashes.update(got[2])
        else:
            log.warning("no %s beside %s: its %d shard(s) are not checked", INDEX_NAME, folder, len(names))
            unchecked = [str(folder / n) for n in names]
            urls += unchecked
            samples += count_samples(unchecked)
    return _stamped(urls, samples, hashes)


def verify_shards(shards: ShardList) -> None:
    """``UsageError`` naming the first tar whose sha256 differs from its index row."""
    if not shards.sha256:
        return
    start, size = time.perf_counter(), 0
    log.info("checking the sha256 of %d shard(s) against %s", len(shards.sha256), INDEX_NAME)
    for url, want in shards.sha256.items():
        try:
            with shards.open(url) as f:  # the very file the list was made of
                got = hashlib.file_digest(f, "sha256").hexdigest()
            size += shards.stamps[url][2]
        except OSError as e:
            raise UsageError(f"shards: {url} cannot be read ({e.strerror})") from None
        if got != want:
            raise UsageError(
                f"shards: {url} does not match {Path(url).parent / INDEX_NAME} (sha256 {got[:12]}... "
                f"!= {want[:12]}...): rebuild it with build-shards"
            )
    log.info("shards match their index (%.1f GB in %.1f s)", size / 1e9, time.perf_counter() - start)
