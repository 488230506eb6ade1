"""The shape every Re-ID benchmark parser returns: labelled samples split into train, query, gallery."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import UsageError


@dataclass(frozen=True)
class Sample:
    """One labelled image: its path, identity and camera (both plain ints)."""

    path: Path
    pid: int
    camid: int


@dataclass(frozen=True)
class ReIDSplit:
    """Train / query / gallery of one benchmark; ``protocol`` says how the split was made."""

    name: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    protocol: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def stats(self) -> dict[str, int]:
        """Images and identities of each part (fast-reid prints the same table)."""
        out: dict[str, int] = {}
        for part in ("train", "query", "gallery"):
            samples = getattr(self, part)
            out[f"{part}_images"] = len(samples)
            out[f"{part}_ids"] = len({s.pid for s in samples})
        return out


def relabel(samples: list[Sample]) -> tuple[list[Sample], dict[int, int]]:
    """Training labels 0..N-1 in order of first appearance of each sorted identity."""
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return [Sample(s.path, mapping[s.pid], s.camid) for s in samples], mapping


def require_dir(path: Path, what: str) -> Path:
    """``path`` when it is a folder, else ``UsageError`` naming the dataset."""
    if not path.is_dir():
        raise UsageError(f"{what}: folder {path} does not exist")
    return path


def list_images(folder: Path, what: str) -> list[Path]:
    """Sorted image files of ``folder``; ``UsageError`` when there are none."""
    require_dir(folder, what)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
    if not files:
        raise UsageError(f"{what}: no images in {folder}")
    return files
