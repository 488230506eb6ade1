"""Settings of the shard writer, the statistics and the verifier."""

from __future__ import annotations

from dataclasses import dataclass

from common.settings import check_positive, check_range, setting


@dataclass(frozen=True)
class ShardSettings:
    from_images: str | None = setting(None, "import a folder tree of person crops instead of detections")
    from_lmdb: str | None = setting(None, "import the official LUPerson LMDB release (with keys.pkl)")
    jpeg_quality: int = setting(95, "JPEG quality of re-encoded crops")
    max_samples: int = setting(10000, "samples per shard at most")
    max_bytes: int = setting(1_000_000_000, "bytes per shard at most")
    workers: int = setting(2, "worker processes")

    def __post_init__(self) -> None:
        check_positive(self, "max_samples", "max_bytes", "workers")
        check_range(self, "jpeg_quality", 1, 100)


@dataclass(frozen=True)
class StatsSettings:
    grid_size: int = setting(8, "example crops per side of the figure grid (paper's Figure 2)")
    seed: int = setting(0, "which crops the example grid shows")

    def __post_init__(self) -> None:
        check_positive(self, "grid_size")


@dataclass(frozen=True)
class VerifySettings:
    decode: bool = setting(True, "decode every image, not only check sha256")
    workers: int = setting(2, "shards checked in parallel")

    def __post_init__(self) -> None:
        check_positive(self, "workers")
