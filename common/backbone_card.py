"""``backbone.json``: what a pre-trained ``backbone.pth`` is, written beside it by ``pretrain``.

It holds the architecture, input size, normalisation (mean/std), preset, every augmentation
switch, temperature, epochs, steps, samples seen, a fingerprint of the shards and the project
commit. ``finetune`` and ``evaluate`` normalise with its mean/std; a state dict without a card
keeps LUPerson's statistics, with a warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from common.atomic import write_json
from common.errors import UsageError
from common.normalisation import Normalisation, from_record

log = logging.getLogger(__name__)
MAX_BYTES = 1 << 20


def card_path(weights: str | Path) -> Path:
    """``runs/x/backbone.pth`` -> ``runs/x/backbone.json``."""
    return Path(weights).with_suffix(".json")


def write_card(weights: str | Path, card: dict[str, Any]) -> Path:
    """Write ``card`` beside ``weights`` (atomically)."""
    path = card_path(weights)
    write_json(path, card)
    return path


def read_card(weights: str | Path) -> dict[str, Any] | None:
    """The card beside ``weights``, or None when there is none; ``UsageError`` when it is unusable."""
    path = card_path(weights)
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_BYTES:
        raise UsageError(f"{path}: larger than 1 MiB, not a backbone card")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"{path}: not a JSON backbone card ({type(e).__name__})") from None
    if not isinstance(card, dict):
        raise UsageError(f"{path}: not a JSON object")
    return card


def card_normalisation(weights: str | Path) -> Normalisation | None:
    """The mean/std the card beside ``weights`` records, or None without a card."""
    card = read_card(weights)
    if card is None:
        return None
    return from_record(card, str(card_path(weights)))
