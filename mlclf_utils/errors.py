"""Errors that tell the user where their input went wrong.

Every error raised for bad input names the place: a file, a row, a column or a parameter.
A bare ``KeyError`` from pandas deep inside a notebook teaches nothing, so the stages raise
these instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class MlclfError(Exception):
    """Base class, so callers can catch everything this package raises on purpose."""


class DataError(MlclfError, ValueError):
    """Bad input data; the message says where (file, row, column)."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        rows: Sequence[int] | None = None,
        column: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message  # without the place, so a caller can say it of another place
        self.file = file
        self.rows = list(rows) if rows is not None else None
        self.column = column
        self.hint = hint
        where = []
        if file is not None:
            where.append(f"file {file!s}")
        if column is not None:
            where.append(f"column {column!r}")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:10])
            more = f" and {len(self.rows) - 10} more" if len(self.rows) > 10 else ""
            where.append(f"row{'s' if len(self.rows) > 1 else ''} {shown}{more}")
        text = f"{'; '.join(where)}: {message}" if where else message
        if hint:
            text += f"\n  -> {hint}"
        super().__init__(text)


class ParameterError(MlclfError, ValueError):
    """A parameter has a bad value; raised before any work starts."""

    def __init__(self, name: str, value: object, message: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"parameter {name}={value!r}: {message}")


class SetupError(MlclfError, RuntimeError):
    """Something outside Python is missing (apt lists, the network); says what to run."""


def require_columns(table, columns, name: str = "table", what: str | None = None) -> None:
    """A DataFrame holding ``columns``, or an error naming the missing ones and those present.

    ``name`` is the argument (for a wrong type), ``what`` the table in words (for a missing
    column), e.g. ``require_columns(audit, COLUMNS, "audit", "the audit table")``.
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise ParameterError(name, type(table).__name__, "must be a DataFrame")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{what or name} has no column(s) {missing}; it has {list(table.columns)}",
                        column=missing[0])


def check_positive_int(name: str, value) -> int:
    """``value`` if it is an int >= 1 (bools and numpy bools refused), else a ParameterError."""
    import numbers

    if isinstance(value, bool) or type(value).__name__ == "bool_" \
            or not isinstance(value, numbers.Integral) or value < 1:
        raise ParameterError(name, value, "must be a positive integer")
    return int(value)
