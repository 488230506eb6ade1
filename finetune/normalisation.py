"""Which mean/std ``finetune`` and ``evaluate`` normalise with: the weights' own, unless told."""

from __future__ import annotations

import logging

from common.normalisation import Normalisation, named

log = logging.getLogger(__name__)
CHOICES = ("auto", "lup", "imagenet")


def choose_normalisation(choice: str, recorded: Normalisation | None, weights: str) -> Normalisation:
    """``choice`` (``--normalisation``) when not ``auto``; else what the weights record; else LUPerson's.

    Random weights have no training statistics and take LUPerson's (what fine-tuning from scratch
    uses); weights that record none (a bare state dict without ``backbone.json``) take LUPerson's
    with a warning.
    """
    if choice != "auto":
        norm = named(choice, f"--normalisation {choice}")
    elif recorded is not None:
        norm = recorded
    elif weights == "random":
        norm = named("lup", "LUPerson's (random init)")
    else:
        log.warning(
            "%s records no normalisation (no backbone.json beside it): LUPerson's mean/std assumed; "
            "pass --normalisation imagenet if it was trained with ImageNet's",
            weights,
        )
        norm = named("lup", "LUPerson's (assumed: the weights record none)")
    log.info("normalisation %s: mean %s std %s (%s)", norm.name, norm.mean, norm.std, norm.source)
    return norm
