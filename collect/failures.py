"""Map a yt-dlp failure to a status code and a one-line reason.

Statuses: ``ok``, ``unavailable``, ``private``, ``rate_limited``, ``too_large``, ``not_found``
(HTTP 404/410), ``error`` (anything else, network failures included). Transient statuses are
retried on the next run; permanent ones are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from common.errors import one_line
from common.manifests.videos import OK, PENDING, RETRY_ON_RERUN, STATUSES

__all__ = ["OK", "PENDING", "RETRY_ON_RERUN", "STATUSES", "classify", "classify_message", "one_line"]

# Checked in order; the first match wins. YouTube's wording, as yt-dlp reports it.
PATTERNS: tuple[tuple[str, re.Pattern], ...] = (
    ("error", re.compile(r"requested format is not available", re.I)),
    ("private", re.compile(r"private video|video is private", re.I)),
    ("rate_limited", re.compile(r"not a bot|too many requests|\b429\b|rate.?limit", re.I)),
    ("too_large", re.compile(r"larger than max-filesize", re.I)),
    ("not_found", re.compile(r"\b(404|410)\b")),
    (
        "unavailable",
        re.compile(
            r"unavailable|not available|has been removed|been terminated|no longer available"
            r"|members.only|join this channel|confirm your age|age.restricted|premieres in|live event will begin"
            r"|copyright",
            re.I,
        ),
    ),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it (yt-dlp's ``exc_info``/``cause`` and Python's)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        exc_info = getattr(e, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1 and isinstance(exc_info[1], BaseException):
            todo.append(exc_info[1])
        for attr in ("cause", "__cause__", "__context__"):
            nxt = getattr(e, attr, None)
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the first HTTP error behind ``exc``, if any."""
    for e in _chain(exc):
        status = getattr(e, "status", None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
        code = getattr(e, "code", None)
        if isinstance(code, int) and 100 <= code < 600:
            return code
    return None


def is_network_error(exc: BaseException) -> bool:
    """True when ``exc`` comes from a connection that failed (DNS, refused, timeout), not from a reply."""
    if http_status(exc) is not None:
        return False
    for e in _chain(exc):
        if type(e).__name__ in (
            "TransportError",
            "ProxyError",
            "SSLError",
            "TimeoutError",
            "NameResolutionError",
        ):
            return True
        if isinstance(e, ConnectionError | TimeoutError):
            return True
    return False


def classify_message(message: str) -> str:
    """The status a yt-dlp error message stands for (``error`` when nothing matches)."""
    for status, pattern in PATTERNS:
        if pattern.search(message):
            return status
    return "error"


def classify(exc: BaseException) -> tuple[str, str]:
    """(status, reason) for an exception raised by a yt-dlp download."""
    reason = one_line(str(exc))
    status = http_status(exc)
    if status in (404, 410):
        return "not_found", reason
    if status == 429:
        return "rate_limited", reason
    if is_network_error(exc):
        return "error", "network: " + reason
    return classify_message(reason), reason
