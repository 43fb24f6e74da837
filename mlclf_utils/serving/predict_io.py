"""Files in and out for the ``predict`` command: texts from .txt/.csv/.tsv/.jsonl/.parquet, and
predictions as CSV or JSONL.

Kept apart from ``predict`` because only the command line reads and writes files: the
SageMaker export copies ``predict`` into the container, and this half (with ``data.sources``
and pandas' writers) stays out of it. ``predict`` still answers for these names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.serving.predict import ROWS_NOTE

TEXT_FORMATS = (".txt", ".csv", ".tsv", ".jsonl", ".ndjson", ".parquet")
OUTPUT_FORMATS = ("csv", "jsonl")
PROB_PREFIX = "prob:"



def read_texts(path, *, text_column: str = "text") -> tuple[list[str], int]:
    """Texts from a file, and how many blank lines of a .txt file were skipped.

    ``.txt``: one text per line (blank lines skipped and counted). ``.csv``, ``.tsv``,
    ``.jsonl``, ``.parquet``: the ``text_column``; a missing or empty cell names its row.
    """
    texts, _, skipped = read_text_rows(path, text_column=text_column)
    return texts, skipped


def read_text_rows(path, *, text_column: str = "text") -> tuple[list[str], list[int], int]:
    """``read_texts`` plus each text's row in the file, counted from 1: a .txt file's line
    (blank lines count), else its data row (the header does not count)."""
    from mlclf_utils.data.sources import read_file  # not copied to SageMaker; only the CLI reads files

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEXT_FORMATS:
        raise DataError(f"unknown file type {suffix!r}; expected one of {list(TEXT_FORMATS)}",
                        file=str(path))
    if suffix == ".txt":
        if not path.is_file():
            raise DataError("file not found", file=str(path))
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            raise DataError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                            file=str(path)) from None
        rows = [i + 1 for i, line in enumerate(lines) if line.strip()]
        if not rows:
            raise DataError("the file holds no text", file=str(path))
        return [lines[r - 1] for r in rows], rows, len(lines) - len(rows)
    frame, where = read_file(str(path), encoding="utf-8")
    if text_column not in frame.columns:
        raise DataError(f"no column {text_column!r}; columns are {list(frame.columns)}",
                        file=where, column=text_column, hint="pass --text-column NAME")
    values = frame[text_column].tolist()
    bad = [i + 1 for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise DataError("empty or missing text", file=where, column=text_column, rows=bad)
    if not values:
        raise DataError("the file has no rows", file=where)
    return values, list(range(1, len(values) + 1)), 0


def in_file(error: DataError, file, rows: list[int], column: str | None = None) -> DataError:
    """A Classifier error about rows of its text list, said of the file the texts came from
    (``rows`` from ``read_text_rows``); any other error is returned as it is."""
    if not error.rows or error.file is not None or not error.message.endswith(ROWS_NOTE):
        return error
    return DataError(error.message.removesuffix(ROWS_NOTE), file=str(file), column=column,
                     rows=[rows[r - 1] for r in error.rows], hint=error.hint)


def check_output(output, *, overwrite: bool = False, inputs: Mapping | None = None) -> Path:
    """The --output path, checked before any work: its folder exists, it is no input file
    (``inputs``: option -> file or folder, never written even with ``overwrite``; a folder
    protects everything in it) and it replaces an existing file only with ``overwrite``."""
    path = Path(output)
    if path.is_dir():
        raise ParameterError("--output", str(output), "is a folder; give a file name in it, "
                             "e.g. predictions.csv")
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ParameterError("--output", str(output), f"the folder {folder} {what}; create it "
                             "first (predict never creates folders)")
    target = path.resolve()
    for option, other in (inputs or {}).items():
        if other is None:
            continue
        other = Path(other)
        if other.is_dir():
            if other.resolve() in target.parents:
                raise ParameterError("--output", str(output), f"is inside the {option} folder "
                                     f"({other}); writing there would change it")
        elif target == other.resolve() or (path.exists() and other.exists()
                                           and os.path.samefile(path, other)):
            raise ParameterError("--output", str(output), f"is the {option} file ({other}); "
                                 "predictions never replace their input, even with "
                                 "--overwrite: choose another name")
    if path.exists() and not overwrite:
        raise ParameterError("--output", str(output), "already exists; pass --overwrite to "
                             "replace it, or choose another name")
    return path


def prediction_rows(texts: list[str], predictions: list[dict], labels: list[str]) -> list[dict]:
    """Flat rows for CSV: text, labels joined by commas, one ``prob:<label>`` column each."""
    rows = []
    for text, record in zip(texts, predictions):
        row = {"text": text, "labels": ",".join(record["labels"])}
        row.update({PROB_PREFIX + label: record["probabilities"][label] for label in labels})
        rows.append(row)
    return rows


def write_predictions(texts: list[str], predictions: list[dict], labels: list[str], out,
                      fmt: str) -> None:
    """Write CSV or JSONL to an open text stream."""
    if fmt not in OUTPUT_FORMATS:
        raise ParameterError("format", fmt, f"choose one of {list(OUTPUT_FORMATS)}")
    if fmt == "jsonl":
        for text, record in zip(texts, predictions):
            out.write(json.dumps({"text": text, **record}, ensure_ascii=False) + "\n")
        return
    import pandas as pd

    columns = ["text", "labels"] + [PROB_PREFIX + label for label in labels]
    pd.DataFrame(prediction_rows(texts, predictions, labels), columns=columns).to_csv(
        out, index=False, lineterminator="\n")


def output_format(output: str | None, fmt: str | None) -> str:
    """--format wins; else the output file's suffix; else JSONL."""
    if fmt is not None:
        if fmt not in OUTPUT_FORMATS:
            raise ParameterError("format", fmt, f"choose one of {list(OUTPUT_FORMATS)}")
        return fmt
    if output and Path(output).suffix.lower() == ".csv":
        return "csv"
    return "jsonl"
