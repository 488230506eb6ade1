"""What every part of ``bench/scale.py`` is handed: where to build, which sizes, how long it may run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common.data import data_root

DATA = data_root()[0]
# LUPerson at full size (the paper's §3 and Table 1): the sizes every fraction is taken of
FULL = {"crops": 4_180_243, "videos": 46_260, "searched": 73_000, "kept": 50_534}
NL_CROPS = 10_000_000  # LUPerson-NL, the projection's second target


@dataclasses.dataclass(frozen=True)
class Context:
    work: Path  # scratch folder: every workspace of the run is built under it
    fractions: tuple[float, ...]  # of FULL, e.g. (0.01, 0.1, 1.0)
    smoke: bool  # tiny sizes on the CPU, seconds (the test suite's run)
    data: Path = DATA
    timeout_s: float = 1800.0  # one command at one size at most

    def size(self, unit: str, fraction: float) -> int:
        """``fraction`` of LUPerson's ``unit`` count; in a smoke run a few hundredths of that."""
        full = FULL[unit]
        return max(2, round(full * fraction * (0.001 if self.smoke else 1)))

    def folder(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path
