"""Unpickle files that come from outside (``dets.pkl``, ``keys.pkl``) without running their code.

A pickle can name any importable callable; this unpickler resolves only plain containers and
numbers from ``builtins`` and what numpy needs to rebuild arrays and scalars. Anything else
(``os.system``, ``builtins.eval``, a class of some package) raises ``pickle.UnpicklingError``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

ALLOWED_BUILTINS = frozenset(
    {
        "list",
        "dict",
        "tuple",
        "set",
        "frozenset",
        "int",
        "float",
        "complex",
        "str",
        "bytes",
        "bytearray",
        "bool",
    }
)
ALLOWED_NUMPY = frozenset({"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"})
# Errors a hostile or malformed pickle can raise while loading.
LOAD_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError)


class RestrictedUnpickler(pickle.Unpickler):
    """Loads builtins containers/numbers and numpy arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in ALLOWED_BUILTINS:
            return super().find_class("builtins", name)
        if module.split(".")[0] == "numpy" and name in ALLOWED_NUMPY:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load(path: str | Path) -> Any:
    """The object in ``path``; ``pickle.UnpicklingError`` (or another of ``LOAD_ERRORS``) if refused."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f).load()
