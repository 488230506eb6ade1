"""Read one workspace Parquet table, checked: the step every manifest reader starts with."""

from __future__ import annotations

from pathlib import Path

from common.errors import UsageError, one_line


def read_table(path: Path, required: tuple[str, ...], absent: str, remedy: str):
    """``path`` as a DataFrame; ``UsageError`` naming it when it does not exist (ending in
    ``absent``: what to run), cannot be read, or lacks one of ``required`` (ending in ``remedy``)."""
    import pandas as pd

    if not path.is_file():
        raise UsageError(f"{path} does not exist: {absent}")
    try:
        table = pd.read_parquet(path)
    except Exception as e:  # a damaged or foreign file
        raise UsageError(
            f"{path} is not a readable Parquet file ({one_line(str(e), 200)}); {remedy}"
        ) from None
    missing = set(required) - set(table.columns)
    if missing:
        raise UsageError(f"{path} lacks columns {sorted(missing)}; {remedy}")
    return table
