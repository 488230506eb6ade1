"""Settings of the streaming build; the stages it runs keep their own (``settings/<stage>.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import SettingsError
from common.settings import EngineSettings, check_positive, setting
from shards.settings import parse_size


@dataclass(frozen=True)
class StreamSettings(EngineSettings):
    max_videos_on_disk: int = setting(
        4, "raw videos on disk at any moment, downloads included (a download waits for room)"
    )
    from_dets: str | None = setting(
        None,
        "cut the released LUPerson boxes (dets.pkl or a folder of <country>+<city>+<id>.pkl) from the "
        "videos of crawl --from-vnames --search-only, as build-shards --from-dets does",
    )
    dets_size: str | None = setting(
        None, "with --from-dets: WIDTHxHEIGHT the released boxes were found at (when a pickle states none)"
    )
    blur_faces: bool = setting(
        False,
        "blur every face before a crop is encoded, as build-shards --blur-faces (also on when build-shards' "
        "saved settings have it)",
    )
    keep_videos: bool = setting(False, "keep each raw video after it is cut (as the staged commands do)")
    workers: int = setting(2, "videos processed at once (at most --max-videos-on-disk)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "max_videos_on_disk", "workers")
        if self.dets_size is not None:
            if not self.from_dets:
                raise SettingsError("--dets-size applies to --from-dets only")
            parse_size(self.dets_size)
