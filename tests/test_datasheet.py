"""``stats`` writes ``DATASHEET.md`` (issue 26, item 4): Gebru et al.'s seven sections, answered from
the workspace, the rest marked for the maintainer.

Three real roots, each ending with ``python pipeline.py stats``:

- bare: ``build-shards --from-images`` on 30 of the unlabeled crops (no crawl, no settings of the
  other stages, no takedown log);
- rich: the same with ``--blur-faces``, then given a ``videos.parquet`` written by crawl's own
  writer (25 cities, one named with markup; licences; upload dates), the settings files of crawl,
  filter and detect, and one takedown request logged by the takedown log's writer;
- chain: crawl (``--urls``, a local clip), filter, detect (HOG, every 100th frame) and build-shards.

Every count the datasheet states is compared with the same count computed here from the workspace's
files with pyarrow.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import pipeline
from collect.settings import CrawlSettings
from common.manifests import takedowns
from common.manifests import videos as videos_file
from common.settings import save_settings
from detect.settings import DetectSettings
from filter.settings import FilterSettings
from shards.checks.datasheet import MAINTAINER, datasheet

SECTIONS = [  # Gebru et al., "Datasheets for Datasets", CACM 2021, in order
    "Motivation",
    "Composition",
    "Collection process",
    "Preprocessing/cleaning/labeling",
    "Uses",
    "Distribution",
    "Maintenance",
]
CITIES = [f"City {i:02d}" for i in range(24)] + ["Pipe | <script>alert(1)</script> *bold*"]
LICENCES = ["Creative Commons Attribution license (reuse allowed)", "", None]


def build(images: Path, root: Path, *flags: str) -> Path:
    assert pipeline.main(["build-shards", "--root", str(root), "--from-images", str(images), *flags]) == 0
    return root


def run_stats(root: Path) -> str:
    assert pipeline.main(["stats", "--root", str(root), "--grid-size", "2", "--report-examples", "1"]) == 0
    return (root / "DATASHEET.md").read_text()


@pytest.fixture(scope="module")
def images(unlabeled_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for src in sorted(p for p in unlabeled_dir.rglob("*.jpg"))[:30]:
        shutil.copy(src, folder / src.name)
    return folder


@pytest.fixture(scope="module")
def bare(images, tmp_path_factory) -> Path:
    root = build(images, tmp_path_factory.mktemp("bare") / "root")
    run_stats(root)
    return root


def video_rows() -> list[dict]:
    """60 videos over 25 cities (one with markup in its name), three statuses, three licences,
    upload dates 2019-2022 (a fifth of them without one)."""
    rows = []
    for i in range(60):
        rows.append(
            videos_file.new_row(
                f"vid{i:03d}",
                f"https://www.youtube.com/watch?v=vid{i:03d}",
                city=CITIES[i % len(CITIES)] if i < 50 else CITIES[-1],
                status=("ok", "ok", "unavailable", "not_licensed")[i % 4],
                license=LICENCES[i % 3],
                upload_date=None if i % 5 == 0 else f"{2019 + i % 4}{1 + i % 12:02d}{1 + i % 28:02d}",
            )
        )
    return rows


@pytest.fixture(scope="module")
def rich(images, shared_data, tmp_path_factory) -> Path:
    for model in ("face_detection_full_range_sparse.tflite", "pose_landmark_full.tflite"):
        if not (shared_data / "models" / model).is_file():
            pytest.skip(f"no {model} in {shared_data / 'models'} (fetch-samples fetches it)")
    root = build(images, tmp_path_factory.mktemp("rich") / "root", "--blur-faces")
    videos_file.save(root, video_rows())
    save_settings(CrawlSettings(cities="configs/top100.txt"), pipeline.settings_file("crawl", root), "crawl")
    save_settings(FilterSettings(), pipeline.settings_file("filter", root), "filter")
    save_settings(DetectSettings(), pipeline.settings_file("detect", root), "detect")
    takedowns.append(
        root,
        {
            "id": "request-1",
            "time": "2026-03-04T05:06:07+00:00",
            "reason": "a person asked to be removed",
            "videos": ["vid001"],
            "keys": ["0002", "0003"],
            "crops_removed": 2,
            "shards_rewritten": ["lup-000000.tar"],
            "unmatched": ["vid999"],
        },
    )
    run_stats(root)
    return root


def answer(text: str, question: str) -> str:
    """The answer under the ``### `` heading that starts with ``question``."""
    blocks = re.split(r"^### ", text, flags=re.M)
    found = [b for b in blocks if b.startswith(question)]
    assert len(found) == 1, question
    return found[0].split("\n", 1)[1].split("\n## ")[0]


