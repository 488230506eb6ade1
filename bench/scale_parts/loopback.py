"""A loopback stand-in for YouTube's search and downloads, for the ``videos`` part of ``bench/scale.py``.

``Catalog``: ``cities`` cities, each found by crawl's three query templates; the queries of a city
answer overlapping windows of its videos (so crawl's round robin meets repeats) with a live stream
now and then (skipped), ``per_city`` distinct downloadable ids in all; every 50th id answers 404.
``LoopbackServer`` (a thread of the bench) serves ``/search?q=&n=`` (the flat entries, as JSON),
``/robots.txt`` (crawl's reachability check) and ``/v/<id>.mp4``: the bytes of one of a few real
clips, chosen by the id. It counts the requests for videos and those answered whole (yt-dlp asks
twice per video: its extractor, then its downloader). Once ``stall`` is set (by hand, or by the
server itself when ``transfers`` reaches ``stall_at``) it sends only half of a video asked for
the second time and holds it: a kill then lands mid-download, a ``.part`` file half written.

YouTube's search cannot be pointed at another host, so the crawl whose search this serves runs
through this module, ``python -m bench.scale_parts.loopback BASE_URL crawl ...``: it answers
yt-dlp's ``ytsearchN:`` extraction from ``BASE_URL/search`` (a real HTTP request through yt-dlp's
own networking) and points crawl's reachability check at ``BASE_URL``; everything else is
``pipeline.py`` unchanged. Downloads need no such help: search entries carry loopback URLs.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import http.server
import json
import re
import sys
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

import collect.search

QUERIES = ("{city} streetview", "{city} street scene", "{city} walking tour")  # crawl's defaults
LIVE_EVERY, MISSING_EVERY = 97, 50


@dataclasses.dataclass(frozen=True)
class Catalog:
    cities: int
    per_city: int

    def city(self, c: int) -> str:
        return f"City{c:03d}"

    def video_id(self, c: int, j: int) -> str:
        """A YouTube-shaped id (11 characters of ``[A-Za-z0-9_-]``), the same on every run."""
        digest = hashlib.sha1(f"{c}/{j}".encode()).digest()
        return base64.urlsafe_b64encode(digest).decode()[:11]

    def missing(self, video_id: str) -> bool:
        """Every ``MISSING_EVERY``-th id (by hash) answers 404: videos removed since the search."""
        return int(hashlib.sha1(video_id.encode()).hexdigest()[:8], 16) % MISSING_EVERY == 0

    def query_index(self) -> dict[str, tuple[int, int]]:
        return {
            q.format(city=self.city(c)): (c, k) for c in range(self.cities) for k, q in enumerate(QUERIES)
        }

    def entries(self, c: int, k: int, n: int, base: str) -> list[dict]:
        """The first ``n`` flat results of query ``k`` of city ``c``: a window of its videos."""
        shift = self.per_city // len(QUERIES)
        out = []
        for j in range(k * shift, k * shift + min(n, self.per_city)):
            vid = self.video_id(c, j)
            live = j % LIVE_EVERY == LIVE_EVERY // 2
            out.append(
                {
                    "id": vid,
                    "url": f"{base}/v/{vid}.mp4",
                    "title": f"{self.city(c)} street walk {j}",
                    "channel": f"channel{j % 17}",
                    "duration": 4.16,
                    "live_status": "is_live" if live else "not_live",
                    "ie_key": "Generic",
                }
            )
        return out


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    """A folder's files served on loopback (``functools.partial(QuietFiles, directory=...)``): no
    log line per request, and a client that hangs up early (yt-dlp's probe does) is no error."""

    def log_message(self, *args) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()


class CountingFiles(QuietFiles):
    """``QuietFiles`` that counts the requests for each path in ``server.requests`` (a Counter)."""

    def do_GET(self) -> None:
        self.server.requests[self.path] += 1
        super().do_GET()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: LoopbackServer

    def log_message(self, *args) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # yt-dlp hangs up early
            super().handle()

    def _send(self, status: int, body: bytes, kind: str, head_only: bool = False, hold: bool = False) -> int:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head_only:
            return 0
        if hold:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.server.stalled += 1
            while self.server.stall.is_set():  # held until the kill; the client is gone by then
                time.sleep(0.05)
            return 0
        self.wfile.write(body)
        return len(body)

    def do_HEAD(self) -> None:
        self.do_GET(head_only=True)

    def do_GET(self, head_only: bool = False) -> None:
        url = urllib.parse.urlsplit(self.path)
        found = re.fullmatch(r"/v/([A-Za-z0-9_-]+)\.mp4", url.path)
        if url.path == "/robots.txt":
            self._send(200, b"User-agent: *\n", "text/plain", head_only)
        elif url.path == "/search":
            query = urllib.parse.parse_qs(url.query)
            c, k = self.server.queries[query["q"][0]]
            entries = self.server.catalog.entries(c, k, int(query["n"][0]), self.server.base)
            self._send(200, json.dumps({"entries": entries}).encode(), "application/json", head_only)
        elif found and not self.server.catalog.missing(found[1]):
            clips = self.server.clips
            pick = int(hashlib.sha1(found[1].encode()).hexdigest()[8:16], 16) % len(clips)
            with self.server.lock:
                self.server.requests += 1
                self.server.asked[found[1]] += 1
                hold = self.server.stall.is_set() and self.server.asked[found[1]] > 1  # the downloader's
            if self._send(200, clips[pick], "video/mp4", head_only, hold):
                with self.server.lock:
                    self.server.transfers += 1
                    if self.server.transfers >= self.server.stall_at:
                        self.server.stall.set()
        else:
            with self.server.lock:
                self.server.requests += found is not None
            self._send(404, b"not found", "text/plain", head_only)


class LoopbackServer(http.server.ThreadingHTTPServer):
    """The search and download server on 127.0.0.1 (see the module docstring); a context manager."""

    daemon_threads = True

    def __init__(self, catalog: Catalog, clips: list[Path]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.catalog, self.queries = catalog, catalog.query_index()
        self.clips = [p.read_bytes() for p in clips]
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        self.lock, self.requests, self.transfers, self.stalled = threading.Lock(), 0, 0, 0
        self.asked: Counter[str] = Counter()
        self.stall = threading.Event()
        self.stall_at = float("inf")
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stall_at = float("inf")
        self.stall.clear()
        self.shutdown()
        self.server_close()


def answer_searches(base: str) -> None:
    """Make this process's yt-dlp answer ``ytsearchN:<query>`` from ``base/search`` and crawl's
    reachability check ask ``base``; every other extraction is yt-dlp's own."""
    import yt_dlp

    original = yt_dlp.YoutubeDL.extract_info

    def extract_info(self, url, download=True, *args, **kwargs):
        found = re.fullmatch(r"ytsearch(\d+):(.*)", url, re.S)
        if not found:
            return original(self, url, download, *args, **kwargs)
        query = urllib.parse.urlencode({"q": found[2], "n": found[1]})
        reply = json.loads(self.urlopen(f"{base}/search?{query}").read())
        return {"_type": "playlist", "id": found[2], "entries": reply["entries"]}

    yt_dlp.YoutubeDL.extract_info = extract_info
    collect.search.YOUTUBE = base + "/"


if __name__ == "__main__":
    import pipeline

    answer_searches(sys.argv[1])
    sys.exit(pipeline.main(sys.argv[2:]))
