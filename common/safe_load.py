"""Load a torch file without running code: ``weights_only=True``, and no fallback.

Every command that reads a checkpoint or weights file a user hands in (``finetune --init``,
``evaluate --weights``, ``detect --pose-weights``, a ``pretrain`` resume) goes through
``load_tensors_only``, so a pickle payload is refused with one line naming the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from common.errors import UsageError


class NotATorchFile(UsageError):
    """The file does not load as a torch file at all (truncated, flipped bytes, another format)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # the loader's exception class name


def load_tensors_only(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU.

    Raises ``UsageError`` naming ``what`` and the file when it pickles objects besides tensors
    and plain values, and ``NotATorchFile`` when it does not load.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower():
            raise UsageError(
                f"{what}: {path} pickles objects besides tensors and plain values: refused (loading "
                "it could run code); re-save its state dict where you trust it"
            ) from None
        raise NotATorchFile(
            f"{what}: {path} is not a torch file ({type(e).__name__})", type(e).__name__
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise NotATorchFile(
            f"{what}: {path} is not a torch file ({type(e).__name__})", type(e).__name__
        ) from None