def tables(block: str) -> list[list[list[str]]]:
    """Every markdown table of ``block``: rows of cells (header and rule row left out)."""
    out, rows = [], []
    for line in [*block.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif rows:
            out.append(rows[2:])
            rows = []
    return out


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def plain(cell: str) -> str:
    """A cell's text without markdown's backslash escapes."""
    return re.sub(r"\\(.)", r"\1", cell)


def counted(table: list[list[str]]) -> dict[str, int]:
    """A count table as {label: count} (labels unescaped), the total row left out."""
    return {plain(row[0]): number(row[1]) for row in table if row[0] != "total"}


def written(root: Path):
    samples = pq.read_table(root / "shards" / "samples.parquet")
    return samples.filter(pc.equal(samples["status"], "ok"))


@pytest.fixture(scope="module")
def chain(videos_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chain") / "root"
    urls = root.parent / "urls.txt"
    urls.write_text(f"{videos_dir / 'one-by-one-person-detection.mp4'}\n")
    on = ["--root", str(root)]
    assert pipeline.main(["crawl", *on, "--urls", str(urls)]) == 0
    assert pipeline.main(["filter", *on, "--workers", "1"]) == 0
    assert pipeline.main(["detect", *on, "--detector", "hog", "--keypoints", "none", "--workers", "0"]) == 0
    assert pipeline.main(["build-shards", *on, "--workers", "1"]) == 0
    run_stats(root)
    return root


@pytest.mark.parametrize("which", ["bare", "rich", "chain"])
def test_the_seven_sections_in_order_every_question_answered(which, request):
    root = request.getfixturevalue(which)
    text = (root / "DATASHEET.md").read_text()
    assert re.findall(r"^## (.+)$", text, flags=re.M) == SECTIONS
    questions = re.split(r"^### ", text, flags=re.M)[1:]
    assert len(questions) >= 40
    for block in questions:  # every question has an answer, from the workspace or marked
        body = block.split("\n", 1)[1].split("\n## ")[0].strip()
        assert body, block
    marked = [line for line in text.splitlines() if MAINTAINER in line]
    assert len(marked) >= 25
    assert all(line.startswith(MAINTAINER) or line.startswith("- ") for line in marked)
    assert f"- {MAINTAINER} starts what only the dataset's maintainer can answer" in text  # explained on top
    who = answer(text, "Who created the dataset")
    assert who.strip().startswith(MAINTAINER)
    assert "${" not in text and "\n\n\n" not in text


@pytest.mark.parametrize("which", ["bare", "rich", "chain"])
def test_counts_equal_the_parquet_files(which, request):
    root = request.getfixturevalue(which)
    text = (root / "DATASHEET.md").read_text()
    rows = {row[0]: row for row in tables(answer(text, "How many instances"))[0]}
    ok = written(root)
    index = pq.read_table(root / "shards" / "index.parquet")
    assert number(rows["person crops (images)"][1]) == ok.num_rows > 0
    assert number(rows["person crops (images)"][2]) == 4_180_243  # the paper's Table 1
    assert number(rows["videos (scenes)"][2]) == 46_260 and number(rows["cities"][2]) == 100
    assert number(rows["WebDataset tar shards"][1]) == index.num_rows
    assert number(rows["bytes in shards"][1]) == pc.sum(index["bytes"]).as_py()
    width = pc.min_max(ok["width"]).as_py()
    assert rows["crop width, px (min / median / max)"][1].startswith(f"{width['min']:,} / ")
    licences = counted(tables(answer(text, "Will the dataset be distributed under a copyright"))[0])
    assert licences == {"unknown": ok.num_rows}  # no licence recorded: imported crops, a local clip


def test_a_bare_root_says_what_it_does_not_know(bare):
    text = (bare / "DATASHEET.md").read_text()
    assert answer(text, "How was the data associated").count("Unknown: how many videos were found") == 1
    assert "this workspace has no videos.parquet" in text
    assert "Unknown: when the videos were uploaded" in answer(text, "Over what timeframe")
    assert answer(text, "What mechanisms").startswith("\nUnknown: which software collected the data")
    assert "Unknown: how the imported crops were chosen" in answer(
        text, "Does the dataset contain all possible"
    )
    assert "No written crop went through face blurring" in answer(text, "Is it possible to identify")
    assert "there is no `takedowns.jsonl`" in answer(text, "Is there an erratum")
    # the time range of the build: the settings file build-shards wrote and the shards' tables
    timeframe = tables(answer(text, "Over what timeframe"))[0]
    assert [row[0] for row in timeframe] == [
        "build-shards (`settings/shards.yaml`)",
        "`shards/samples.parquet` last written",
        "`shards/index.parquet` last written",
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", row[1]) for row in timeframe)
    assert str(bare.parent) not in text  # no local path in a document that travels with the data


def test_a_rich_root_counts_videos_faces_and_takedowns_from_its_files(rich):
    text = (rich / "DATASHEET.md").read_text()
    videos = pq.read_table(rich / "videos.parquet").to_pydict()
    acquired = tables(answer(text, "How was the data associated"))
    by_status, by_city, by_licence = (counted(t) for t in acquired)
    assert by_status == dict(Counter(videos["status"]))
    assert f"`videos.parquet` lists {len(videos['video_id'])} videos." in text
    # cities: the 20 largest, one row for the other 5, then the total
    cities = Counter(videos["city"])
    top = sorted(cities.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    assert [n for n in by_city.values()][:20] == [n for _, n in top]
    assert by_city["5 others"] == sum(cities.values()) - sum(n for _, n in top)
    assert acquired[1][-1] == ["total", "60", "100.0 %"]
    assert len(acquired[1]) == 22
    assert all(len(row) == 3 for row in acquired[1])  # the city's "|" stays in its cell
    assert "<script>" not in text and r"Pipe \| \<script\>" in text
    licences = Counter((v or "").strip() for v in videos["license"])
    assert by_licence == {("(not recorded)" if k == "" else k): n for k, n in licences.items()}
    dated = sorted(d for d in videos["upload_date"] if d)
    day = (
        f"{dated[0][:4]}-{dated[0][4:6]}-{dated[0][6:]}",
        f"{dated[-1][:4]}-{dated[-1][4:6]}-{dated[-1][6:]}",
    )
    assert f"uploaded to YouTube between {day[0]} and {day[1]} ({len(dated)} of 60 videos" in text

    ok = written(rich).to_pandas()
    checked = ok[ok["faces"] >= 0]
    faces = answer(text, "Is it possible to identify")
    assert (
        f"{len(checked)} crops checked, 0 not, {int((checked['faces'] > 0).sum())} with a face region "
        f"blurred, {int(checked['faces'].sum())} regions in all"
    ) in faces
    assert int((checked["faces"] > 0).sum()) > 0

    assert (
        "`takedowns.jsonl` records 1 removal request carried out, the first on 2026-03-04 05:06 UTC, the "
        "last on 2026-03-04 05:06 UTC: 2 crops removed, 1 shard rewritten; 1 video and 2 crops named, "
        "1 name that matched nothing."
    ) in answer(text, "Is there an erratum")
    # the crops were imported: crawl's, filter's and detect's settings do not describe them
    assert "detect kept" not in text and "filter dropped videos" not in text
    assert answer(text, "What mechanisms").startswith("\nUnknown: which software collected the data")
    assert "Unknown: how the imported crops were chosen" in answer(text, "If the dataset is a sample")
    rows = [row[0] for row in tables(answer(text, "Over what timeframe"))[0]]
    assert rows[:4] == [
        "crawl (`settings/crawl.yaml`)",
        "filter (`settings/filter.yaml`)",
        "detect (`settings/detect.yaml`)",
        "build-shards (`settings/shards.yaml`)",
    ]


def test_a_detected_build_states_its_rules_boxes_and_videos(chain):
    text = (chain / "DATASHEET.md").read_text()
    assert "cut from this workspace's own detections" in answer(text, "What do the instances")
    samples = pq.read_table(chain / "shards" / "samples.parquet").to_pandas()
    ok = samples[samples["status"] == "ok"]
    persons = int(ok.groupby(["video_id", "frame"]).size().groupby(level=0).max().sum())  # §3.1
    rows = {row[0]: row for row in tables(answer(text, "How many instances"))[0]}
    assert number(rows["estimated persons (most crops in one frame, summed over videos)"][1]) == persons
    assert number(rows["videos (scenes)"][1]) == ok["video_id"].nunique() == 1

    boxes = Counter()
    for path in (chain / "detections").rglob("*.parquet"):
        boxes.update(pq.read_table(path, columns=["status"])["status"].to_pylist())
    noise = tables(answer(text, "Are there any errors"))
    assert counted(noise[0]) == dict(boxes) and boxes["ok"] == len(ok)
    kept = pq.read_table(chain / "video_filter.parquet", columns=["status"])["status"].to_pylist()
    assert counted(noise[1]) == dict(Counter(kept))
    videos = pq.read_table(chain / "videos.parquet", columns=["status"])["status"].to_pylist()
    assert counted(tables(answer(text, "How was the data associated"))[0]) == dict(Counter(videos))

    rules = answer(text, "Was any preprocessing")
    assert "Filter dropped videos of fewer than 100 frames (paper: 100)" in rules
    assert (
        "detect kept, on every 100th frame (paper: 100), the boxes scoring above 1.0 (paper: 0.72)" in rules
    )
    assert "wider than 48.0 px (paper: 48)" in rules and "without keypoint rules" in rules
    mechanisms = answer(text, "What mechanisms")
    assert "Crawl fetched the videos listed in urls.txt" in mechanisms
    assert "the hog person detector, no keypoint model" in mechanisms
    assert "the videos are those listed in urls.txt" in answer(text, "If the dataset is a sample")
    stages = [row[0].split(" ")[0] for row in tables(answer(text, "Over what timeframe"))[0]][:4]
    assert stages == ["crawl", "filter", "detect", "build-shards"]
    clip = next((chain / "videos").rglob("*.mp4")).stat().st_size
    assert f"`videos/` holds 1 downloaded video file ({clip / 1e6:,.1f} MB)" in text
    assert "Unknown: when the videos were uploaded: no video of `videos.parquet` has an upload date" in text


def test_stats_reports_the_datasheet_and_rewrites_it(bare, capsys):
    before = (bare / "DATASHEET.md").read_text()
    capsys.readouterr()
    again = run_stats(bare)
    out = capsys.readouterr().out
    assert re.search(rf"^\s+datasheet\s+{re.escape(str(bare / 'DATASHEET.md'))}$", out, flags=re.M), out
    # the same but for the date it was written, the files' times, the checkout's commit (others
    # may commit or edit meanwhile) and the stamp's hash of all that
    strip = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC|, commit `[^`]*`|above: [0-9a-f]{64}")
    assert strip.sub("", again) == strip.sub("", before)
    assert not list(bare.glob(".DATASHEET.md*"))  # written through a temporary file, renamed


def test_missing_columns_bare_reports_and_unreadable_logs_are_unknowns(rich, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(rich, root)
    report = json.loads((root / "stats.json").read_text())
    # a videos.parquet made without the licence, upload date and city columns, a damaged takedown log
    old = pq.read_table(root / "videos.parquet").drop_columns(["license", "upload_date", "city"])
    pq.write_table(old, root / "videos.parquet")
    (root / "takedowns.jsonl").write_text("{not json\n")
    # a stats.json without face and licence counts
    older = {k: v for k, v in report.items() if k not in ("faces", "licenses")}
    text = datasheet(root, older)
    assert "Unknown: videos by licence: `videos.parquet` has no `license` column" in text
    assert "Unknown: videos by city: `videos.parquet` has no `city` column" in text
    assert "Unknown: when the videos were uploaded: `videos.parquet` has no `upload_date` column" in text
    assert "Unknown: which removal requests were carried out: <root>/takedowns.jsonl line 1" in text
    assert "No written crop went through face blurring" in text
    assert "Unknown: the licence of each crop's source video" in text
    # an unreadable manifest: one sentence, not an error; so is a report that is nearly empty
    (root / "videos.parquet").write_bytes(b"not parquet")
    text = datasheet(root, {"source": "images"})
    assert "Unknown: how many videos were found and downloaded: videos.parquet cannot be read" in text
    assert re.findall(r"^## (.+)$", text, flags=re.M) == SECTIONS


def test_settings_a_detected_build_lacks_are_named(chain, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(chain, root)
    report = json.loads((root / "stats.json").read_text())
    (root / "settings" / "detect.yaml").write_text("detect: [unclosed\n")
    (root / "settings" / "filter.yaml").unlink()
    text = datasheet(root, report)
    rules = answer(text, "Was any preprocessing")
    assert (
        "Unknown: the settings of filter: there is no settings/filter.yaml (filter never ran here)." in rules
    )
    assert (
        "Unknown: the settings of detect: settings/detect.yaml cannot be read (config file <root>/" in rules
    )
    assert "detect kept" not in rules and "Build-shards saved each crop as JPEG (quality 95" in rules
    assert "Unknown: the settings of detect" in answer(text, "What mechanisms")


def test_a_datasheet_the_maintainer_answered_in_is_never_overwritten(tmp_path, unlabeled_dir):
    """Answers typed into DATASHEET.md are the maintainer's: the next stats writes DATASHEET.new.md."""
    import pipeline

    images = tmp_path / "crops"
    images.mkdir()
    for path in sorted((unlabeled_dir / "MIT").iterdir())[:5]:
        (images / path.name).write_bytes(path.read_bytes())
    root = tmp_path / "root"
    assert pipeline.main(["build-shards", "--from-images", str(images), "--root", str(root)]) == 0
    assert pipeline.main(["stats", "--root", str(root)]) == 0
    sheet = root / "DATASHEET.md"
    first = sheet.read_text()
    assert pipeline.main(["stats", "--root", str(root)]) == 0  # not edited: rewritten in place
    assert not (root / "DATASHEET.new.md").exists()
    answered = sheet.read_text().replace("**[maintainer]** Name the funder", "Funded by no one.", 1)
    assert answered != first
    sheet.write_text(answered)
    assert pipeline.main(["stats", "--root", str(root)]) == 0
    assert sheet.read_text() == answered
    assert "**[maintainer]** Name the funder" in (root / "DATASHEET.new.md").read_text()
