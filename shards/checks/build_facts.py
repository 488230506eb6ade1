"""What a workspace records about how its build was made, beyond ``stats.json``: the facts
``DATASHEET.md`` (:mod:`shards.checks.datasheet`) answers its questions with.

- ``settings/<section>.yaml``: each stage's last settings (read with ``common.settings``' bounded,
  alias-free reader); the file is written when the run ends, so its time is when it ended.
- ``videos.parquet``: videos by status, city and licence, and the range of ``upload_date``
  (``YYYYMMDD`` as yt-dlp gives it), each column only where the file has it.
- ``takedowns.jsonl``: the removal requests carried out (``common.manifests.takedowns``' reader).
- ``dets_report.json`` (``build-shards --from-dets``): its whole-number figures.
- the manifests' modification times, the files kept under ``videos/``, the runs under ``runs/``.

Reading is never an error: a fact the root lacks (a build ``--from-images`` has no
``videos.parquet``), or cannot read, is ``None`` with a line in ``unknown`` saying why, without
the root's absolute path (the datasheet travels with the data).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.errors import SettingsError, UsageError, one_line
from common.manifests import detections, takedowns, video_filter
from common.manifests import samples as samples_file
from common.manifests import videos as videos_file
from common.manifests.shard_index import INDEX_NAME
from common.manifests.tracklets import FILE as TRACKLETS
from common.provenance import project_commit
from common.settings import read_yaml_section

log = logging.getLogger(__name__)

TAKEDOWNS = takedowns.LOG
DETS_REPORT = "dets_report.json"
# settings/<section>.yaml -> the command whose last run wrote it
STAGES = {
    "crawl": "crawl",
    "filter": "filter",
    "detect": "detect",
    "shards": "build-shards",
    "stream": "stream",
}
MANIFESTS = (
    videos_file.MANIFEST,
    video_filter.FILE,
    detections.FILE,
    f"shards/{samples_file.FILE}",
    f"shards/{INDEX_NAME}",
)


@dataclass
class BuildFacts:
    """The facts of one root; ``unknown`` maps a fact's name (``videos``, ``takedowns``,
    ``dets_report``, ``settings.<section>``) to why it is absent."""

    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    ended: dict[str, datetime] = field(default_factory=dict)  # command -> its last run's end
    written: dict[str, datetime] = field(default_factory=dict)  # manifest -> last written
    videos: dict[str, Any] | None = None
    takedowns: dict[str, Any] | None = None
    dets_report: dict[str, int] | None = None
    raw_videos: tuple[int, int] = (0, 0)  # files under videos/, their bytes
    runs: list[str] = field(default_factory=list)  # runs/<name> holding a backbone or results
    tracklets: bool = False
    commit: str | None = None
    unknown: dict[str, str] = field(default_factory=dict)

    def setting(self, section: str, name: str) -> Any:
        """A stage's last setting (``name``: ``face.pose`` for a field of a group), ``None`` when
        the stage never ran here or lacks it."""
        value: Any = self.settings.get(section, {})
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value


def mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


def _private(root: Path, error: Exception) -> str:
    return one_line(str(error), 200).replace(str(root), "<root>")


def _read_settings(root: Path, facts: BuildFacts) -> None:
    for section, command in STAGES.items():
        path = root / "settings" / f"{section}.yaml"
        if not path.is_file():
            facts.unknown[f"settings.{section}"] = (
                f"there is no settings/{section}.yaml ({command} never ran here)"
            )
            continue
        try:
            facts.settings[section] = read_yaml_section(path, section)
        except SettingsError as e:
            facts.unknown[f"settings.{section}"] = (
                f"settings/{section}.yaml cannot be read ({_private(root, e)})"
            )
            continue
        if when := mtime(path):
            facts.ended[command] = when


def _counts(df, column: str) -> dict[str, int] | None:
    """Rows per value of ``column`` (``""``: empty), or ``None`` when the file lacks the column."""
    if column not in df.columns:
        return None
    values = df[column].astype(object).where(df[column].notna(), "").astype(str).str.strip()
    return {str(k): int(v) for k, v in values.value_counts().items()}


def video_counts(df) -> dict[str, Any]:
    """``videos.parquet``: videos in all, by status, city and licence, and the upload dates."""
    counts: dict[str, Any] = {"total": len(df)}
    for column in ("status", "city", "license"):
        counts[column] = _counts(df, column)
    counts["upload_date"] = None
    if "upload_date" in df.columns:
        text = df["upload_date"].astype(object).where(df["upload_date"].notna(), "").astype(str).str.strip()
        dated = text[text.str.fullmatch(r"\d{8}")]
        first, last = (dated.min(), dated.max()) if len(dated) else ("", "")
        counts["upload_date"] = {
            "dated": len(dated),
            "first": f"{first[:4]}-{first[4:6]}-{first[6:]}" if first else None,
            "last": f"{last[:4]}-{last[4:6]}-{last[6:]}" if last else None,
        }
    return counts


def _read_videos(root: Path, facts: BuildFacts) -> None:
    path = root / videos_file.MANIFEST
    if not path.is_file():
        facts.unknown["videos"] = f"this workspace has no {videos_file.MANIFEST} (crawl never ran here)"
        return
    try:
        facts.videos = video_counts(videos_file.read_frame(path, ("video_id",)))
    except UsageError as e:
        log.warning("%s", e)
        facts.unknown["videos"] = f"{videos_file.MANIFEST} cannot be read ({_private(root, e)})"


def _when(value: Any) -> datetime | None:
    """A request's ``time``: ISO 8601 (UTC when it names no zone)."""
    try:
        when = datetime.fromisoformat(value.strip()) if isinstance(value, str) else None
    except ValueError:
        return None
    return when if when is None or when.tzinfo else when.replace(tzinfo=UTC)


