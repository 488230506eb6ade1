"""``stats`` writes ``report.html``: filter + detect (HOG + BlazePose, real keypoints) + build-shards on
one real clip, then stats; the page is read back with the standard library's ``html.parser`` (it is
written with string templates), its linked per-video CSV with the ``csv`` module, and both are
checked against stats.json and the workspace's Parquet files. Copies of the clip's box file under
many video ids show that the page's size does not grow with the number of videos."""

from __future__ import annotations

import csv
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from common.manifests import boxes
from detect.run import detect
from detect.settings import DetectSettings
from shards.build import build_shards
from shards.checks import report_examples as ex
from shards.checks.report import EXAMPLES, TOP
from shards.checks.stats import stats
from shards.settings import ShardSettings, StatsSettings

MODEL = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "models" / "pose_landmark_full.tflite"
)
DETS_REPORT = {
    "source": "dets.pkl",
    "videos": {"listed": 2, "not_cut": {"mismatch": 1}},
    "calibration": {
        "outcomes": {"verified": 1, "mismatch": 1},
        "videos": [
            {"vname": "a+b+c", "scale": 1.5, "offset": 0, "runner_up": {"scale": 1.0, "agreement": 0.41}},
            {"vname": "d+e+f", "outcome": "mismatch", "shift_votes": [1, 4], "a_new_key": "shown"},
        ],
    },
    # one entry per video: longer than the page shows
    "videos_not_cut": [{"vname": f"c+d+{i:03d}", "why": {"code": "mismatch"}} for i in range(2 * TOP + 5)],
}


