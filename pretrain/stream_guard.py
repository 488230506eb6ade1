"""End a resampled shard stream that can never yield a batch, instead of warning forever.

A slot's stream draws its shards with replacement without end, so a bad shard is skipped and
another drawn. When *every* shard of the slot is bad that loop never ends; ``StreamGuard`` ends
it with ``UnreadableShards`` (one line) when

* every shard of the slot has been opened and none yielded a single sample (unreadable tars), or
* no image has decoded yet, every shard has been opened, and ``UNDECODABLE_LIMIT`` samples in a
  row had no decodable ``.jpg`` (tars of something else).

A slot with at least one good shard (or image) never trips it.

A shard that is removed or replaced while the run reads it is not skipped like an unreadable
one: ``ShardChanged`` (raised where the tar is opened, ``shardlist.ShardList.open``) ends the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from common.errors import UsageError

log = logging.getLogger(__name__)
UNDECODABLE_LIMIT = 100


class StreamStopped(UsageError):
    """The shard stream cannot go on: one line for the user, from a loader worker or not."""


class UnreadableShards(StreamStopped):
    """No shard of a loader slot yields anything to train on."""


class ShardChanged(StreamStopped):
    """A shard is gone or is no longer the file that was checked before training."""


def one_line(e: BaseException) -> str:
    """The stream's own message, also when a DataLoader worker re-raised it with a traceback."""
    text = str(e)
    marker = f"{type(e).__name__}: "
    if marker in text:
        text = text.rsplit(marker, 1)[1]
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def _url_of(exn: BaseException) -> str:
    """The shard webdataset appends to the arguments of a read error."""
    for arg in reversed(getattr(exn, "args", ())):
        if isinstance(arg, str) and arg.endswith(".tar"):
            return arg
    return "?"


class StreamGuard:
    """Watches one slot's shard urls, samples and decoded images (see the module doc)."""

    def __init__(self, urls: Iterable[str]):
        self.urls = set(urls)
        self.opened: set[str] = set()
        self.read: set[str] = set()
        self.failed: dict[str, str] = {}
        self.decoded = 0
        self.undecodable = 0

    def _stuck(self, what: str) -> UnreadableShards:
        some = sorted(self.urls)[:2]
        why = next(iter(self.failed.values()), "")
        names = ", ".join(some) + (", ..." if len(self.urls) > 2 else "")
        return UnreadableShards(
            f"none of the {len(self.urls)} shard(s) {names} {what}{f' ({why})' if why else ''}: "
            "check them with verify-shards"
        )

    def urls_of(self, shards: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pass the resampled shard urls on; stop once all were opened and none gave a sample."""
        for item in shards:
            if not self.read and self.opened >= self.urls:
                raise self._stuck("yields a sample")
            self.opened.add(item["url"])
            yield item

    def samples_of(self, samples: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pass the tar samples on, noting the shard each came from."""
        for sample in samples:
            self.read.add(sample.get("__url__", "?"))
            yield sample

    def handler(self, exn: BaseException) -> bool:
        """webdataset's error handler: log a shard's first error, skip it, go on."""
        url = _url_of(exn)
        if url not in self.failed:
            log.warning("shard %s unreadable (%s): skipped", url, repr(exn)[:200])
        self.failed[url] = type(exn).__name__
        return True

    def image(self, ok: bool) -> None:
        """Count a decoded (``ok``) or undecodable sample; raise when nothing ever decodes."""
        if ok:
            self.decoded += 1
            self.undecodable = 0
            return
        self.undecodable += 1
        if not self.decoded and self.undecodable >= UNDECODABLE_LIMIT and self.opened >= self.urls:
            raise self._stuck(f"holds a decodable .jpg in {self.undecodable} samples")
