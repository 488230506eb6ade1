"""``<root>/DATASHEET.md``: the build described in the seven sections of Gebru et al.,
"Datasheets for Datasets" (Communications of the ACM 64(12), 2021), written by ``stats`` beside
``report.html``.

Each of the paper's questions that applies to person crops cut from public videos is answered
from what the workspace records: ``stats.json`` (the report ``stats`` has just computed) and the
facts of :mod:`shards.checks.build_facts` (each stage's settings, ``videos.parquet``,
``takedowns.jsonl``, ``dets_report.json``, file times). What no file can answer (who made it, who
paid, consent, ethical review, the dataset's own licence) is a paragraph starting with
``**[maintainer]**`` and a short prompt. A fact the workspace lacks is a sentence starting with
``Unknown:``, never an error.

Text from the files (cities, licences, queries) is made one line and escaped, so it cannot break
a table or add markup; local paths are shown by their last part only.
"""

from __future__ import annotations

import hashlib
import logging
import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.atomic import write_text
from shards.checks.build_facts import DETS_REPORT, STAGES, TAKEDOWNS, BuildFacts, read_facts
from shards.checks.table1 import PAPER_ROW

log = logging.getLogger(__name__)

FILE = "DATASHEET.md"
MAINTAINER = "**[maintainer]**"  # the one marker of a question only the maintainer can answer
UNKNOWN = "Unknown:"
TOP = 20  # rows of a count table at most; the rest is one "others" row
TEMPLATE = Path(__file__).with_name("datasheet.md")  # the questions; ${name} is filled from the workspace
SOURCES = {
    "detections": "cut from this workspace's own detections in the videos crawl downloaded "
    "(crawl, filter, detect, build-shards)",
    "dets": "cut from videos of the official LUPerson list at the boxes the LUPerson release published "
    "(`build-shards --from-dets`)",
    "lmdb": "imported from the official LUPerson LMDB release (`build-shards --from-lmdb`)",
    "images": "imported from a folder of person images (`build-shards --from-images`); where those "
    "images came from is not recorded in this workspace",
}
FIELDS = {
    "detections": "video id, city, URL and licence of the video, frame, box number, detector score, the "
    "17 COCO keypoints, the box and the cut in frame pixels, the frame's size",
    "dets": "video id, city, URL and licence of the video, frame, box number, score, the box and the cut "
    "in frame pixels, the frame's size",
    "images": "the image's path relative to the imported folder, its width and height",
    "lmdb": "the release's LMDB key and what it tells (city and video numbers)",
}
_MARKUP = re.compile(r"([\\`*_{}\[\]<>()#+!|~&])")

# ---------------------------------------------------------------- markdown


