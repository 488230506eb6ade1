"""Unpickle files that come from outside (``dets.pkl``, ``keys.pkl``): no code runs, no stated size
is allocated, and nothing is nested deeper than a reader can walk.

Code: the unpickler resolves only plain containers and numbers from ``builtins`` and what numpy
needs to rebuild arrays and scalars. Anything else (``os.system``, ``builtins.eval``, a class of
some package, another numpy module) raises ``pickle.UnpicklingError``.

Memory: a pickle states sizes, and CPython's unpickler (3.11) allocates some of them before it
reads the data: a 20-byte file whose ``BINBYTES8`` opcode states 2**62 bytes is a ``MemoryError``.
So before unpickling, every opcode's length field is checked against the bytes left in the file
(:func:`check_lengths`). The allowed callables allocate what their arguments ask
(``bytes(2**62)``, ``numpy.ndarray((2**40,))``), so they refuse a size argument and charge what
they build to a budget of ``BUDGET`` elements or bytes per byte of the file; numpy arrays are
rebuilt as :class:`CheckedArray`, whose state is checked against its data before numpy allocates
the stated shape (numpy's own ``__setstate__`` allocates first, and crashes on an object list
shorter than the shape).

Nesting: the loaded object is walked without recursion (:func:`check_nesting`). Containers more
than ``MAX_DEPTH`` deep, a container inside itself, or more items than the file holds (the
"billion laughs" of shared references, counted at each reference) are refused, so the readers'
recursive code (``repr``, JSON, ``dets_input.plain``) neither overflows the stack nor expands
without end.
"""

from __future__ import annotations

import builtins
import contextvars
import itertools
import math
import mmap
import os
import pickle
import pickletools
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

_SEQUENCES = {"list", "dict", "tuple", "set", "frozenset", "str", "bytes", "bytearray"}
ALLOWED_BUILTINS = frozenset(_SEQUENCES | {"int", "float", "complex", "bool"})
ALLOWED_NUMPY = frozenset({"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"})
# Where numpy 1.x and 2.x pickles name those (numpy.core became numpy._core in 2.0).
NUMPY_MODULES = frozenset(
    {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric"}
)
# Errors a hostile or malformed pickle can raise while loading.
LOAD_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError)
MAX_DEPTH = 64  # the release's dets.pkl nests 6 deep: bundle, frames, boxes, (obj_idx, det), det, bbox
BUDGET = 4  # elements or bytes the allowed callables may build (and items walked), per byte of the file
SLACK = 1 << 12

Refused = pickle.UnpicklingError
_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("safe_pickle_budget", default=None)


def _charge(amount: int, what: str) -> None:
    """Take ``amount`` from the budget of the load in progress (none outside :func:`load`)."""
    left = _budget.get()
    if left is None:
        return
    if amount > left[0]:
        raise Refused(f"{what} asks for {amount:,} elements or bytes, more than the file can describe")
    left[0] -= amount


def _count(shape: Any) -> int:
    """Elements of an array ``shape`` (a tuple of non-negative ints)."""
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise Refused(f"{str(shape)[:80]} is not an array shape")
    return math.prod(shape)


