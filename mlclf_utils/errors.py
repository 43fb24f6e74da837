"""Errors that tell the user where their input went wrong.

Every error raised for bad input names the place: a file, a row, a column or a parameter.
A bare ``KeyError`` from pandas deep inside a notebook teaches nothing, so the stages raise
these instead. One warning lives here too: ``TruncationWarning``, the expected cut of long
texts, which ``truncation_lines`` turns into a plain printed line inside a stage.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
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


class StepRefused(MlclfError):
    """A notebook step refused before it wrote anything (``runner.runs`` raises it). JupyterLab
    shows the message alone: it names the run, the stage and what to do, and a traceback into
    the package would bury it."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook for an exception's display
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


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


class TruncationWarning(UserWarning):
    """Texts longer than the model's ``max_length`` were cut, as 01 cut them for training.

    A caller of ``Classifier`` or ``Explainer`` gets it as a warning, since nothing else tells
    them. Inside a stage the cut is expected (01 reported the share), so ``truncation_lines``
    prints it as one plain line instead of a red box."""

    def __init__(self, message: str, *, cut: int | None = None, total: int | None = None,
                 max_length: int | None = None, explained: bool = False) -> None:
        super().__init__(message)  # keywords optional: warnings.warn("...", TruncationWarning)
        self.cut, self.total, self.max_length, self.explained = cut, total, max_length, explained

    def line(self, where: str = "") -> str:
        """The plain sentence a stage prints, with ``where`` (a split, a model) in front."""
        head = f"{where}: " if where else ""
        if self.cut is None:
            return head + str(self)
        kept = ("only their first tokens are explained" if self.explained
                else f"they were cut to their first {self.max_length}")
        return (f"{head}{self.cut} of {self.total} texts were longer than {self.max_length} "
                f"tokens; {kept}, the same cut as in training (01 reported the share)")


# The lines already printed by the outermost truncation_lines block, shared with the blocks
# nested in it, so that a second model scored on the same split repeats nothing.
_PRINTED: contextvars.ContextVar = contextvars.ContextVar("mlclf_truncation_lines", default=None)


@contextlib.contextmanager
def truncation_lines(where: str = ""):
    """Inside the block, each ``TruncationWarning`` is printed once as a plain line (``where``
    in front) instead of shown as a warning; every other warning is left as it was."""
    token = _PRINTED.set(set()) if _PRINTED.get() is None else None
    printed = _PRINTED.get()
    with warnings.catch_warnings():  # restores the filters and showwarning on the way out
        # Always: a stage says every cut once, whatever a registry saw earlier; the set dedups.
        warnings.simplefilter("always", TruncationWarning)
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, TruncationWarning):
                return previous(message, category, filename, lineno, file, line)
            text = (message.line(where) if isinstance(message, TruncationWarning)
                    else TruncationWarning(str(message)).line(where))
            if text not in printed:
                printed.add(text)
                print(text, flush=True)
            return None

        warnings.showwarning = show
        try:
            yield
        finally:
            if token is not None:
                _PRINTED.reset(token)
