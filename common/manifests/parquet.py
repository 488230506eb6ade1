"""Read one workspace Parquet table, checked: the step every manifest reader starts with; and
``rows_table``, the Arrow table the streaming writers make of each block of row tuples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from common.errors import UsageError, one_line


def read_table(
    path: Path,
    required: tuple[str, ...],
    absent: str,
    remedy: str,
    *,
    columns: list[str] | None = None,
):
    """``path`` as a DataFrame; ``UsageError`` naming it when it does not exist (ending in
    ``absent``: what to run), cannot be read, or lacks one of ``required`` (ending in ``remedy``).

    ``columns``: read only those the file has (a caller may ask for optional ones).
    """
    import pandas as pd
    import pyarrow.parquet as pq

    if not path.is_file():
        raise UsageError(f"{path} does not exist: {absent}")
    try:
        names = pq.read_schema(path).names
        wanted = None if columns is None else [c for c in columns if c in names]
        table = pd.read_parquet(path, columns=wanted)
    except Exception as e:  # a damaged or foreign file
        raise UsageError(
            f"{path} is not a readable Parquet file ({one_line(str(e), 200)}); {remedy}"
        ) from None
    missing = set(required) - set(table.columns)
    if missing:
        raise UsageError(f"{path} lacks columns {sorted(missing)}; {remedy}")
    return table


def check_file_names(path: Path, names, remedy: str, *, empty_ok: bool = False) -> None:
    """``UsageError`` naming ``path`` when one of ``names`` (a column read from it) is not one plain
    file name of the folder it is joined to: no folder part, no ``..``, no NUL (``""`` only with
    ``empty_ok``)."""
    for name in map(str, names):
        if name == "" and empty_ok:
            continue
        if Path(name).name != name or name in ("", ".", "..") or "\x00" in name:
            raise UsageError(
                f"{path} lists {one_line(repr(name), 80)}, which is not a file name in {path.parent}; {remedy}"
            )


def rows_table(rows: Sequence[tuple], schema):
    """Row tuples (at least one) as an Arrow table of ``schema``: a column per field, in order."""
    import pyarrow as pa

    columns = zip(*rows, strict=True)
    arrays = [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)
