"""Read ultralytics YOLO ``.pt`` files without running code from them.

An ultralytics checkpoint pickles a whole model (a ``DetectionModel`` and its layers) beside plain
values, and ultralytics reads it with ``torch.load(weights_only=False)``: whatever callable the
pickle names runs. Here the file is read with ``weights_only=True`` and an allow-list made for it
from the globals it names, each checked before a byte is unpickled:

* model classes: ``nn.Module`` classes of ``ultralytics.nn`` and ``torch.nn.modules``, and the loss
  and assigner classes (``ultralytics.utils.loss``, ``.tal``) released files still carry on their
  model. Each enters through a stand-in that creates a bare instance, so no ``__init__`` runs: a
  pickle may call any class it may name, and ``DetectionModel(cfg)`` evals the cfg's
  ``activation`` string;
* plain values of released files: numpy scalars and dtypes, ``IterableSimpleNamespace`` (the
  training arguments), paths; and the names older ultralytics releases pickled these under.

Anything else (``os.system``, ``builtins.eval`` or ``getattr``, another package's class) is refused
with one line naming it. ``load_yolo`` builds ultralytics' ``YOLO`` from the file read this way.
"""

from __future__ import annotations

import contextlib
import importlib
import pathlib
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import UsageError, one_line

MODEL_PACKAGES = ("ultralytics.nn.modules", "ultralytics.nn.tasks", "torch.nn.modules")
HELPER_MODULES = ("ultralytics.utils.loss", "ultralytics.utils.tal")  # a model's criterion
# what torch's weights-only unpickler says of a global or call it will not allow (not of garbage)
REFUSAL = re.compile(r"(Unsupported global|Trying to call reduce|Can only (create new object|build)).*")
RENAMED = {  # what older releases pickled -> today's name (ultralytics' own temporary_modules map)
    "ultralytics.yolo.utils.IterableSimpleNamespace": "ultralytics.utils.IterableSimpleNamespace",
    "ultralytics.nn.modules.block.Silence": "torch.nn.modules.linear.Identity",  # YOLOv9e
    "ultralytics.nn.tasks.YOLOv10DetectionModel": "ultralytics.nn.tasks.DetectionModel",
    "ultralytics.utils.loss.v10DetectLoss": "ultralytics.utils.loss.E2EDetectLoss",
}


def plain_values() -> dict[str, Any]:
    """The non-model globals of released files; calling any of them only builds a value."""
    import numpy as np
    from ultralytics.utils import IterableSimpleNamespace

    scalar = np.float64(0).__reduce__()[0]  # numpy's scalar(dtype, bytes)
    paths = {
        f"{m}.{c}": pathlib.PosixPath
        for m in ("pathlib", "pathlib._local")
        for c in ("PosixPath", "WindowsPath")
    }
    return {
        "numpy.core.multiarray.scalar": scalar,
        "numpy._core.multiarray.scalar": scalar,
        "numpy.dtype": np.dtype,
        "ultralytics.utils.IterableSimpleNamespace": IterableSimpleNamespace,
        **paths,
    }


def model_class(name: str) -> type | None:
    """The class ``name`` spells when it is a model class a YOLO file may hold, else ``None``."""
    import torch

    module, _, attr = name.rpartition(".")
    helper = module in HELPER_MODULES
    if not (helper or module in MODEL_PACKAGES or module.startswith(tuple(p + "." for p in MODEL_PACKAGES))):
        return None
    try:
        obj = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None
    if not isinstance(obj, type):
        return None
    if helper:
        return obj if obj.__module__ == module else None
    made_in = obj.__module__.startswith(("ultralytics.nn.", "torch.nn.modules."))
    return obj if made_in and issubclass(obj, torch.nn.Module) else None


def created_bare(cls: type) -> type:
    """A stand-in for ``cls``: creating it (pickle's NEWOBJ) or calling it (REDUCE) gives a bare
    ``cls`` instance, whose state the pickle then sets; ``cls.__init__`` never runs."""

    def new(_stand_in: type, *args: Any, **kwargs: Any) -> Any:
        return cls.__new__(cls)

    return type(f"Bare{cls.__name__}", (), {"__new__": new})


