"""Torch files: loaded without running code (``weights_only=True``, no fallback), saved with
the same bytes for the same tensors.

Every command that reads a checkpoint or weights file a user hands in (``finetune --init``,
``evaluate --weights``, ``detect --pose-weights``, a ``pretrain`` resume) goes through
``load_tensors_only``, so a pickle payload is refused with one line naming the file, and a file
that is no torch file at all (``/etc/passwd``, flipped bytes) is one line too, whatever the
unpickler trips over.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from common.errors import UsageError

# What torch's weights-only unpickler says of a class or function it will not build (a payload);
# of garbage it says "Unsupported operand", "String is too long", ... or raises anything at all.
PAYLOAD = re.compile(r"GLOBAL|reduce for unrecognized function|Can only (create new object|build)")


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
        if "weights only" in str(e).lower() and PAYLOAD.search(str(e)):
            raise UsageError(
                f"{what}: {path} pickles objects besides tensors and plain values: refused (loading "
                "it could run code); re-save its state dict where you trust it"
            ) from None
        raise NotATorchFile(
            f"{what}: {path} is not a torch file ({type(e).__name__})", type(e).__name__
        ) from None
    except Exception as e:  # the unpickler of bytes that are no pickle raises IndexError, KeyError, ...
        raise NotATorchFile(
            f"{what}: {path} is not a torch file ({type(e).__name__})", type(e).__name__
        ) from None


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save`` through an open file, so the archive's inner folder is always ``archive``:
    saved to a path, torch names it after the file (a temporary name with a pid in it), and equal
    tensors would give different bytes and sha256."""
    import torch

    with open(path, "wb") as f:
        torch.save(obj, f)
