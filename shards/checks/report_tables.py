"""HTML pieces of ``report.html``: escaped tables, Table 1 from its text, and any JSON report
(``dets_report.json``) rendered generically: its lists of records as tables, the rest as figures."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

MAX_CELL = 300  # characters shown of one cell (a long list of malformed entries, say)


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
