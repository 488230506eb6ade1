"""One entry point for every benchmark: ``load_split(name, data_dir, split_seed)``."""

from __future__ import annotations

from pathlib import Path

from common.data import data_root
from common.errors import UsageError
from finetune import benchmarks_small as small
from finetune import benchmarks_standard as standard
from finetune.records import ReIDSplit

DEFAULT_FOLDER = {
    "market1501": "Market-1501",
    "dukemtmc": "DukeMTMC-reID",
    "msmt17": "MSMT17",
    "cuhk03": "CUHK03",
    "viper": "VIPeR",
    "prid": "PRID",
    "grid": "GRID",
}


def default_data_dir(name: str) -> Path:
    """``<data>/reid/<Folder>``, where the bundled benchmarks live (the data folder: ``common.data``)."""
    return data_root()[0] / "reid" / DEFAULT_FOLDER[name]


def load_split(name: str, data_dir: str | Path | None = None, split_seed: int = 0) -> ReIDSplit:
    """Train / query / gallery of benchmark ``name`` (see ``finetune.settings.DATASETS``).

    ``cuhk03`` reads the CUHK03-NP layout (``bounding_box_train/``...) when the folder has one,
    else the bundled flat folder with a seeded split. ``UsageError`` when the folder is missing.
    """
    if name not in DEFAULT_FOLDER:
        raise UsageError(f"unknown dataset '{name}' (known: {', '.join(DEFAULT_FOLDER)})")
    folder = Path(data_dir) if data_dir else default_data_dir(name)
    if not folder.is_dir():
        raise UsageError(f"{name}: folder {folder} does not exist")
    if name == "cuhk03":
        np_layout = any(
            (folder / d / "bounding_box_train").is_dir() for d in (".", "labeled", "cuhk03-np/labeled")
        )
        return standard.cuhk03_np(folder) if np_layout else small.cuhk03_bundled(folder, split_seed)
    if name in ("viper", "prid", "grid"):
        return getattr(small, name)(folder, split_seed)
    return getattr(standard, name)(folder)
