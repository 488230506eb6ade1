"""One logging setup for every command; messages on rank 0 only."""

from __future__ import annotations

import logging
import os


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr; ranks other than 0 (``RANK`` set by torchrun) only log warnings."""
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if verbose else logging.INFO
    if rank != 0:
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def is_main_process() -> bool:
    """True on rank 0 (or when not distributed): the process that prints and writes summaries."""
    return int(os.environ.get("RANK", "0")) == 0
