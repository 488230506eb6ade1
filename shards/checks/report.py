"""``<root>/report.html``: one page to judge a build, written by ``stats`` beside ``stats.json``.

Sections: Table 1 (from the statistics ``stats.json`` holds), boxes per detection status with a
seeded grid of examples for each status (drawn on their frames, see :mod:`.report_examples`,
written to ``report_files/``), the figures of ``figures/`` (linked by relative path), the videos
and, when the root has one, ``dets_report.json``. Plain HTML with inline CSS and no script: it
opens from disk. Rewriting replaces ``report.html`` and the ``*.jpg`` and ``*.csv`` of
``report_files/`` only.

The page's size does not grow with the number of videos or boxes. The videos section is a table
with one row per video (filter's decision, detect's outcome, boxes per status, crops written;
46,260 rows at LUPerson's size), built column by column from the workspace files: every row goes
beside the page as ``report_files/per_video.csv``, and the page shows counts of it and its first
``TOP`` rows by a few orders (most boxes dropped, most frames sampled, detect's errors).
``dets_report.json`` is rendered generically (its lists of records as tables, the rest as
figures); a list longer than ``TOP`` is linked as ``report_files/dets_<n>.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import atomic_path, write_text
from common.errors import UsageError
from common.manifests import boxes, detections, video_filter
from shards.checks import report_examples as ex
from shards.checks.box_tally import BoxTally, tally
from shards.checks.table1 import table1

PAGE = "report.html"
DETS_REPORT = "dets_report.json"
PER_VIDEO = "per_video.csv"  # in report_files/
EXAMPLES = 8  # example boxes per detection status
CITIES = 200  # rows of the per-city table at most (LUPerson has 100 cities)
TOP = 20  # rows of each per-video list on the page
NONE = "-"  # on the page: a value that does not apply (the video was dropped, or has no box file)
MAX_CELL = 300  # characters shown of one cell (a long list of malformed entries, say)
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


def cell(value: Any) -> str:
    """One value as cell text: ``-`` for nothing, lists and dicts as compact JSON, cut at ``MAX_CELL``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, list | dict | tuple):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str = "") -> str:
    """A ``<table>`` (every cell escaped); cells that read as numbers are right-aligned."""

    def td(value: Any) -> str:
        text = cell(value)
        numeric = re.fullmatch(r"-?[\d,]+(\.\d+)?(e-?\d+)?", text) is not None
        return f'<td class="n">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"

    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(td(v) for v in row) + "</tr>" for row in rows)
    ident = f' id="{escape(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_table_rows(text: str) -> list[list[str]]:
    """The rows of a ``common.table.aligned`` text table (header first): each line cut where the
    dash runs of its rule line (the second line) lie."""
    lines = text.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    edges = [start for start, _ in spans] + [None]
    return [
        [line[a:b].strip() for a, b in zip(edges, edges[1:], strict=False)] for line in [lines[0], *lines[2:]]
    ]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys (``runner_up.scale``); other values as they are."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        flat |= flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    return flat