def allow_list(path: Path, names: list[str]) -> list[tuple[Any, str]]:
    """``add_safe_globals`` entries for the globals ``names`` of ``path``; ``UsageError`` on the
    first one that is not a model class or plain value."""
    import numpy as np

    values, entries = plain_values(), []
    for name in sorted(RENAMED.get(n, n) for n in names):
        if name in values:
            entries.append((values[name], name))
            continue
        cls = model_class(name)
        if cls is None:
            raise UsageError(
                f"detector weights {path}: refused: the file names {name}, which is not an ultralytics "
                "or torch model class (loading it could run code)"
            )
        # the stand-in answers to the name; the class itself only under a key without a dot, which
        # no pickle GLOBAL ("module.name") can look up, so that torch lets the pickle set the state
        # of the instances the stand-in made
        entries += [(created_bare(cls), name), (cls, "instances-of-" + name.replace(".", "/"))]
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return entries + [(t, "instances-of-" + t.__name__) for t in dtypes]


@contextlib.contextmanager
def no_other_globals() -> Iterator[None]:
    """Within the block ``torch.load(weights_only=True)`` allows only what the block adds, not
    what another library registered for the whole process (ultralytics' opt-in safe mode adds its
    model classes themselves, which a pickle could then call); the process's set comes back after."""
    import torch

    before = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        yield
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def whole(module: Any) -> bool:
    """``module`` and every module under it hold what ``nn.Module.__init__`` gives one: a pickle
    that only created one (a REDUCE through a stand-in) leaves it without. Shared and cyclic
    children (a pickle can make both) are visited once."""
    import torch

    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        state = vars(m) if isinstance(m, torch.nn.Module) else {}
        if not all(isinstance(state.get(k), dict) for k in ("_modules", "_parameters", "_buffers")):
            return False
        todo += [c for c in state["_modules"].values() if c is not None]
    return True


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict of a YOLO ``.pt`` file, unpickled with ``weights_only=True`` against
    its allow-list; ``UsageError`` (one line naming the file) for anything else."""
    import torch

    try:
        with no_other_globals():
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            torch.serialization.add_safe_globals(allow_list(path, names))
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except UsageError:
        raise
    except Exception as e:  # on damaged bytes the unpickler raises anything: IndexError, KeyError, ...
        refusal = REFUSAL.search(str(e)) if isinstance(e, pickle.UnpicklingError) else None
        if refusal:
            raise UsageError(f"detector weights {path}: refused: {one_line(refusal.group(0), 200)}") from None
        raise UsageError(
            f"detector weights {path}: not a torch file ({type(e).__name__}); a YOLO .pt checkpoint is expected"
        ) from None
    models = [ckpt.get("ema"), ckpt.get("model")] if isinstance(ckpt, dict) else [None]
    if all(m is None for m in models) or not all(m is None or whole(m) for m in models):
        raise UsageError(
            f"detector weights {path}: refused: not an ultralytics checkpoint (no whole model in it)"
        )
    return ckpt


def local_file(weights: str) -> Path:
    """``weights`` as a local ``.pt`` file: a path, or an ultralytics name (``yolov5xu.pt``) that
    ultralytics downloads on first use into its weights folder."""
    from ultralytics.utils.downloads import attempt_download_asset

    local = Path(weights)
    if local.suffix != ".pt":
        raise UsageError(
            f"detector weights {weights}: a YOLO .pt checkpoint or an ultralytics name is expected"
        )
    if local.is_file():
        return local
    if len(local.parts) > 1:
        raise UsageError(f"detector weights {weights}: no such file (a .pt path or an ultralytics name)")
    try:
        found = Path(attempt_download_asset(weights))
    except (ConnectionError, FileNotFoundError) as e:
        found, why = None, str(e).replace("❌", "").strip()
    else:
        why = "not found"
    if found is None or not found.is_file():
        raise UsageError(
            f"detector weights {weights}: cannot load or download ({why}); "
            "pass --detector-weights PATH to a local file, or use --detector hog"
        )
    return found


def load_yolo(weights: str) -> Any:
    """Ultralytics' ``YOLO`` detection model of ``weights`` (a local ``.pt`` or an ultralytics
    name), read by :func:`read_checkpoint`: while ``YOLO`` builds, ultralytics' loader is this
    module's, then its own again (not thread-safe: a process builds its detector once)."""
    from ultralytics import YOLO
    from ultralytics.nn import tasks

    path = local_file(weights)

    def safe_load(weight: Any, safe_only: bool | None = None) -> tuple[dict[str, Any], str]:
        return read_checkpoint(Path(weight)), str(weight)

    own = tasks.torch_safe_load
    tasks.torch_safe_load = safe_load
    try:
        return YOLO(str(path), task="detect")
    except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as e:  # a malformed one
        raise UsageError(
            f"detector weights {path}: not an ultralytics checkpoint ({one_line(e, 200)})"
        ) from None
    finally:
        tasks.torch_safe_load = own