class Page(HTMLParser):
    """Tables by id (rows of cell text, header first), every <img>'s attributes and every link."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict[str, str]] = []
        self.links: list[dict[str, str]] = []
        self.table, self.cell = None, None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "table":
            self.table = self.tables.setdefault(attrs.get("id", f"anonymous{len(self.tables)}"), [])
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        elif tag in ("td", "th"):
            self.cell = ""
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "a":
            self.links.append(attrs)

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.table is not None:
            self.table[-1].append(self.cell)
            self.cell = None
        elif tag == "table":
            self.table = None


@pytest.fixture(scope="module")
def built(videos_dir, tmp_path_factory) -> dict:
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is in requirements.txt")
    if not MODEL.is_file():
        pytest.skip(f"sample data missing: {MODEL} (CI always has ../shared/data)")
    root = tmp_path_factory.mktemp("report_ws")
    rows = [
        ("one-by-one", str(videos_dir / "one-by-one-person-detection.mp4"), True, "ok", 1394),
        ("gif", str(videos_dir / "people-detection.gif"), False, "too_short", 40),
    ]
    columns = ["video_id", "path", "keep", "status", "n_frames"]
    pd.DataFrame(rows, columns=columns).to_parquet(root / "video_filter.parquet")
    cfg = DetectSettings(
        detector="hog", keypoints="blazepose", pose_weights=str(MODEL), frame_step=25, workers=0, batch_size=8
    )
    detect(cfg, root)
    build_shards(ShardSettings(workers=1), root)
    (root / "dets_report.json").write_text(json.dumps(DETS_REPORT))
    (root / ex.FOLDER).mkdir()
    (root / ex.FOLDER / "low_score_999.jpg").write_bytes(b"stale")  # an earlier run's example
    (root / ex.FOLDER / "dets_07.csv").write_text("stale")  # and table
    (root / ex.FOLDER / "keep.txt").write_text("not ours")
    summary = stats(StatsSettings(), root)
    page = Page((root / "report.html").read_text())
    return {
        "root": root,
        "summary": summary,
        "page": page,
        "stats": json.loads((root / "stats.json").read_text()),
    }


def test_every_image_exists_and_stale_examples_are_gone(built):
    root, page = built["root"], built["page"]
    assert page.images
    for img in page.images:
        assert not Path(img["src"]).is_absolute() and (root / img["src"]).is_file(), img["src"]
    assert not (root / ex.FOLDER / "low_score_999.jpg").exists()
    assert not (root / ex.FOLDER / "dets_07.csv").exists()
    for link in (a for a in page.links if a.get("href", "").startswith(ex.FOLDER)):
        assert (root / link["href"]).is_file(), link
    assert (root / ex.FOLDER / "keep.txt").read_text() == "not ours"
    figures = {Path(i["src"]).name for i in page.images if i.get("class") != "example"}
    assert figures == {
        Path(v).name for v in built["stats"]["figures"].values() if not v.startswith("skipped")
    }


def test_status_counts_equal_stats_json(built):
    table = built["page"].tables["status-counts"]
    shown = {status: int(n.replace(",", "")) for status, n in table[1:]}
    assert shown == built["stats"]["detections"]["reasons"]
    assert {"ok", "low_score", "no_head"} <= set(shown), shown  # measured on this clip (test_blazepose_stage)


def per_video_rows(root: Path, page: Page) -> list[dict[str, str]]:
    """The rows of the per-video file the page links (``<a id="per-video">``)."""
    href = next(a["href"] for a in page.links if a.get("id") == "per-video")
    with open(root / href, newline="") as f:
        return list(csv.DictReader(f))


def test_per_video_counts_equal_the_parquet_files(built):
    root = built["root"]
    table = per_video_rows(root, built["page"])
    header, rows = list(table[0]), {r["video"]: r for r in table}
    assert set(rows) == {"one-by-one", "gif"}
    assert (rows["one-by-one"]["filter"], rows["gif"]["filter"]) == ("ok", "too_short")
    assert rows["gif"]["boxes"] == "" and rows["gif"]["detect"] == ""  # empty: does not apply
    found = boxes.read(boxes.path_of(root, "one-by-one"), ["status"])["status"].value_counts()
    assert int(rows["one-by-one"]["boxes"]) == found.sum()
    statuses = header[header.index("boxes") + 1 : header.index("crops written")]
    assert {s: int(rows["one-by-one"][s]) for s in statuses} == found.to_dict()
    samples = pd.read_parquet(root / "shards" / "samples.parquet")
    assert int(rows["one-by-one"]["crops written"]) == int((samples["status"] == "ok").sum()) > 0
    detected = pd.read_parquet(root / "detections.parquet").set_index("video_id").loc["one-by-one"]
    assert int(rows["one-by-one"]["frames sampled"]) == int(detected["frames_sampled"]) > 0
    assert rows["one-by-one"]["detect"] == detected["status"] == "ok"


def test_video_summaries_equal_stats_json_and_the_file(built):
    tables, table = built["page"].tables, per_video_rows(built["root"], built["page"])
    filtered = {status: int(n) for status, n in tables["filter-status"][1:]}
    assert filtered == built["stats"]["video_filter"]["reasons"]
    counts = {what: int(n) for what, n in tables["video-summary"][1:]}
    assert counts["videos"] == len(table) == 2
    assert counts["with a box file"] == built["stats"]["detections"]["videos"] == 1
    assert counts["with crops written"] == sum(int(r["crops written"]) > 0 for r in table)
    cities = tables["per-city"]
    assert [dict(zip(cities[0], r, strict=True))["videos"] for r in cities[1:]] == ["2"]  # no city: one row
    dropped = tables["top-0"]  # most boxes dropped: the one video with boxes
    one = next(r for r in table if r["video"] == "one-by-one")
    counted = dropped[0][dropped[0].index("boxes") :]  # boxes, per status, crops written
    assert [r[0] for r in dropped[1:]] == ["one-by-one"]
    assert dropped[1][dropped[0].index("boxes") :] == [one[k] for k in counted]


def copy_videos(built: Path, root: Path, n: int) -> None:
    """``built`` with ``n`` more kept videos: copies of one-by-one's box file and filter row."""
    shutil.copytree(built, root)
    source = pq.read_table(boxes.path_of(root, "one-by-one")).to_pydict()
    for i in range(n):
        vid = f"copy{i:03d}"
        boxes.path_of(root, vid).parent.mkdir(parents=True, exist_ok=True)
        boxes.write(boxes.path_of(root, vid), source | {"video_id": [vid] * len(source["frame"])})
    filtered = pd.read_parquet(root / "video_filter.parquet")
    more = pd.concat([filtered.iloc[[0]].assign(video_id=f"copy{i:03d}") for i in range(n)])
    pd.concat([filtered, more], ignore_index=True).to_parquet(root / "video_filter.parquet", index=False)