def is_records(value: Any) -> bool:
    """A non-empty list of dicts: one table row per entry (e.g. per video)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def split_report(doc: Any, prefix: str = "") -> tuple[dict[str, Any], dict[str, list[dict]]]:
    """A JSON document as (figures: dotted key -> value, tables: dotted key -> records), found at
    any depth; records are flattened so every key of every entry becomes a column."""
    figures: dict[str, Any] = {}
    tables: dict[str, list[dict]] = {}
    if not isinstance(doc, dict):
        return {prefix or "value": doc}, {}
    for key, value in doc.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if is_records(value):
            tables[name] = [flatten(v) for v in value]
        elif isinstance(value, dict) and value:
            inner_figures, inner_tables = split_report(value, name)
            figures |= inner_figures
            tables |= inner_tables
        else:
            figures[name] = value
    return figures, tables


def records_table(records: list[dict[str, Any]], table_id: str = "") -> str:
    """Records as a table whose columns are every key present, in order of first appearance."""
    columns = list(dict.fromkeys(k for r in records for k in r))
    return html_table(columns, [[r.get(c) for c in columns] for r in records], table_id)


def records_csv(records: list[dict[str, Any]]) -> str:
    """Records as CSV text, columns as in ``records_table``; lists and dicts as JSON, never cut."""
    columns = list(dict.fromkeys(k for r in records for k in r))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for r in records:
        values = (r.get(c) for c in columns)
        writer.writerow(
            "" if v is None else json.dumps(v, default=str) if isinstance(v, list | dict | tuple) else v
            for v in values
        )
    return out.getvalue()


def json_report_html(
    doc: Any, name: str, max_rows: int | None = None, spill: Callable[[str, list[dict]], str] | None = None
) -> str:
    """A JSON report as HTML: its figures as a two-column table, then one table per list of records.

    A list longer than ``max_rows`` (one entry per video: 46k at LUPerson's size) shows its first
    ``max_rows`` entries and links every entry: ``spill(key, records)`` writes them and returns the link.
    """
    figures, tables = split_report(doc)
    parts = [html_table(["key", "value"], list(figures.items()), f"{name}-figures")] if figures else []
    for key, records in tables.items():
        parts.append(f"<h3>{escape(key)} ({len(records):,})</h3>")
        if max_rows is not None and spill is not None and len(records) > max_rows:
            href = spill(key, records)
            parts.append(
                f'<p>The first {max_rows:,} of {len(records):,}; every one: <a href="{escape(href)}">'
                f"{escape(href)}</a>.</p>"
            )
            records = records[:max_rows]
        parts.append(records_table(records, f"{name}-{key}"))
    return "\n".join(parts)


def _filter_table(root: Path):
    """``video_filter.parquet``'s city, status and reason by video id (empty when absent)."""
    import pandas as pd

    columns = ["city", "filter", "filter reason"]
    if not (root / video_filter.FILE).is_file():
        return pd.DataFrame(columns=columns, index=pd.Index([], name="video"))
    table = video_filter.read(root, ("video_id", "keep")).reindex(
        columns=["video_id", "city", "status", "reason"]
    )
    table = table.drop_duplicates("video_id", keep="last").set_index("video_id")
    table.columns, table.index.name = columns, "video"
    table["city"] = table["city"].fillna("").astype(str)
    return table


def _detect_table(root: Path):
    """``detections.parquet``'s status, reason and frames sampled by video id (empty when absent)."""
    import pandas as pd

    columns = ["detect", "detect reason", "frames sampled"]
    if not (root / detections.FILE).is_file():
        return pd.DataFrame(columns=columns, index=pd.Index([], name="video"))
    table = detections.read(root).reindex(columns=["video_id", "status", "reason", "frames_sampled"])
    table = table.drop_duplicates("video_id", keep="last").set_index("video_id")
    table.columns, table.index.name = columns, "video"
    return table.astype({"frames sampled": "Int64"})


def per_video(root: Path, counted: BoxTally, samples):
    """One row per video of the filter or with a box file, sorted by id. Columns: video, city,
    filter, filter reason, detect, detect reason, frames sampled, boxes, one per box status present,
    crops written (``samples.parquet`` rows ``ok`` of the video). Empty (NA) where a value does not
    apply: no filter row, not detected, no box file."""
    import pandas as pd

    root = Path(root)
    statuses = list(counted.by_status())
    picked = counted.counts[:, [boxes.STATUSES.index(s) for s in statuses]]
    ids = pd.Index(counted.video_ids, name="video")
    counts = pd.DataFrame(picked, index=ids, columns=statuses).astype("Int64")
    counts.insert(0, "boxes", pd.array(counted.counts.sum(axis=1), dtype="Int64"))
    filtered, detected = _filter_table(root), _detect_table(root)
    every = pd.Index(sorted(set(filtered.index) | set(ids)), name="video")
    table = filtered.reindex(every).join(detected).join(counts)
    written = samples.loc[samples["status"] == "ok", "video_id"].value_counts()
    table["crops written"] = written.reindex(every, fill_value=0).to_numpy(np.int64)
    return table.reset_index()


def write_csv(path: Path, table) -> None:
    """``table`` as CSV at ``path``, atomically (empty cells: does not apply)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def summary(table) -> list[tuple[str, int]]:
    """How many videos the per-video table holds, and how many of them reached each step."""
    boxes_known = table["boxes"].notna()
    return [
        ("videos", len(table)),
        ("kept by filter", int((table["filter"] == "ok").sum())),
        ("detected (in detections.parquet)", int(table["detect"].notna().sum())),
        ("with a box file", int(boxes_known.sum())),
        ("with a kept box (ok)", int((table["ok"] > 0).sum()) if "ok" in table else 0),
        ("with crops written", int((table["crops written"] > 0).sum())),
    ]


def status_tally(table, column: str) -> list[tuple[str, int]]:
    """Videos per value of ``column`` (filter's or detect's status), most first."""
    counts = table[column].dropna().value_counts()
    return sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))


def per_city(table):
    """The per-video table summed by city (``(none)``: no city), most videos first: videos, kept
    by filter, with a box file, boxes, kept boxes (ok), crops written."""
    import pandas as pd

    ok = table["ok"] if "ok" in table else pd.Series(0, index=table.index)
    parts = pd.DataFrame(
        {
            "city": table["city"].fillna("").replace("", "(none)"),
            "videos": 1,
            "kept by filter": (table["filter"] == "ok").astype(int),
            "with a box file": table["boxes"].notna().astype(int),
            "boxes": table["boxes"].fillna(0),
            "ok": ok.fillna(0),
            "crops written": table["crops written"],
        }
    )
    cities = parts.groupby("city", sort=True).sum().astype(np.int64).reset_index()
    return cities.sort_values(["videos", "city"], ascending=[False, True], kind="stable")


def top_lists(table) -> list[tuple[str, int, object]]:
    """The page's per-video lists: (title, rows in all, the first ``TOP`` rows), each by one order."""
    dropped = table["boxes"].fillna(0) - (table["ok"].fillna(0) if "ok" in table else 0)
    frames = table["frames sampled"].fillna(0)
    errors = table[table["detect"] == "error"]
    lists = [
        ("most boxes dropped by §3.1's rules", table.assign(_key=dropped)[dropped > 0]),
        ("most frames sampled (detect's longest)", table.assign(_key=frames)[frames > 0]),
    ]
    out = []
    for title, rows in lists:
        rows = rows.sort_values(["_key", "video"], ascending=[False, True], kind="stable")
        out.append((f"The videos with the {title}", len(rows), rows.drop(columns="_key").head(TOP)))
    out.append(("Videos detect could not read", len(errors), errors.head(TOP)))
    return out


def cells(rows) -> list[list[str]]:
    """Rows of the per-video table as page cells: ``NONE`` where a value does not apply."""
    import pandas as pd

    return [[NONE if pd.isna(v) else str(v) for v in row] for row in rows.itertuples(index=False)]


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
    href = f"{ex.FOLDER}/{PER_VIDEO}"
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
