"""The device a stage runs on: ``auto`` means the GPU when one is visible, else the CPU.

torch is imported inside the function, so a stage that only sometimes needs it (detect with HOG)
can import this module without paying for torch.
"""

from __future__ import annotations

from typing import Any

from common.errors import UsageError


def pick_device(name: str, index: int | None = None) -> Any:  # a torch.device
    """``auto`` -> ``cuda`` when CUDA is available, else ``cpu``; otherwise the device ``name``
    (``cpu``, ``cuda``, ``cuda:N``). A CUDA device without a visible GPU is a one-line
    ``UsageError``. ``index`` numbers a CUDA device that ``name`` leaves unnumbered."""
    import torch

    want = name if name != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(want)
    except RuntimeError:
        raise UsageError(f"device {name}: not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {name}: no CUDA GPU is visible")
        if device.index is None and index is not None:
            return torch.device("cuda", index)
    return device
