"""``<root>/report.html``: one page to judge a build, written by ``stats`` beside ``stats.json``.

Sections: Table 1 (from the statistics ``stats.json`` holds), boxes per detection status with a
seeded grid of examples for each status (drawn on their frames, see :mod:`.report_examples`,
written to ``report_files/``), the figures of ``figures/`` (linked by relative path), the videos
(counts of filter's decisions and detect's outcomes, and the first ``TOP`` videos by boxes dropped,
by frames sampled, and detect's errors; every video in ``report_files/per_video.csv``, see
:mod:`.report_counts`) and, when the root has one, ``dets_report.json`` rendered generically
(:mod:`.report_tables`; a list longer than ``TOP`` linked as ``report_files/dets_<n>.csv``). The
page's size does not grow with the number of videos or boxes. Plain HTML with inline CSS and no
script: it opens from disk. Rewriting replaces ``report.html`` and the ``*.jpg`` and ``*.csv`` of
``report_files/`` only.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from common.atomic import write_text
from common.errors import UsageError
from shards.checks import report_examples as ex
from shards.checks.box_tally import BoxTally, tally
from shards.checks.report_counts import (
    FILE,
    NONE,
    TOP,
    cells,
    per_city,
    per_video,
    status_tally,
    summary,
    top_lists,
    write_csv,
)
from shards.checks.report_tables import html_table, json_report_html, records_csv, text_table_rows
from shards.checks.table1 import table1

PAGE = "report.html"
DETS_REPORT = "dets_report.json"
EXAMPLES = 8  # example boxes per detection status
CITIES = 200  # rows of the per-city table at most (LUPerson has 100 cities)
CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1250px}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums}
.figs img{height:260px;margin:4px;border:1px solid #ddd}
.grid{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0;font-size:.7em;text-align:center;width:min-content;min-width:110px}figure img{display:block}
.key{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em 0 1em}
.note{color:#a40}
.row{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
"""


def _rgb(bgr: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*bgr[::-1])


def table1_html(stats: dict[str, Any]) -> str:
    """Table 1 as the ``stats`` command prints it, as an HTML table."""
    rows = text_table_rows(table1(stats))
    return html_table(rows[0], rows[1:], "table1")


def figures_html(root: Path, figures: dict[str, str]) -> str:
    """The figures ``stats`` drew (relative links) and the ones it skipped, with why."""
    made = {k: v for k, v in figures.items() if not v.startswith("skipped")}
    links = "".join(
        f'<a href="{src}"><img src="{src}" alt="{escape(k)}"></a>'
        for k, src in ((k, escape(Path(v).relative_to(root).as_posix())) for k, v in made.items())
    )
    skipped = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in figures.items() if k not in made)
    return f'<div class="figs">{links}</div>' + (f"<ul>{skipped}</ul>" if skipped else "")


def example_html(e: dict[str, Any]) -> str:
    """One example: the image (``data-box``: where the outline lies in it) and its caption."""
    box = ",".join(str(v) for v in e["outline"])
    caption = f"{e['video_id']} frame {e['frame']} score {e['score']:.2f} {e['size'][0]}x{e['size'][1]}"
    return (
        f'<figure><img class="example" src="{escape(e["src"])}" data-status="{escape(e["status"])}" '
        f'data-box="{box}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'
    )


def legend(thresholds: set[float]) -> str:
    """What the colours of the examples mean."""
    shown = ", ".join(f"{t:g}" for t in sorted(thresholds)) or "-"
    keys = [
        (ex.KEPT_BOX, "box kept (ok)"),
        (ex.DROPPED_BOX, "box dropped"),
        (ex.KEYPOINT_ABOVE, f"keypoint confidence > threshold ({shown})"),
        (ex.KEYPOINT_BELOW, "keypoint confidence <= threshold"),
    ]
    return (
        "<p>"
        + "".join(f'<span class="key" style="background:{_rgb(c)}"></span>{t}' for c, t in keys)
        + "</p>"
    )


def detections_html(
    root: Path,
    counted: BoxTally,
    per_status: int,
    seed: int,
    thresholds: dict[str, float],
    blur: ex.Encoding | None = None,
    shown: list | None = None,
) -> str:
    """Boxes per status, then a grid of examples per status (``ok`` first, then §3.1's order);
    ``blur``: faces blurred in every example; ``shown`` gets the examples written."""
    counts = counted.by_status()
    if not counts:
        return "<p>No boxes: the root has no <code>detections/</code> box files (or they are empty).</p>"
    parts = [html_table(["status", "boxes"], list(counts.items()), "status-counts")]
    chosen = ex.chosen_boxes(counted, per_status, seed)
    examples, notes = ex.write_examples(root, chosen, thresholds, blur)
    if shown is not None:
        shown.extend(examples)
    parts.append(legend({e["threshold"] for e in examples}))
    parts += [f'<p class="note">{escape(n)}</p>' for n in notes]
    for status, n in counts.items():
        shown = [e for e in examples if e["status"] == status]
        parts.append(
            f'<h3 id="examples-{escape(status)}">{escape(status)}: {n:,} boxes, {len(shown)} shown</h3>'
        )
        parts.append('<div class="grid">' + "".join(example_html(e) for e in shown) + "</div>")
    return "\n".join(parts)