def test_the_page_does_not_grow_with_the_videos(built, tmp_path):
    """Past ``TOP`` videos the page holds as many rows whatever their number; the file holds all."""
    shown = {}
    for n in (2 * TOP, 4 * TOP):
        root = tmp_path / f"n{n}"
        copy_videos(built["root"], root, n)
        stats(StatsSettings(report_examples=1, grid_size=2), root)
        page = Page((root / "report.html").read_text())
        assert len(per_video_rows(root, page)) == n + 2
        assert len(page.tables["top-0"]) == 1 + TOP  # header + the first TOP of n + 1 videos with drops
        shown[n] = sum(len(rows) for rows in page.tables.values())
    assert shown[2 * TOP] == shown[4 * TOP]


def test_each_status_has_seeded_examples(built):
    examples = [i for i in built["page"].images if i.get("class") == "example"]
    for status, n in built["stats"]["detections"]["reasons"].items():
        assert sum(i["data-status"] == status for i in examples) == min(EXAMPLES, n), status
    again = stats(StatsSettings(), built["root"])
    assert again["report"] == built["summary"]["report"]
    assert Page((built["root"] / "report.html").read_text()).images == built["page"].images


def colour_share(image: np.ndarray, points: list[tuple[int, int]], bgr: tuple[int, int, int]) -> float:
    """The share of ``points`` (x, y) whose pixel is within 80 (summed over channels) of ``bgr``."""
    rgb = np.asarray(bgr[::-1], dtype=int)
    inside = [(x, y) for x, y in points if 0 <= x < image.shape[1] and 0 <= y < image.shape[0]]
    return sum(int(np.abs(image[y, x].astype(int) - rgb).sum()) < 80 for x, y in inside) / max(1, len(inside))


def test_example_images_show_the_box_and_keypoints(built):
    root = built["root"]
    magenta = 0
    for img in (i for i in built["page"].images if i.get("class") == "example"):
        pixels = np.asarray(Image.open(root / img["src"]).convert("RGB"))
        x1, y1, x2, y2 = (int(v) for v in img["data-box"].split(","))
        edge = [(x, y) for x in range(x1, x2, 3) for y in (y1, y2)] + [
            (x, y) for y in range(y1, y2, 3) for x in (x1, x2)
        ]
        colour = ex.KEPT_BOX if img["data-status"] == "ok" else ex.DROPPED_BOX
        assert colour_share(pixels, edge, colour) > 0.6, img
        centre = [(x, y) for x in range(x1 + 6, x2 - 6, 4) for y in range(y1 + 6, y2 - 6, 4)]
        assert colour_share(pixels, centre, colour) < 0.2, img  # the outline, not a filled box
        if img["data-status"] == "no_head":
            whole = [(x, y) for x in range(pixels.shape[1]) for y in range(pixels.shape[0])]
            magenta += colour_share(pixels, whole, ex.KEYPOINT_BELOW) > 0
    assert magenta > 0  # no_head boxes have keypoints below BlazePose's 0.8


def test_threshold_follows_the_keypoint_model():
    assert ex.keypoint_threshold("blazepose", None, ex.THRESHOLDS) == 0.8
    assert ex.keypoint_threshold("hrnet_w32", None, ex.THRESHOLDS) == 0.3
    assert ex.keypoint_threshold("blazepose", "0.5", ex.THRESHOLDS) == 0.5  # recorded by detect


def test_dets_report_rendered_with_every_key(built):
    tables = built["page"].tables
    videos = tables["dets-calibration.videos"]
    assert videos[0] == ["vname", "scale", "offset", "runner_up.scale", "runner_up.agreement", "outcome"] + [
        "shift_votes",
        "a_new_key",
    ]
    assert [r[0] for r in videos[1:]] == ["a+b+c", "d+e+f"] and videos[2][-1] == "shown"
    figures = dict(tables["dets-figures"][1:])
    assert figures["videos.not_cut.mismatch"] == "1" and figures["calibration.outcomes.verified"] == "1"


def test_a_long_dets_list_shows_its_first_entries_and_links_all(built):
    listed = DETS_REPORT["videos_not_cut"]
    shown = built["page"].tables["dets-videos_not_cut"]
    assert shown[0] == ["vname", "why.code"] and [r[0] for r in shown[1:]] == [
        v["vname"] for v in listed[:TOP]
    ]
    href = next(a["href"] for a in built["page"].links if a["href"].startswith(f"{ex.FOLDER}/dets_"))
    with open(built["root"] / href, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"vname": v["vname"], "why.code": "mismatch"} for v in listed]