class CheckedArray(np.ndarray):
    """A numpy array as :func:`load` rebuilds one: its pickled state is checked before numpy sees it.

    It behaves as any ``ndarray`` (``np.asarray`` gives a plain one); only calling the class itself,
    which a pickle could do to allocate any shape, is refused.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> CheckedArray:
        raise Refused("refusing to call numpy.ndarray: arrays are rebuilt from their pickled data only")

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise Refused("a numpy array's state is not (version, shape, dtype, fortran, data)")
        shape, dtype, data = state[-4], state[-3], state[-1]
        if not isinstance(dtype, np.dtype):
            raise Refused("a numpy array's state names no dtype")
        count = _count(shape)
        if dtype.hasobject:
            if not isinstance(data, list) or len(data) != count:
                raise Refused(f"an object array of shape {shape} does not hold {count:,} elements")
            _charge(count, "a numpy array")
        else:
            need = count * dtype.itemsize
            if not isinstance(data, bytes | bytearray | str) or len(data) != need:
                raise Refused(f"an array of shape {shape} and dtype {dtype} does not hold its {need:,} bytes")
            _charge(need, "a numpy array")
        super().__setstate__(state)


def _sized(value: Any) -> int:
    return len(value) if hasattr(value, "__len__") else 1


def _builtin(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` refusing a size argument (``bytes(n)``) and charging what its arguments hold."""

    def call(*args: Any) -> Any:
        if fn in (bytes, bytearray) and args and isinstance(args[0], int):
            raise Refused(f"refusing {fn.__name__}({args[0]}): a size, not data")
        _charge(sum(_sized(a) for a in args), f"builtins.{fn.__name__}")
        return fn(*args)

    return call


def _numpy(name: str, fn: Any) -> Any:
    """The allowed numpy callable ``name`` (``fn``), checked."""
    if name == "ndarray":
        return CheckedArray  # the subtype numpy's pickles pass to _reconstruct
    if name == "_reconstruct":  # numpy's pickles call it as _reconstruct(ndarray, (0,), b"b")

        def reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
            _charge(_count(shape) * np.dtype(dtype).itemsize, "numpy._reconstruct")
            return fn(CheckedArray, shape, dtype)

        return reconstruct
    if name == "scalar":

        def scalar(dtype: Any, data: Any = None) -> Any:
            if not isinstance(dtype, np.dtype) or data is None:
                raise Refused("a numpy scalar without its dtype and data")
            _charge(1 if dtype.hasobject else dtype.itemsize, "numpy.scalar")
            return fn(dtype, data)

        return scalar
    if name == "_frombuffer":  # protocol 5: a view of the pickled bytes, reshaped (a copy at most)

        def frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> Any:
            _charge(_sized(buffer), "numpy._frombuffer")
            return fn(buffer, dtype, shape, order)

        return frombuffer
    return fn  # dtype: a descriptor, whose size the arrays above are charged for


GUARDED_BUILTINS = {name: _builtin(getattr(builtins, name)) for name in ALLOWED_BUILTINS}