def faces_html(root: Path, stats: dict[str, Any], samples, n: int, seed: int, shown: list) -> str:
    """Face blurring: the counts of stats.json and ``n`` blurred crops as the shards hold them
    (regions outlined); one line when the build did not blur."""
    faces = stats.get("faces")
    if not faces:
        return "<p>Faces were not blurred (build-shards without <code>--blur-faces</code>).</p>"
    rows = [(k.replace("_", " "), f"{v:,}") for k, v in faces.items()]
    examples = ex.write_face_examples(root, samples, n, seed)
    shown.extend(examples)
    figures = "".join(
        f'<figure><img class="face" src="{escape(e["src"])}" alt="{escape(e["key"])}">'
        f"<figcaption>{escape(e['key'])}</figcaption></figure>"
        for e in examples
    )
    return (
        html_table(["crops", "count"], rows, "faces")
        + f'<p><span class="key" style="background:{_rgb(ex.FACE_REGION)}"></span>region blurred '
        "(the crops as written; every example on this page is blurred the same way)</p>"
        + f'<div class="grid">{figures}</div>'
    )


def videos_html(root: Path, table) -> str:
    """Counts of the per-video table, its first rows by a few orders, and a link to all of it
    (written to ``report_files/per_video.csv``)."""
    if table.empty:
        return "<p>No videos.</p>"
    href = f"{ex.FOLDER}/{FILE}"
    write_csv(root / href, table)
    parts = [
        f'<p>Every video, one row each ({len(table):,} rows, columns as below): <a id="per-video" '
        f'href="{href}">{href}</a>. Empty cells there, <code>{NONE}</code> here: does not apply.</p>',
        '<div class="row">',
        html_table(["videos", "count"], summary(table), "video-summary"),
        html_table(["filter", "videos"], status_tally(table, "filter"), "filter-status"),
        html_table(["detect", "videos"], status_tally(table, "detect"), "detect-status"),
        "</div>",
    ]
    cities = per_city(table)
    parts.append(f"<h3>Per city: {min(len(cities), CITIES):,} of {len(cities):,}, most videos first</h3>")
    parts.append(html_table(list(cities.columns), cities.head(CITIES).values.tolist(), "per-city"))
    for n, (title, total, rows) in enumerate(top_lists(table)):
        parts.append(f"<h3>{escape(title)}: {len(rows):,} of {total:,}</h3>")
        parts.append(html_table(list(table.columns), cells(rows), f"top-{n}") if total else "<p>None.</p>")
    return "\n".join(parts)


def dets_report_html(root: Path) -> str:
    """``dets_report.json`` (build-shards --from-dets) as tables, or nothing when there is none; a
    list of more than ``TOP`` entries shows its first ones and links all, as ``report_files/dets_<n>.csv``."""
    path = root / DETS_REPORT
    if not path.is_file():
        return ""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is not readable JSON ({e}); rerun build-shards --from-dets") from None
    spilled: list[str] = []

    def spill(key: str, records: list[dict]) -> str:
        href = f"{ex.FOLDER}/dets_{len(spilled):02d}.csv"  # numbered: keys come from the file
        write_text(root / href, records_csv(records))
        spilled.append(href)
        return href

    return f"<h2>{DETS_REPORT}</h2>\n" + json_report_html(doc, "dets", TOP, spill)


def page(root: Path, stats: dict[str, Any], figures: dict[str, str], body: list[str]) -> str:
    """The whole page around the sections in ``body``."""
    notes = "".join(f"<li>{escape(n)}</li>" for n in stats.get("notes", []))
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html lang="en"><head><meta charset="utf-8"><title>LUPerson build: {escape(root.name)}</title>',
            f"<style>{CSS}</style></head><body>",
            f"<h1>LUPerson build report: {escape(str(root))}</h1>",
            f"<p>Source: {escape(stats['source'])}; {stats['shards']:,} shards, {stats['bytes']:,} bytes. "
            "Figures from <code>stats.json</code> and the workspace files.</p>",
            f"<ul>{notes}</ul>" if notes else "",
            "<h2>Table 1</h2>",
            table1_html(stats),
            *body,
            "</body></html>",
        ]
    )


def write_report(
    root: Path,
    stats: dict[str, Any],
    figures: dict[str, str],
    samples,
    seed: int,
    examples: int = EXAMPLES,
    thresholds: dict[str, float] | None = None,
    counted: BoxTally | None = None,
) -> Path:
    """Write ``<root>/report.html`` and its example images; return the page's path.

    ``stats`` is what ``stats.json`` holds, ``figures`` what ``write_figures`` drew, ``samples``
    ``shards/samples.parquet`` (crops written per video), ``examples``
    the boxes shown per status (chosen with ``seed``), ``thresholds`` the keypoint thresholds per
    model family when the box files do not record theirs (default: ``report_examples.THRESHOLDS``),
    ``counted`` the box files' ``box_tally.tally`` when the caller has it.
    """
    root = Path(root)
    counted = tally(root) if counted is None else counted
    (root / ex.FOLDER).mkdir(parents=True, exist_ok=True)
    blur, shown = ex.blurring(root, stats.get("faces")), []
    body = [
        "<h2>Detections by status</h2>",
        detections_html(root, counted, examples, seed, thresholds or ex.THRESHOLDS, blur, shown),
        "<h2>Face blurring</h2>",
        faces_html(root, stats, samples, examples, seed, shown),
        "<h2>Figures</h2>",
        figures_html(root, figures),
        "<h2>Videos</h2>",
        videos_html(root, per_video(root, counted, samples)),
        dets_report_html(root),
    ]
    ex.remove_stale_images(root, shown)
    _remove_stale_tables(root / ex.FOLDER, "".join(body))
    write_text(root / PAGE, page(root, stats, figures, body))
    return root / PAGE


def _remove_stale_tables(folder: Path, body: str) -> None:
    """The ``*.csv`` of ``report_files/`` an earlier run linked and this page does not."""
    for stale in folder.glob("*.csv"):
        if f'href="{ex.FOLDER}/{stale.name}"' not in body:
            stale.unlink()
