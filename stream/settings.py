"""Settings of the streaming build; the stages it runs keep their own (``settings/<stage>.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.settings import EngineSettings, check_positive, setting


@dataclass(frozen=True)
class StreamSettings(EngineSettings):
    max_videos_on_disk: int = setting(
        4, "raw videos on disk at any moment, downloads included (a download waits for room)"
    )
    keep_videos: bool = setting(False, "keep each raw video after it is cut (as the staged commands do)")
    workers: int = setting(2, "videos processed at once (at most --max-videos-on-disk)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "max_videos_on_disk", "workers")