class RestrictedUnpickler(pickle.Unpickler):
    """Loads builtins containers/numbers and numpy arrays only, through the checked callables."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in ALLOWED_BUILTINS:
            return GUARDED_BUILTINS[name]
        if module in NUMPY_MODULES and name in ALLOWED_NUMPY:
            return _numpy(name, super().find_class(module, name))
        raise Refused(f"refusing to load {module}.{name}")


def _opcode_layout() -> tuple[list[int], list[int], dict[int, tuple[str, int]]]:
    """Per opcode byte: the size of a fixed argument (-1: none such), the width of a length field
    (0: none), and for the rest (kind, lines to skip)."""
    widths = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT8U: 8}
    fixed, counted, rare = [-1] * 256, [0] * 256, {}
    for op in pickletools.opcodes:
        arg, code = op.arg, op.code.encode("latin-1")[0]
        if op.name in ("FRAME", "STOP"):
            rare[code] = (op.name, 0)
        elif arg is None or arg.n >= 0:
            fixed[code] = arg.n if arg else 0
        elif arg.n == pickletools.UP_TO_NEWLINE:
            rare[code] = ("lines", 2 if arg.name == "stringnl_noescape_pair" else 1)
        else:  # a length field, then that many bytes (a negative BINSTRING length reads as huge)
            counted[code] = widths.get(arg.n, 4)
    return fixed, counted, rare


FIXED, COUNTED, RARE = _opcode_layout()


def check_lengths(data: mmap.mmap | bytes) -> None:
    """``UnpicklingError`` when an opcode up to the first STOP states more bytes than follow it
    (or is unknown, or the data ends first): what the unpickler would otherwise allocate."""
    pos, end, fixed, counted = 0, len(data), FIXED, COUNTED
    while pos < end:
        code = data[pos]
        if fixed[code] >= 0:  # most opcodes: one lookup each
            pos += 1 + fixed[code]
            continue
        width = counted[code]
        if width:
            length = (
                data[pos + 1] if width == 1 else int.from_bytes(data[pos + 1 : pos + 1 + width], "little")
            )
            if length > end - pos - 1 - width:
                left = max(0, end - pos - 1 - width)
                raise Refused(f"byte {pos}: opcode {code:#04x} states {length:,} bytes, only {left:,} follow")
            pos += 1 + width + length
            continue
        kind, lines = RARE.get(code, ("unknown", 0))
        if kind == "STOP":
            return
        if kind == "FRAME":  # the frame's opcodes follow; its stated size must fit the file
            length = int.from_bytes(data[pos + 1 : pos + 9], "little")
            if length > end - pos - 9:
                raise Refused(
                    f"byte {pos}: a frame of {length:,} bytes, only {max(0, end - pos - 9):,} follow"
                )
            pos += 9
        elif kind == "lines":
            pos += 1
            for _ in range(lines):
                pos = data.find(b"\n", pos) + 1 or end + 1
        else:
            raise Refused(f"byte {pos}: {code:#04x} is not a pickle opcode")
    raise Refused("the pickle ends before its STOP opcode")


CONTAINERS = (list, tuple, dict, set, frozenset)
ARRAYS = (np.ndarray, CheckedArray)


def _inner(node: Any) -> tuple[int, Iterator[Any]]:
    """How many items ``node`` holds, and the containers among them (the types are gathered in C,
    so a container of plain values costs no Python step per item)."""
    if isinstance(node, dict):
        count, values = 2 * len(node), lambda: itertools.chain.from_iterable(node.items())
    elif isinstance(node, np.ndarray):
        count, values = node.size, lambda: node.flat
    else:
        count, values = len(node), lambda: iter(node)
    kinds = set(map(type, values()))
    if kinds.isdisjoint(CONTAINERS) and kinds.isdisjoint(ARRAYS):
        return count, iter(())
    return count, filter(_is_container, values())


def _is_container(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.hasobject
    return isinstance(value, CONTAINERS)


def check_nesting(obj: Any, max_items: int) -> None:
    """``UnpicklingError`` when ``obj`` nests containers deeper than ``MAX_DEPTH``, holds itself, or
    holds more than ``max_items`` items counting a shared one at every reference; no recursion."""
    stack: list[tuple[Iterator[Any], int]] = [(iter((obj,) if _is_container(obj) else ()), 0)]
    walking: set[int] = set()  # ids of the containers on the current path
    items = 0
    while stack:
        for child in stack[-1][0]:
            if id(child) in walking:
                raise Refused("a container holds itself")
            if len(stack) > MAX_DEPTH:
                raise Refused(f"containers are nested more than {MAX_DEPTH} deep")
            count, inner = _inner(child)
            items += count
            if items > max_items:
                raise Refused(f"it holds more than {max_items:,} items (shared ones counted each time)")
            walking.add(id(child))
            stack.append((inner, id(child)))
            break
        else:
            walking.discard(stack.pop()[1])


def load(path: str | Path) -> Any:
    """The object in ``path``; ``pickle.UnpicklingError`` (or another of ``LOAD_ERRORS``) if refused."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the open
        raise Refused(f"{path} is not a regular file")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise EOFError(f"{path} is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            check_lengths(view)
        limit = BUDGET * size + SLACK
        token = _budget.set([limit])
        try:
            obj = RestrictedUnpickler(f).load()
        except pickle.UnpicklingError:
            raise
        except Exception as e:  # what a hostile pickle makes numpy or the unpickler raise
            raise Refused(f"{type(e).__name__}: {e}") from None
        finally:
            _budget.reset(token)
    check_nesting(obj, limit)
    return obj
