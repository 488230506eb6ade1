"""How long a local HTML page takes to load in headless Chromium, from the page's own timing.

Starts ``chromium --headless`` with a fresh, empty profile and talks to it over
``--remote-debugging-pipe`` (the DevTools protocol as NUL-terminated JSON on file descriptors 3
and 4: no port, no websocket library). It opens one tab, navigates to the page, waits for its
``load`` event and reads the navigation timing (``domContentLoadedEventEnd``, ``loadEventEnd``,
milliseconds from the start of the navigation), the first contentful paint, and DevTools'
``Performance.getMetrics`` (DOM nodes, layout and style time, JS heap). Part ``report`` of
``bench/scale.py`` runs it through ``run_measured``, so the browser's whole process tree is in
the peak memory.

    python -m bench.scale_parts.page_load luperson_data/report.html --out /tmp/load.json
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STAMP_TIMEOUT_S = 30
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)
TIMING = """JSON.stringify({
  nav: performance.getEntriesByType("navigation")[0].toJSON(),
  paint: performance.getEntriesByType("paint").map(p => [p.name, p.startTime]),
})"""


def browser() -> str | None:
    """The Chromium executable on the PATH, or ``None``."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


class DevTools:
    """One DevTools connection over the pipe: ``call`` a method, ``wait`` for an event."""

    def __init__(self, to_browser: int, from_browser: int, timeout_s: float) -> None:
        self.write, self.read = os.fdopen(to_browser, "wb"), os.fdopen(from_browser, "rb")
        self.timeout_s, self.next_id, self.buffer = timeout_s, 0, b""
        self.events: list[dict[str, Any]] = []

    def _message(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read], [], [], left)[0]:
                raise TimeoutError(f"chromium sent nothing for {self.timeout_s} s")
            chunk = os.read(self.read.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.write.write(json.dumps(message).encode() + b"\0")
        self.write.flush()
        while True:
            reply = self._message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            self.events.append(self._message())
        raise TimeoutError(f"no {method} within {self.timeout_s} s")


def _onto_3_and_4(browser_reads: int, browser_writes: int) -> None:
    """In the child: the pipe ends on fds 3 and 4, where ``--remote-debugging-pipe`` looks.
    Both are first copied above 10, so that neither ``dup2`` overwrites the other's source."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (browser_reads, browser_writes)]
    os.dup2(high[0], 3)
    os.dup2(high[1], 4)


def load(page: Path, executable: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """Load ``page`` once in a fresh headless Chromium; its timings (module doc)."""
    browser_reads, we_write = os.pipe()
    we_read, browser_writes = os.pipe()
    with tempfile.TemporaryDirectory(prefix="page-load-") as profile:
        argv = [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        child = subprocess.Popen(
            argv,
            pass_fds=(3, 4),
            preexec_fn=lambda: _onto_3_and_4(browser_reads, browser_writes),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(browser_reads)
        os.close(browser_writes)
        tools = DevTools(we_write, we_read, timeout_s)
        try:
            return _measure(tools, page)
        finally:
            try:
                tools.call("Browser.close")
            except (RuntimeError, OSError):
                child.kill()
            child.wait(timeout=30)


def _measure(tools: DevTools, page: Path) -> dict[str, Any]:
    target = tools.call("Target.createTarget", url="about:blank")["targetId"]
    session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Performance"):
        tools.call(f"{domain}.enable", session)
    start = time.monotonic()
    tools.call("Page.navigate", session, url=page.resolve().as_uri())
    tools.wait("Page.loadEventFired")
    wall = time.monotonic() - start
    # loadEventEnd is stamped after the load handlers return: read until it is (a fixed 0.2 s
    # wait reads 0 whenever the stamp comes later, as it may on a loaded machine)
    deadline = time.monotonic() + STAMP_TIMEOUT_S
    while True:
        value = tools.call("Runtime.evaluate", session, expression=TIMING, returnByValue=True)
        timing = json.loads(value["result"]["value"])
        if timing["nav"]["loadEventEnd"] > 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"loadEventEnd not stamped {STAMP_TIMEOUT_S} s after the load event")
        time.sleep(0.05)
    metrics = {m["name"]: m["value"] for m in tools.call("Performance.getMetrics", session)["metrics"]}
    nav = timing["nav"]
    return {
        "page": str(page),
        "bytes": page.stat().st_size,
        "dom_content_loaded_ms": round(nav["domContentLoadedEventEnd"], 1),
        "load_event_end_ms": round(nav["loadEventEnd"], 1),
        "first_contentful_paint_ms": dict(timing["paint"]).get("first-contentful-paint"),
        "navigate_to_load_s": round(wall, 3),
        "nodes": int(metrics.get("Nodes", 0)),
        "layout_s": round(metrics.get("LayoutDuration", 0.0), 3),
        "style_s": round(metrics.get("RecalcStyleDuration", 0.0), 3),
        "js_heap_used_mib": round(metrics.get("JSHeapUsedSize", 0) / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("page", type=Path)
    p.add_argument("--out", type=Path, required=True, help="where the timings go (JSON)")
    p.add_argument("--timeout-s", type=float, default=300.0)
    args = p.parse_args(argv)
    executable = browser()
    if executable is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    result = load(args.page, executable, args.timeout_s)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