def _text(value: Any, limit: int = 80) -> str:
    """``value`` as one escaped line of at most ``limit`` characters (file text is not markup)."""
    text = " ".join(str(value).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return _MARKUP.sub(r"\\\1", text)


def _n(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:,}" if isinstance(value, int) else str(value)


def _utc(when: datetime | None) -> str:
    return "unknown" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _name(value: Any) -> str:
    """A path or URL setting by its last part (no local folders in a published datasheet)."""
    return "none" if value in (None, "") else _text(Path(str(value).rstrip("/")).name or value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(
        lines + ["| " + " | ".join(v if isinstance(v, str) else _n(v) for v in row) + " |" for row in rows]
    )


def _counts(counts: dict[str, Any] | None, what: str, unit: str) -> str:
    """A count table, largest first: at most ``TOP`` rows, one row for all the others, the total."""
    counts = {str(k): int(v) for k, v in (counts or {}).items() if isinstance(v, int | float)}
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(counts.values()) or 1
    rows: list[list[Any]] = [
        [_text(k) or "(not recorded)", n, f"{100 * n / total:.1f} %"] for k, n in ranked[:TOP]
    ]
    if len(ranked) > TOP:
        rest = sum(n for _, n in ranked[TOP:])
        rows.append([f"{len(ranked) - TOP:,} others", rest, f"{100 * rest / total:.1f} %"])
    rows.append(["total", sum(counts.values()), "100.0 %"])
    return _table([what, unit, "share"], rows)


def _many(n: int, what: str) -> str:
    """``1 video``, ``2 videos``."""
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _size(n: int) -> str:
    """Bytes in the largest decimal unit that leaves a number >= 1."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return _many(n, "byte")


def _sentence(parts: list[str]) -> str:
    """Clauses joined by semicolons, as one sentence."""
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def _block(*parts: str) -> str:
    """Paragraphs and tables, a blank line between them (empty parts left out)."""
    return "\n\n".join(p for p in parts if p)


def _unknown(why: str) -> str:
    return f"{UNKNOWN} {why}."


@dataclass
class Sheet:
    """What one datasheet is written from: the stats report and the workspace's other facts."""

    report: dict[str, Any]
    facts: BuildFacts

    def sources(self) -> set[str]:
        return {s for s in str(self.report.get("source") or "").split(",") if s and s != "none"}

    def stages(self) -> set[str]:
        """The settings sections of the stages that made these crops (imported ones: build-shards)."""
        used = {"shards"}
        if self.sources() & {"detections", "dets"}:
            used.add("crawl")
        if "detections" in self.sources():
            used |= {"filter", "detect"}
        return used

    def missing(self, *sections: str) -> list[str]:
        """An ``Unknown:`` line for each of ``sections`` that made these crops and left no settings."""
        return [
            _unknown(f"the settings of {STAGES[x]}: {self.facts.unknown[f'settings.{x}']}")
            for x in sections
            if x in self.stages() and f"settings.{x}" in self.facts.unknown
        ]

    def part(self, key: str) -> dict[str, Any]:
        """``report[key]`` when it is a dict (a part the build made), else empty."""
        value = self.report.get(key)
        return value if isinstance(value, dict) else {}

    def videos(self, column: str) -> dict[str, int] | None:
        return (self.facts.videos or {}).get(column)


# ---------------------------------------------------------------- answers from the workspace


def _origin(s: Sheet) -> str:
    if not s.sources():
        return "This build holds no crop yet (`shards/samples.parquet` lists none written)."
    return (
        "The crops were "
        + "; ".join(SOURCES.get(x, f"from source {_text(x)}") for x in sorted(s.sources()))
        + "."
    )


def _size_table(s: Sheet) -> str:
    r = s.report

    def size(axis: str) -> str:
        v = s.part(f"crop_{axis}")
        return (
            f"{v['min']:,} / {v['median']:g} / {v['max']:,}"
            if {"min", "median", "max"} <= set(v)
            else "unknown"
        )

    persons = f'{PAPER_ROW["estimated_persons"]:,} ("over 200K identities")'
    return _table(
        ["", "this build (`stats.json`)", "LUPerson (paper: Table 1, §3.1)"],
        [
            ["person crops (images)", r.get("images"), PAPER_ROW["images"]],
            ["videos (scenes)", r.get("videos"), PAPER_ROW["videos"]],
            ["cities", r.get("cities"), PAPER_ROW["cities"]],
            [
                "estimated persons (most crops in one frame, summed over videos)",
                r.get("estimated_persons"),
                persons,
            ],
            ["crop width, px (min / median / max)", size("width"), "vary"],
            ["crop height, px (min / median / max)", size("height"), "vary"],
            ["WebDataset tar shards", r.get("shards"), "-"],
            ["bytes in shards", r.get("bytes"), "-"],
        ],
    )


def _sampling(s: Sheet) -> str:
    f = s.facts
    if s.sources() & {"images", "lmdb"}:
        lmdb = " (the LUPerson release chose its crops by §3.1's rules)" if "lmdb" in s.sources() else ""
        return _unknown("how the imported crops were chosen is not recorded here" + lmdb)
    parts = []
    if f.setting("crawl", "from_vnames") or "dets" in s.sources():
        parts.append("the videos are those of the official LUPerson list that could still be downloaded")
    elif f.setting("crawl", "urls"):
        parts.append(f"the videos are those listed in {_name(f.setting('crawl', 'urls'))}")
    elif "crawl" in f.settings:
        parts.append(
            f"crawl kept up to {_n(f.setting('crawl', 'per_city'))} videos per city of "
            f"{_name(f.setting('crawl', 'cities'))} from YouTube's search results (the paper: about 730 per "
            "city of the top 100 of the Innovation City Index 2019)"
        )
    if "filter" in f.settings:
        parts.append("filter dropped duplicate, short, static, VR and unreadable videos")
    if "dets" in s.sources():
        parts.append("the persons are the release's boxes (§3.1's rules applied by its authors)")
    elif "detect" in f.settings:
        step = _n(f.setting("detect", "frame_step"))
        parts.append(f"detect sampled every {step}th frame and kept the persons that pass §3.1's rules")
    if not parts:
        return _unknown("no settings of crawl, filter or detect are recorded here")
    return "A sample, not every person of every video: " + "; ".join(parts) + "."


def _failed(s: Sheet) -> str:
    failed = s.report.get("failed")
    if not isinstance(failed, dict):
        return _unknown("`stats.json` does not count the crops that could not be written")
    if not failed:
        return "Every planned crop was written (`shards/samples.parquet` holds no failure status)."
    return _block(
        "Planned crops not written, by status (`shards/samples.parquet` says why for each):",
        _counts(failed, "status", "crops"),
    )


def _noise(s: Sheet) -> str:
    parts: list[str] = []
    if s.part("detections").get("reasons"):
        parts += ["Boxes found by detect, by status (`ok`: kept; the others are §3.1's drop codes):"]
        parts.append(_counts(s.part("detections")["reasons"], "status", "boxes"))
    if s.part("video_filter").get("reasons"):
        parts += ["Videos by filter's decision (`ok`: kept; duplicates and near-duplicates dropped):"]
        parts.append(_counts(s.part("video_filter")["reasons"], "status", "videos"))
    return _block(*parts)


def _faces(s: Sheet) -> str:
    """What was done to faces: ``stats.json``'s ``faces`` (``null``: no crop went through blurring)."""
    f, faces = s.facts, s.report.get("faces")
    if not isinstance(faces, dict):
        return (
            "No written crop went through face blurring (build-shards ran without `--blur-faces`): "
            "faces are visible."
        )
    pose = f.setting("shards", "face.pose") is not False
    heads = "detect's keypoints or by BlazePose" if pose else "detect's keypoints"
    return (
        f"Faces were blurred before each crop was encoded (`--blur-faces`: BlazeFace, score >= "
        f"{_n(f.setting('shards', 'face.min_score'))}, and the head found by {heads}): "
        f"{_n(faces.get('crops_checked'))} crops checked, {_n(faces.get('crops_not_checked'))} not, "
        f"{_n(faces.get('crops_with_faces'))} with a face region blurred, {_n(faces.get('regions'))} "
        "regions in all. A face none of them found stays sharp."
    )


def _videos(s: Sheet) -> str:
    """``videos.parquet`` by status, city and licence: what crawl found and fetched."""
    if s.facts.videos is None:
        return _unknown(f"how many videos were found and downloaded: {s.facts.unknown.get('videos')}")
    parts: list[str] = [f"`videos.parquet` lists {_many(s.facts.videos['total'], 'video')}."]
    for column, what, note in (
        ("status", "status", "`ok`: downloaded"),
        ("city", "city", "the city searched"),
        ("license", "licence", "as YouTube states it"),
    ):
        counts = s.videos(column)
        if counts is None:
            parts.append(_unknown(f"videos by {what}: `videos.parquet` has no `{column}` column"))
        else:
            parts += [f"Videos by {what} ({note}):", _counts(counts, what, "videos")]
    return _block(*parts, _dets_report(s))


def _timeframe(s: Sheet) -> str:
    f, dates = s.facts, (s.facts.videos or {}).get("upload_date")
    if f.videos is None or dates is None:
        why = f.unknown.get("videos") or "`videos.parquet` has no `upload_date` column"
        uploaded = _unknown(f"when the videos were uploaded: {why}")
    elif not dates["dated"]:
        uploaded = _unknown("when the videos were uploaded: no video of `videos.parquet` has an upload date")
    else:
        uploaded = (
            f"The videos were uploaded to YouTube between {dates['first']} and {dates['last']} "
            f"({dates['dated']:,} of {f.videos['total']:,} videos with an `upload_date`). When they were "
            "filmed is not recorded."
        )
    rows = [[f"{c} (`settings/{sec}.yaml`)", _utc(f.ended[c])] for sec, c in STAGES.items() if c in f.ended]
    rows += [[f"`{name}` last written", _utc(when)] for name, when in f.written.items()]
    times = [*f.ended.values(), *f.written.values()]
    if not times:
        return _block(uploaded, _unknown("when this build ran: no settings file or manifest records a time"))
    return _block(
        uploaded,
        f"This build's files were last written between {_utc(min(times))} and {_utc(max(times))} (file "
        "modification times; a stage writes its settings file when its last run ends):",
        _table(["stage or file", "time (UTC)"], rows),
    )


def _crawled(s: Sheet) -> str:
    """How crawl found and fetched the videos (its last run's settings)."""
    f = s.facts
    download = f"with yt-dlp, as MP4 up to {_n(f.setting('crawl', 'max_height'))} px high"
    if f.setting("crawl", "from_vnames"):
        told = (
            f"crawl downloaded the videos of the list {_name(f.setting('crawl', 'from_vnames'))} {download}"
        )
    elif f.setting("crawl", "urls"):
        told = (
            f"crawl fetched the videos listed in {_name(f.setting('crawl', 'urls'))} (URLs {download}; "
            "local files copied)"
        )
    else:
        queries = ", ".join(f'"{_text(q)}"' for q in f.setting("crawl", "queries") or [])
        cities = _name(f.setting("crawl", "cities"))
        told = f"crawl searched YouTube for each city of {cities} with {queries} and downloaded {download}"
    if f.setting("crawl", "license") == "creative-commons":
        told += ", keeping only videos whose recorded licence is Creative Commons"
    return told


def _mechanisms(s: Sheet) -> str:
    f, told, used = s.facts, [], s.stages() & set(s.facts.settings)
    if "crawl" in used:
        told.append(_crawled(s))
    if "detect" in used:
        d = f.settings["detect"]
        weights = f" ({_name(d.get('detector_weights'))})" if d.get("detector") == "yolo" else ""
        pose = f"keypoints by {_text(d.get('keypoints'))} ({_name(d.get('pose_weights'))})"
        none = d.get("keypoints") == "none"
        told.append(
            f"detect: the {_text(d.get('detector'))} person detector{weights}, "
            + ("no keypoint model (`keypoints: none`)" if none else pose)
        )
    if not told:
        return _block(
            _unknown(
                "which software collected the data: crawl and detect recorded no settings for these crops"
            ),
            *s.missing("crawl", "detect"),
        )
    return _block(_sentence(told), *s.missing("crawl", "detect"))


def _dets_report(s: Sheet) -> str:
    if "dets_report" in s.facts.unknown:
        return _unknown(s.facts.unknown["dets_report"])
    if not s.facts.dets_report:
        return ""
    rows = [[_text(k), v] for k, v in s.facts.dets_report.items()]
    return _block(
        f"The official list's videos and the release's boxes (`{DETS_REPORT}`):",
        _table(["figure", "count"], rows),
    )


def _takedowns(s: Sheet) -> str:
    t = s.facts.takedowns
    if t is None:
        if "takedowns" in s.facts.unknown:
            return _unknown(f"which removal requests were carried out: {s.facts.unknown['takedowns']}")
        return f"No removal request has been carried out in this workspace (there is no `{TAKEDOWNS}`)."
    return (
        f"`{TAKEDOWNS}` records {_many(t['requests'], 'removal request')} carried out, the first on "
        f"{_utc(t['first'])}, the last on {_utc(t['last'])}: {_many(t['crops_removed'], 'crop')} removed, "
        f"{_many(t['shards_rewritten'], 'shard')} rewritten; {_many(t['videos'], 'video')} and "
        f"{_many(t['keys'], 'crop')} named, {_many(t['unmatched'], 'name')} that matched nothing. Every "
        "later build leaves them out."
    )


def _rules(s: Sheet) -> str:
    """The settings each cleaning step ran with, beside the paper's values."""
    f, told, used = s.facts, [], s.stages() & set(s.facts.settings)
    if "filter" in used:
        near = "" if f.setting("filter", "near_duplicate") else "not "
        told.append(
            f"filter dropped videos of fewer than {_n(f.setting('filter', 'min_frames'))} frames (paper: "
            f"100), static ones ({_n(f.setting('filter', 'static_frames'))} evenly spaced frames alike; "
            f"paper: 5), VR ones, repeats of a YouTube id and {near}near-duplicates (perceptual hashes)"
        )
    if "detect" in used:
        d = f.settings["detect"]
        score = d.get("hog_min_score") if d.get("detector") == "hog" else d.get("min_score")
        seen = d.get(
            "blazepose_keypoint_threshold" if d.get("keypoints") == "blazepose" else "keypoint_threshold"
        )
        told.append(
            f"detect kept, on every {_n(d.get('frame_step'))}th frame (paper: 100), the boxes scoring above "
            f"{_n(score)} (paper: 0.72), wider than {_n(d.get('min_width'))} px (paper: 48), with "
            f"height/width between {_n(d.get('min_aspect'))} and {_n(d.get('max_aspect'))} (paper: 1.5 "
            "and 5), "
            + (
                "without keypoint rules (`keypoints: none`)"
                if d.get("keypoints") == "none"
                else f"with head and upper body visible and a hip or knee (a keypoint above {_n(seen)})"
            )
        )
    if "shards" in used:
        told.append(
            f"build-shards saved each crop as JPEG (quality {_n(f.setting('shards', 'jpeg_quality'))} "
            "when re-encoded)"
        )
    missing = s.missing("filter", "detect", "shards")
    if not told:
        return _block(
            _unknown("how the data was cleaned: no stage recorded its settings here"), *missing, _faces(s)
        )
    return _block(_sentence(told), *missing, _faces(s))


def _kept(s: Sheet) -> str:
    files, size = s.facts.raw_videos
    kept = (
        f"`videos/` holds {_many(files, 'downloaded video file')} ({_size(size)})"
        if files
        else "`videos/` holds no video (never downloaded here, deleted, or a streaming build, which deletes "
        "each video once cut)"
    )
    if s.part("detections"):
        videos = _n(s.part("detections").get("videos"))
        kept += f"; `detections/` holds every box found, kept or dropped, for {videos} videos"
    return kept + "."


def _runs(s: Sheet) -> str:
    names = s.facts.runs
    if not names:
        return "No pre-training or evaluation run is recorded in this workspace (`runs/`)."
    shown = ", ".join(_text(n, 40) for n in names[:10]) + (", ..." if len(names) > 10 else "")
    return f"{_many(len(names), 'run')} in `runs/` hold a backbone or results: {shown}."


def _skew(s: Sheet) -> str:
    counts = sorted(
        (int(v) for v in s.part("crops_per_city").values() if isinstance(v, int | float)), reverse=True
    )
    if not sum(counts):
        return _unknown("how the crops spread over cities: no city is recorded for them")
    total = sum(counts)
    return (
        f"The crops are unevenly spread over {len(counts):,} cities: the largest holds "
        f"{100 * counts[0] / total:.1f} % of them, the {min(5, len(counts))} largest "
        f"{100 * sum(counts[:5]) / total:.1f} %."
    )


def _licences(s: Sheet) -> str:
    parts: list[str] = []
    if s.part("licenses"):
        parts += [
            "Crops by the licence of their source video (`stats.json`):",
            _counts(s.part("licenses"), "licence", "crops"),
        ]
    else:
        parts.append(_unknown("the licence of each crop's source video: `stats.json` records none"))
    if s.videos("license") is not None:
        parts += ["Videos of `videos.parquet` by licence:", _counts(s.videos("license"), "licence", "videos")]
    return _block(*parts)


def _third_party(s: Sheet) -> str:
    if s.sources() - {"images"}:
        return (
            "Via third parties: public YouTube videos, published by their uploaders, not by the persons "
            "shown."
        )
    return _unknown("where the imported images come from is not recorded here")


def _public(s: Sheet) -> str:
    if s.sources() - {"images"}:
        return (
            "The source videos were published on YouTube by their uploaders; the persons in them were "
            "filmed in public places, mostly as passers-by, and did not publish the videos themselves."
        )
    return _unknown("where the imported images come from, and whether any was private, is not recorded here")


def _tracklets(s: Sheet) -> str:
    if s.facts.tracklets:
        return (
            "`shards/tracklets.parquet` links crops into tracklets (`detect --tracks`): the crops of one "
            "tracklet are taken as one person, unchecked by a human."
        )
    return "No tracklets were built (there is no `shards/tracklets.parquet`)."


def fields(s: Sheet, root: Path, now: datetime) -> dict[str, str]:
    """The template's ``${name}`` fields: every answer the workspace gives."""
    cities = s.part("crops_per_city")
    told = "; ".join(f"from {x}: {FIELDS[x]}" for x in sorted(s.sources()) if x in FIELDS)
    return {
        "root": _text(root.name, 60),
        "created": _utc(now),
        "origin": _origin(s),
        "counts": _block(
            _size_table(s),
            *(
                ["Crops per city (`stats.json`):", _counts(cities, "city", "crops")]
                if cities
                else [_unknown("crops per city: no city is recorded for the crops")]
            ),
        ),
        "sampling": _sampling(s),
        "metadata": f": {told}" if told else "",
        "tracklets": _tracklets(s),
        "failed": _failed(s),
        "noise": _noise(s),
        "public": _public(s),
        "faces": _faces(s),
        "videos": _videos(s),
        "mechanisms": _mechanisms(s),
        "timeframe": _timeframe(s),
        "third_party": _third_party(s),
        "takedowns": _takedowns(s),
        "rules": _rules(s),
        "kept": _kept(s),
        "commit": f", commit `{s.facts.commit}`" if s.facts.commit else "",  # git's hex, +dirty
        "runs": _runs(s),
        "skew": _skew(s),
        "shards": _n(s.report.get("shards")),
        "bytes": _n(s.report.get("bytes")),
        "licences": _licences(s),
    }


def datasheet(root: Path, report: dict[str, Any], now: datetime | None = None) -> str:
    """The markdown of ``DATASHEET.md``: :data:`TEMPLATE` filled from ``report`` (``stats.json``'s
    content) and the root's other files (:func:`shards.checks.build_facts.read_facts`)."""
    root = Path(root)
    sheet = Sheet(report, read_facts(root))
    text = string.Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        fields(sheet, root, now or datetime.now(UTC))
    )
    return re.sub(r"\n{3,}", "\n\n", text)  # an empty answer leaves no gap


STAMP = "<!-- written by python pipeline.py stats; sha256 of the text above: {} -->\n"


def edited(path: Path) -> bool:
    """``path`` exists and is not what ``stats`` last wrote there (its last line names the
    sha256 of the text above it): the maintainer has answered in it."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8", errors="replace")
    body, _, last = text.rstrip("\n").rpartition("\n")
    return last + "\n" != STAMP.format(hashlib.sha256((body + "\n").encode()).hexdigest())


def write_datasheet(root: Path, report: dict[str, Any], now: datetime | None = None) -> Path:
    """Write :func:`datasheet` atomically to ``<root>/DATASHEET.md`` and return its path; when the
    maintainer has edited that file (:func:`edited`), it is kept and the new text goes to
    ``DATASHEET.new.md`` beside it, to merge by hand."""
    path = Path(root) / FILE
    if edited(path):
        path = path.with_suffix(".new.md")
        log.warning("%s was edited since stats wrote it: kept; the new datasheet is %s", FILE, path.name)
    body = datasheet(root, report, now)
    body = body if body.endswith("\n") else body + "\n"
    write_text(path, body + STAMP.format(hashlib.sha256(body.encode()).hexdigest()))
    return path
