"""Plain-text tables with aligned columns: the one printer every stage and benchmark uses."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def aligned(
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int] = (),
    rule: str | None = "columns",
    strip: bool = True,
) -> str:
    """``rows`` (the first is the header) as lines of columns two spaces apart, each as wide as its
    widest cell; columns numbered in ``right`` are right-aligned, the others left-aligned.

    ``rule`` is the line under the header: ``"columns"`` one dash run per column, ``"full"`` one
    run as long as the longest line, ``None`` no rule. ``strip`` drops each line's trailing spaces.
    """
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        text = "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs)
        return text.rstrip() if strip else text

    lines = [line(r) for r in rows]
    if rule == "columns":
        lines.insert(1, "  ".join("-" * w for w in widths))
    elif rule == "full":
        lines.insert(1, "-" * max(len(x) for x in lines))
    elif rule is not None:
        raise ValueError(f"rule must be 'columns', 'full' or None, got {rule!r}")
    return "\n".join(lines)
