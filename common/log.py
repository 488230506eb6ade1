"""One logging setup for every command; messages on rank 0 only."""

from __future__ import annotations

import logging

from common.workspace import is_lock_holder


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr; ranks other than 0 (``RANK`` set by torchrun) only log warnings."""
    level = logging.DEBUG if verbose else logging.INFO
    if not is_lock_holder():
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
