"""Data sources: every one yields the same table, ``text``, ``labels`` (list of str), ``source_id``.

A source is a file path (CSV, TSV, JSONL, Parquet), ``hf:<name>[:<config>]`` for a Hugging
Face dataset, or ``debtags`` for the built-in demo. Problems are reported with the file, the
data rows (1-based, header not counted) and the column, because a user fixing a 50k-row CSV
needs to know where to look.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils import artifacts
from mlclf_utils.errors import DataError, ParameterError, SetupError
from mlclf_utils.data.labels import LabelPolicy, detect_wrong_separator, parse_labels
from mlclf_utils.runner.runs import project_root

# The given split's values that need no split_values mapping (README, "Your own data").
DEFAULT_SPLIT_VALUES = {"train": "train", "validation": "validation", "test": "test",
                        "dev": "validation", "val": "validation", "valid": "validation"}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
EMPTY_POLICIES = ("error", "drop")


def load_source(
    source: str,
    *,
    text_column: str = "text",
    labels_column: str = "labels",
    label_sep: str = ",",
    encoding: str = "utf-8",
    on_empty_text: str = "error",
    on_empty_labels: str = "error",
    debtags_label_set: str | list[str] = "default",
    split_column: str | None = None,
    split_values: dict | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Load any supported source into the common table; returns (table, report).

    ``on_empty_*`` chooses between a clear error (the default: bad rows are usually a bug
    upstream) and dropping the rows; drops are counted and their ids listed in the report.
    With ``split_column``, the table also has ``split`` (train/validation/test), mapped through
    ``split_values`` (empty: DEFAULT_SPLIT_VALUES); a value outside the mapping is an error
    here, before any cleaning or tokenizing is spent on the rows.
    """
    for name, value in (("on_empty_text", on_empty_text), ("on_empty_labels", on_empty_labels)):
        if value not in EMPTY_POLICIES:
            raise ParameterError(name, value, f"choose one of {EMPTY_POLICIES}")
    if not isinstance(source, str) or not source:
        raise ParameterError("source", source, "must be a file path, 'hf:<name>' or 'debtags'")
    if source == "debtags" and split_column is not None:
        raise ParameterError("split_column", split_column,
                             "the debtags demo has no given split; leave it None")
    if source == "debtags":
        from mlclf_utils.data.debtags import load_debtags

        table, report = load_debtags(debtags_label_set)
        report = {"source": "debtags", **report}
        table = table[["text", "labels", "source_id"]].reset_index(drop=True)
        return table, report
    if source.startswith("hf:"):
        raw, where = _read_hf(source, text_column, labels_column)
        label_names = raw.attrs.get("label_names")
    else:
        raw, where = read_file(source, encoding=encoding)
        label_names = None
    _check_columns(raw, [text_column, labels_column]
                   + ([split_column] if split_column is not None else []), where)
    given = None
    if split_column is not None:
        given = _map_split(raw[split_column].tolist(), split_values or DEFAULT_SPLIT_VALUES,
                           where=where, column=split_column)
    table, report = _to_common_table(
        raw,
        where=where,
        text_column=text_column,
        labels_column=labels_column,
        label_sep=label_sep,
        label_names=label_names,
        on_empty_text=on_empty_text,
        on_empty_labels=on_empty_labels,
        given_split=given,
    )
    if given is not None:
        report["split_column"] = split_column
        counts = table["split"].value_counts()
        report["given_split_rows"] = {s: int(counts.get(s, 0)) for s in artifacts.SPLITS}
    return table, report


def _map_split(values: list, mapping: dict, *, where: str, column: str) -> list[str]:
    """Each row's split name; every row whose value the mapping lacks is named at once."""
    lookup = {str(k): v for k, v in mapping.items()}
    out, bad, seen = [], [], []
    for n, value in enumerate(values, start=1):
        key = None if _is_missing(value) else str(value).strip()
        name = lookup.get(key) if key is not None else None
        if name is None:
            bad.append(n)
            if key not in seen:
                seen.append(key)
        out.append(name)
    if bad:
        shown = ", ".join(repr(v) if v is not None else "an empty cell" for v in seen[:10])
        raise DataError(
            f"{len(bad)} row(s) have a split value not in the mapping: {shown}; the mapping "
            f"knows {sorted(lookup)}",
            file=where, column=column, rows=bad,
            hint="map every value with split_values={'<value>': 'train'|'validation'|'test', "
                 "...}, or fix the rows",
        )
    return out


def resolve_path(source: str) -> Path:
    """A relative path is looked up in the working directory, then in the checkout's root.

    Notebooks run with notebooks/ (or tests/notebooks/) as their working directory, while
    people think of paths from the repository root; both spellings work.
    """
    path = Path(source).expanduser()
    if path.exists() or path.is_absolute():
        return path
    root = project_root()
    if root is not None and (root / path).exists():
        return root / path
    return path