def takedown_summary(requests: list[dict[str, Any]]) -> dict[str, Any]:
    """The log's requests summed: crops removed, distinct videos and keys named, shards rewritten,
    names that matched nothing, the first and last time."""
    removed = (r.get("crops_removed") for r in requests)
    times = [t for t in (_when(r.get("time")) for r in requests) if t is not None]

    def distinct(name: str) -> int:
        return len({str(v) for r in requests if isinstance(r.get(name), list) for v in r[name]})

    return {
        "requests": len(requests),
        "crops_removed": sum(n for n in removed if isinstance(n, int) and not isinstance(n, bool) and n > 0),
        **{name: distinct(name) for name in ("videos", "keys", "shards_rewritten", "unmatched")},
        "first": min(times, default=None),
        "last": max(times, default=None),
    }


def _read_takedowns(root: Path, facts: BuildFacts) -> None:
    if not takedowns.log_path(root).is_file():
        return  # no request was ever carried out here: a fact, not an unknown
    try:
        facts.takedowns = takedown_summary(takedowns.read_log(root))
    except UsageError as e:
        facts.unknown["takedowns"] = _private(root, e)


def _read_dets_report(root: Path, facts: BuildFacts) -> None:
    path = root / DETS_REPORT
    if not path.is_file():
        return
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        facts.unknown["dets_report"] = f"{DETS_REPORT} cannot be read ({_private(root, e)})"
        return
    parts = [p for p in ("videos", "crops") if isinstance(report, dict) and isinstance(report.get(p), dict)]
    facts.dets_report = {
        f"{part}.{name}": value
        for part in parts
        for name, value in report[part].items()
        if isinstance(value, int) and not isinstance(value, bool)
    }


def _raw_videos(root: Path) -> tuple[int, int]:
    files, size = 0, 0
    for folder, _, names in os.walk(root / "videos"):
        for name in names:
            files += 1
            try:
                size += os.stat(os.path.join(folder, name)).st_size
            except OSError:  # removed while counting
                continue
    return files, size


def read_facts(root: Path) -> BuildFacts:
    """Every fact of ``root`` this module knows how to read (see the module's docstring)."""
    root = Path(root)
    facts = BuildFacts()
    _read_settings(root, facts)
    _read_videos(root, facts)
    _read_takedowns(root, facts)
    _read_dets_report(root, facts)
    facts.written = {name: when for name in MANIFESTS if (when := mtime(root / name))}
    facts.raw_videos = _raw_videos(root)
    runs = root / "runs"
    facts.runs = sorted(
        p.name
        for p in (runs.iterdir() if runs.is_dir() else [])
        if (p / "backbone.pth").is_file() or (p / "results.json").is_file()
    )
    facts.tracklets = (root / "shards" / TRACKLETS).is_file()
    facts.commit = project_commit()
    return facts