def read_file(source: str, *, encoding: str = "utf-8") -> tuple[pd.DataFrame, str]:
    """A CSV, TSV, JSONL or Parquet file as a raw frame (all cells as read), plus its path.

    Shared with ``python -m mlclf_utils predict``, so that a file the CLI reads fails with the
    same file-and-line errors as one 01 reads.
    """
    path = resolve_path(source)
    if not path.exists():
        root = project_root()
        tried = f" (looked in {Path.cwd()}" + (f" and {root})" if root else ")")
        raise DataError(
            "file not found" + ("" if path.is_absolute() else tried),
            file=str(path),
            hint="give a CSV, TSV, JSONL or Parquet path, 'hf:<name>', or 'debtags' for the demo",
        )
    if path.is_dir():
        raise DataError("is a directory, expected a file", file=str(path))
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"unknown file type {path.suffix!r}; expected one of {sorted(FORMATS)}", file=str(path)
        )
    if fmt == "parquet":
        try:
            return pd.read_parquet(path), str(path)
        except Exception as exc:
            raise DataError(f"not a readable Parquet file ({exc})", file=str(path)) from exc
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"bytes {data[exc.start:exc.end]!r} at byte {exc.start} (file line {line}) are not "
            f"valid {encoding}",
            file=str(path),
            hint="pass encoding='latin-1' (or the file's real encoding), or re-save it as UTF-8",
        ) from exc
    if fmt == "jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"line {number} is not valid JSON ({exc.msg})", file=str(path)) from exc
            if not isinstance(record, dict):
                raise DataError(f"line {number} is not a JSON object", file=str(path))
            records.append(record)
        return pd.DataFrame.from_records(records), str(path)
    import io

    delimiter = "\t" if fmt == "tsv" else ","
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
                            na_values=[""])
    except pd.errors.ParserError as exc:
        raise DataError(
            f"cannot parse as {fmt.upper()} ({str(exc).strip()})",
            file=str(path),
            hint="check the delimiter and the quoting of fields that contain it",
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError("the file is empty", file=str(path)) from exc
    if frame.shape[1] == 1:
        header = str(frame.columns[0])
        for other in ("\t", ";", "|", ","):
            if other != delimiter and other in header:
                raise DataError(
                    f"only one column was found ({header!r}); the file seems to be delimited "
                    f"by {other!r}, not {delimiter!r}",
                    file=str(path),
                    hint="use a .tsv name for tab-separated files, or convert the file to CSV",
                )
    return frame, str(path)


def _read_hf(source: str, text_column: str, labels_column: str) -> tuple[pd.DataFrame, str]:
    parts = source.split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise ParameterError("source", source, "expected 'hf:<name>' or 'hf:<name>:<config>'")
    name, config = parts[1], (parts[2] if len(parts) == 3 else None)
    import datasets

    try:
        loaded = datasets.load_dataset(name, config)
    except Exception as exc:  # the datasets library raises many types when offline
        raise SetupError(
            f"could not load the Hugging Face dataset {name!r}"
            f"{f' (config {config!r})' if config else ''}: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}\n  -> Without the Hub, use a local "
            "file instead (source='path/to/data.csv', .tsv, .jsonl or .parquet with a text and "
            "a labels column), or source='debtags' for the built-in demo."
        ) from exc
    frames = []
    label_names = None
    for split_name, split in loaded.items():
        feature = split.features.get(labels_column)
        inner = getattr(feature, "feature", None)
        if label_names is None and hasattr(inner, "names"):
            label_names = list(inner.names)
        frame = split.to_pandas()
        frame["_hf_split"] = split_name
        frame["_hf_row"] = np.arange(1, len(frame) + 1)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table.attrs["label_names"] = label_names
    return table, f"hf:{name}" + (f":{config}" if config else "")


def _check_columns(frame: pd.DataFrame, wanted: list[str], where: str) -> None:
    columns = [str(c) for c in frame.columns]
    for name in wanted:
        if name not in columns:
            close = difflib.get_close_matches(name, columns, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DataError(
                f"column {name!r} not found; the columns are {columns}",
                file=where,
                column=name,
                hint=f"{hint}set text_column= and labels_column= to the names in the file",
            )


def _row_ids(frame: pd.DataFrame, where: str) -> list[str]:
    name = where if where.startswith("hf:") else Path(where).name
    if "_hf_split" in frame.columns:
        return [f"{name}:{s}:{r}" for s, r in zip(frame["_hf_split"], frame["_hf_row"])]
    return [f"{name}:{i}" for i in range(1, len(frame) + 1)]


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return False


def _json_list(value, *, where: str, column: str, row: int):
    """A string cell that holds a JSON list (``["a", "b"]``) becomes that list.

    Without this, splitting it on the separator gives labels such as '["a"'. A cell that
    starts with '[' but is not valid JSON, or is JSON but not a list, is refused.
    """
    if not isinstance(value, str) or not value.lstrip().startswith("["):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"the labels cell starts with '[' but is not a valid JSON list ({exc.msg}): "
            f"{value[:80]!r}",
            file=where, column=column, rows=[row],
            hint='write a JSON list as ["a", "b"] (double quotes), or separated labels as a,b',
        ) from None
    if not isinstance(parsed, list):
        raise DataError(f"the labels cell is JSON but not a list: {value[:80]!r}",
                        file=where, column=column, rows=[row])
    return parsed


def _to_common_table(
    raw: pd.DataFrame,
    *,
    where: str,
    text_column: str,
    labels_column: str,
    label_sep: str,
    label_names: list[str] | None,
    on_empty_text: str,
    on_empty_labels: str,
    given_split: list[str] | None = None,
) -> tuple[pd.DataFrame, dict]:
    ids = _row_ids(raw, where)
    row_numbers = list(range(1, len(raw) + 1))
    if raw.empty:
        raise DataError("the table has no rows", file=where)

    texts = raw[text_column].tolist()
    bad_type = [n for n, t in zip(row_numbers, texts) if not _is_missing(t) and not isinstance(t, str)]
    if bad_type:
        raise DataError("text values must be strings", file=where, column=text_column, rows=bad_type)
    empty_text = [n for n, t in zip(row_numbers, texts) if _is_missing(t) or not t.strip()]

    raw_labels = [_json_list(v, where=where, column=labels_column, row=n)
                  for n, v in zip(row_numbers, raw[labels_column].tolist())]
    string_values = [v for v in raw_labels if isinstance(v, str)]
    wrong = detect_wrong_separator(string_values, label_sep)
    if wrong is not None:
        examples = [n for n, v in zip(row_numbers, raw_labels) if isinstance(v, str) and wrong in v]
        raise DataError(
            f"labels look separated by {wrong!r}, but label_sep={label_sep!r}",
            file=where,
            column=labels_column,
            rows=examples,
            hint=f"pass label_sep={wrong!r}",
        )
    policy = LabelPolicy(separator=label_sep, case="keep", dedupe=False)
    parsed = []
    for n, value in zip(row_numbers, raw_labels):
        if label_names is not None and isinstance(value, (list, tuple, np.ndarray)):
            value = [label_names[int(i)] if not isinstance(i, str) else i for i in value]
        try:
            parsed.append(parse_labels(value, policy))
        except DataError as exc:
            message = str(exc).split("\n")[0]
            raise DataError(message, file=where, column=labels_column, rows=[n]) from None
    empty_labels = [n for n, labels in zip(row_numbers, parsed) if not labels]

    report: dict = {"source": where, "rows_read": len(raw)}
    drop: set[int] = set()
    for rows, policy_value, column, what in (
        (empty_text, on_empty_text, text_column, "empty or missing text"),
        (empty_labels, on_empty_labels, labels_column, "empty or missing labels"),
    ):
        key = "rows_dropped_" + ("empty_text" if column == text_column else "empty_labels")
        if rows and policy_value == "error":
            raise DataError(
                f"{len(rows)} row(s) with {what}",
                file=where,
                column=column,
                rows=rows,
                hint=f"fix the rows, or pass on_empty_{'text' if column == text_column else 'labels'}='drop' to drop and count them",
            )
        report[key] = len(rows)
        report[key.replace("rows_dropped_", "dropped_ids_")] = [ids[n - 1] for n in rows]
        drop.update(rows)
    keep = [n not in drop for n in row_numbers]
    table = pd.DataFrame(
        {
            "text": [t for t, k in zip(texts, keep) if k],
            "labels": [labels for labels, k in zip(parsed, keep) if k],
            "source_id": [i for i, k in zip(ids, keep) if k],
        }
    )
    if given_split is not None:
        table["split"] = [s for s, k in zip(given_split, keep) if k]
    report["rows_kept"] = len(table)
    return table, report


def subsample(df: pd.DataFrame, n: int | None, *, seed: int = 42) -> tuple[pd.DataFrame, dict]:
    """A reproducible random sample, for demos and smoke runs; ``None`` keeps everything."""
    if n is None or n >= len(df):
        return df.reset_index(drop=True), {"rows_in": len(df), "rows_sampled": len(df)}
    if not isinstance(n, int) or n <= 0:
        raise ParameterError("sample_size", n, "must be a positive integer or None")
    sample = df.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)
    return sample, {"rows_in": len(df), "rows_sampled": n, "rows_not_sampled": len(df) - n}
