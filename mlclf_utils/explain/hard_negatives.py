"""Hard negatives: train texts that contain a shortcut word but not its class.

If the model learned "word W means class C", the cheapest counter-evidence is already in the
train split: texts with W that do not carry C. Showing them more often (oversampling) makes
the shortcut cost loss, without inventing or relabelling anything. The word matching is the
audit's (``token_audit.words_of``), so a hard negative contains exactly the word the audit
named, not a longer word that merely starts with it.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils.errors import (DataError, MlclfError, ParameterError, check_positive_int,
                                require_columns)
from mlclf_utils.explain.token_audit import check_train, words_of

DEFAULT_REASON = "contains {token!r}, a shortcut word for {class!r}, without that label"
COLUMNS = ["text", "labels", "source_id", "token", "class", "reason"]
CSV_LIST_SEPARATOR = ","


def _check_pairs(pairs, known_classes: set[str]) -> list[tuple[str, str]]:
    if isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(x, str) for x in pairs):
        raise ParameterError("pairs", pairs, "pass a list of (class, token) pairs, e.g. [pair]")
    out = []
    for item in pairs:
        if not (isinstance(item, tuple | list) and len(item) == 2
                and all(isinstance(x, str) for x in item)):
            raise ParameterError("pairs", item, "each pair must be (class, token), two strings")
        cls, token = item
        words = words_of(token)
        if len(words) != 1:
            raise ParameterError("pairs", item, f"the token must be one word as the audit splits "
                                 f"words; {token!r} splits into {words}")
        if cls not in known_classes:
            raise ParameterError("pairs", item, f"class {cls!r} carries no train text; "
                                 "is it spelled as in the label map?")
        out.append((cls, words[0]))
    return list(dict.fromkeys(out))


def find_hard_negatives(train_texts, train_label_sets, train_source_ids,
                        pairs: Iterable[tuple[str, str]], *,
                        reason: str = DEFAULT_REASON) -> pd.DataFrame:
    """One row per (suspicious pair, train text with the word and without the class).

    ``reason`` may use ``{token}`` and ``{class}``. A text that is a hard negative for two
    pairs appears twice, once per pair.
    """
    ids = list(train_source_ids)
    texts, label_sets = check_train(train_texts, train_label_sets, extra=ids,
                                    extra_name="train_source_ids")
    if not isinstance(reason, str):
        raise ParameterError("reason", reason, "must be a string")
    known = {label for labels in label_sets for label in labels}
    pairs = _check_pairs(pairs, known)
    word_sets = [set(words_of(t)) for t in texts]
    rows = []
    for cls, token in pairs:
        why = reason.format_map({"token": token, "class": cls})
        for text, labels, source_id, words in zip(texts, label_sets, ids, word_sets):
            if token in words and cls not in labels:
                rows.append({"text": text, "labels": list(labels), "source_id": str(source_id),
                             "token": token, "class": cls, "reason": why})
    return pd.DataFrame(rows, columns=COLUMNS)


def save_hard_negatives(table: pd.DataFrame, path, *, columns: list[str] = COLUMNS) -> Path:
    """hard_negatives.csv; labels comma-separated, so a label holding a comma is refused."""
    require_columns(table, columns, "table", "the hard-negative table (from find_hard_negatives)")
    with_comma = sorted({x for labels in table["labels"] for x in labels
                         if CSV_LIST_SEPARATOR in x})
    if with_comma:
        raise DataError(f"label names containing {CSV_LIST_SEPARATOR!r} cannot be listed in the "
                        f"CSV: {with_comma[:5]}", column="labels")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = table[columns].copy()
    out["labels"] = [CSV_LIST_SEPARATOR.join(labels) for labels in out["labels"]]
    out.to_csv(path, index=False)
    return path


REVIEW_COLUMNS = COLUMNS + ["probability", "score"]
AUDIT_COLUMNS = ["source_id", "label", "issue", "probability", "score"]


def set_aside_flagged(negatives: pd.DataFrame, label_audit: pd.DataFrame | None,
                      ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``(kept, to_review)``: a hard negative whose class 01's label audit flags as probably
    missing for that very text is no counter-example but probably a missing label, so it is
    taken out of the negatives and listed for review, with the audit's probability and score.

    ``label_audit``: 01's ranked table (``data.label_audit``), or None when 01 ran without it;
    then nothing is set aside and ``to_review`` is None (nothing was checked).
    """
    from mlclf_utils.data.label_audit import MISSING

    require_columns(negatives, COLUMNS, "negatives", "the hard-negative table")
    if label_audit is None:
        return negatives, None
    require_columns(label_audit, AUDIT_COLUMNS, "label_audit", "01's label audit table")
    flagged = label_audit.loc[label_audit["issue"] == MISSING,
                              ["source_id", "label", "probability", "score"]]
    flagged = (flagged.assign(source_id=flagged["source_id"].astype(str))
               .rename(columns={"label": "class"})
               .drop_duplicates(["source_id", "class"]))
    merged = negatives.assign(source_id=negatives["source_id"].astype(str)).merge(
        flagged, on=["source_id", "class"], how="left", indicator=True)
    is_flagged = (merged.pop("_merge") == "both").to_numpy()
    review = merged[is_flagged].copy()
    review["reason"] = [f"01's label audit: {c!r} probably missing (model probability {p:.2f})"
                        for c, p in zip(review["class"], review["probability"])]
    kept = negatives[~is_flagged].reset_index(drop=True)
    return kept, review[REVIEW_COLUMNS].reset_index(drop=True)


def save_labels_to_review(review: pd.DataFrame, path) -> Path:
    """labels_to_review.csv: the hard negatives set aside, in hard_negatives.csv's layout plus
    the audit's ``probability`` and ``score``."""
    return save_hard_negatives(review, path, columns=REVIEW_COLUMNS)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def pairs_phrase(pairs, negatives: pd.DataFrame, review: pd.DataFrame | None,
                 audit: pd.DataFrame | None = None, max_pairs: int | None = None) -> str:
    """"for the first 8 of the 9 suspicious (class, word) pairs (max_pairs = 8); 2 of those 8
    found no hard negative". The total is the ``audit``'s count of suspicious pairs, as its
    own line (``token_audit.suspicious_note``) gives it, so that the two lines agree."""
    pairs = list(dict.fromkeys((cls, (words_of(token) or [token])[0]) for cls, token in pairs))
    noun = "suspicious (class, word) pair"
    if audit is not None:
        require_columns(audit, ["suspicious"], "audit", "05's token audit")
    total = len(pairs) if audit is None else int(audit["suspicious"].sum())
    if total == len(pairs):
        phrase = f"for {_count(len(pairs), noun)}"
    else:
        cut = "" if max_pairs is None else f" (max_pairs = {max_pairs})"
        phrase = f"for the first {len(pairs)} of the {_count(total, noun)}{cut}"
    found = {pair for table in (negatives, review) if table is not None
             for pair in zip(table["class"], table["token"])}
    empty = sum(pair not in found for pair in pairs)
    if empty == 1 == len(pairs):
        phrase += "; it found no hard negative"
    elif empty and empty == len(pairs):
        phrase += f"; none of the {empty} found a hard negative"
    elif empty:
        phrase += f"; {empty} of those {len(pairs)} found no hard negative"
    return phrase


def review_note(negatives: pd.DataFrame, review: pd.DataFrame | None, pairs=None, *,
                audit: pd.DataFrame | None = None, max_pairs: int | None = None) -> str:
    """One line for 05: how many hard negatives are kept (for how many of the suspicious
    ``pairs``, when given: of how many in 05's token ``audit``, cut at ``max_pairs``, and how
    many pairs found none), and how many were set aside."""
    kept = f"{_count(len(negatives), 'hard negative')} kept"
    if pairs is not None:
        kept += " " + pairs_phrase(pairs, negatives, review, audit, max_pairs)
    if review is None:
        return (f"{kept}; none checked against a label audit (01 ran with label_audit=False, or "
                "before it had one)")
    if not len(review):
        return f"{kept}; none set aside: 01's label audit flags none of them as missing the class"
    classes = ", ".join(f"{c} {n}" for c, n in review["class"].value_counts().items())
    return (f"{kept}; {len(review)} set aside as labels to review, because 01's label audit "
            f"flags their class as probably missing ({classes})")


def _breakable(value) -> str:
    """A cell's text, escaped, with a line-break chance after colons that join two words, so a label
    such as "works-with::software:source" wraps there in a narrow column, not mid-word."""
    return re.sub(r"(:+)(?=\w)", r"\1<wbr>", html_lib.escape(str(value), quote=False))


class WholeCells:
    """A table that a notebook shows with every cell whole and a caption saying what is shown.

    pandas cuts cells at ``display.max_colwidth`` (50 characters), which hid the reason and
    most of each text; the option is lifted only while the text form renders, not globally. The
    HTML is drawn here: pandas' table, right-aligned in JupyterLab and laid out by its longest
    words, squeezed each text into a column a few words wide (35 lines a row) and ran past the
    output's width. Here cells are left- and top-aligned, the table is as wide as the output
    (at most ``MAX_WIDTH``), ``widths`` (column -> CSS width) fixes the short columns, the rest
    share what is left, and only a word too long for its cell is broken. Without rows, only the
    caption.
    """

    MAX_WIDTH = "80em"  # about 100 characters a line in a text column of half the table
    CELL = ("text-align: left; vertical-align: top; padding: 4px 5px; "
            "overflow-wrap: break-word; white-space: normal")

    def __init__(self, frame: pd.DataFrame, caption: str = "", widths: dict | None = None):
        self.frame, self.caption, self.widths = frame, caption, dict(widths or {})

    def _repr_html_(self) -> str:
        head = f"<p>{html_lib.escape(self.caption, quote=False)}</p>" if self.caption else ""
        if self.frame.empty:
            return f"<div>{head or '<p>no rows</p>'}</div>"
        columns = [str(c) for c in self.frame.columns]
        cols = "".join(f'<col style="width: {self.widths[c]}">' if c in self.widths else "<col>"
                       for c in columns)
        cell = self.CELL
        header = "".join(f'<th style="{cell}">{html_lib.escape(c)}</th>' for c in columns)
        body = "".join(
            "<tr>" + "".join(f'<td style="{cell}">{_breakable(v)}</td>' for v in row) + "</tr>"
            for row in self.frame.itertuples(index=False, name=None))
        table = (f'<table style="table-layout: fixed; width: 100%; max-width: {self.MAX_WIDTH}; '
                 f'margin-left: 0; margin-right: auto"><colgroup>{cols}</colgroup>'
                 f"<thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>")
        return f"<div>{head}{table}</div>"

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", None):
            table = self.frame.to_string()  # every column: repr() elides the middle ones
        return f"{self.caption}\n{table}" if self.caption else table


VIEW_COLUMNS = ["source_id", "class", "token", "reason", "labels", "text"]
# The short columns' share of the table; ``text`` takes the rest (46%, 31% with the audit's two).
VIEW_WIDTHS = {"source_id": "9%", "class": "11%", "token": "10%", "reason": "13%",
               "labels": "11%", "probability": "9%", "score": "6%"}


def table_view(table: pd.DataFrame, *, per_pair: int = 2) -> WholeCells:
    """05's view of a hard-negative table or a labels-to-review table: at most ``per_pair`` rows
    per (class, word) pair (head() showed the first pair only), every cell whole, labels as a
    comma list, the audit's numbers to 3 places; the caption counts the rows left out."""
    require_columns(table, COLUMNS, "table", "a hard-negative or labels-to-review table")
    check_positive_int("per_pair", per_pair)
    shown = table.groupby(["class", "token"], sort=False).head(per_pair)
    extra = [c for c in ("probability", "score") if c in table.columns]
    view = shown[VIEW_COLUMNS + extra].reset_index(drop=True)
    view["labels"] = [", ".join(labels) if len(labels) else "(none)" for labels in view["labels"]]
    view[extra] = view[extra].astype(float).round(3)
    n_pairs = table.groupby(["class", "token"]).ngroups
    each = (f"each of the {n_pairs} (class, word) pairs" if n_pairs != 1
            else "its one (class, word) pair")
    caption = (f"{len(view)} of {len(table)} rows: at most {per_pair} for {each}; the CSV holds "
               "every row") if len(table) else "no rows"
    return WholeCells(view, caption, VIEW_WIDTHS)


def load_hard_negatives(path) -> pd.DataFrame:
    """hard_negatives.csv back with ``labels`` as lists and ``source_id`` as text, the shape
    ``find_hard_negatives`` returned (an empty labels cell is a text without labels)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("hard-negative table not found (the file is missing)", file=str(path))
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"not a hard-negative table: no column(s) {missing}", file=str(path),
                        column=missing[0])
    table["labels"] = [v.split(CSV_LIST_SEPARATOR) if v else [] for v in table["labels"]]
    return table[COLUMNS]


def oversampled_train_split(train_dir, hard_negative_source_ids, out_dir, *,
                            factor: int = 3) -> Path:
    """A copy of a 02 train split folder in which each hard negative row appears ``factor``
    times in total (the extra copies go at the end; the Trainer shuffles).

    The copy carries the split's JSON files, with the train counts in ``class_stats.json``
    updated and an ``oversampling`` entry saying what was added. Retrain on it with
    ``train.run_training(train_dir=out_dir, validation_dir=..., model_dir=...,
    output_data_dir=..., checkpoint_dir=...)``: with all four folders given, train.py does not
    look for a run directory.
    """
    import datasets

    from mlclf_utils import artifacts
    from mlclf_utils.data.dataset import load_split

    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ParameterError("factor", factor, "must be an integer >= 1 (1 = a plain copy)")
    if isinstance(hard_negative_source_ids, str | bytes):
        raise ParameterError("hard_negative_source_ids", hard_negative_source_ids,
                             "pass a list of source ids")
    wanted = list(dict.fromkeys(str(x) for x in hard_negative_source_ids))
    train_dir, out_dir = Path(train_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise MlclfError(f"{out_dir} is not empty; an oversampled split never overwrites another")
    split, label_map = load_split(train_dir)
    source_ids = [str(x) for x in split["source_id"]]
    where: dict[str, list[int]] = {}
    for i, sid in enumerate(source_ids):
        where.setdefault(sid, []).append(i)
    unknown = [sid for sid in wanted if sid not in where]
    if unknown:
        shown = ", ".join(repr(x) for x in unknown[:10])
        raise DataError(f"{len(unknown)} hard negative source ids are not in this split: {shown}",
                        file=str(train_dir), column="source_id",
                        hint="pass the train split the hard negatives were found in")
    rows = [i for sid in wanted for i in where[sid]]
    extra = [i for i in rows for _ in range(factor - 1)]
    oversampled = split.select(list(range(len(split))) + extra) if extra else split
    if not isinstance(oversampled, datasets.Dataset):  # pragma: no cover - defensive
        raise MlclfError(f"{train_dir} did not load as a single split")
    oversampled.save_to_disk(str(out_dir))
    for name in (artifacts.LABEL_MAP, artifacts.PREPROCESS_CONFIG):
        if (train_dir / name).is_file():
            (out_dir / name).write_bytes((train_dir / name).read_bytes())
    stats_path = train_dir / artifacts.CLASS_STATS
    stats = (artifacts.read_json(stats_path, what="02's class statistics")
             if stats_path.is_file()
             else {"labels": list(label_map.labels), "rows": {}, "positives": {}})
    targets = np.asarray(oversampled["labels"], dtype=np.float32)
    stats.setdefault("rows", {})["train"] = int(len(oversampled))
    stats.setdefault("positives", {})["train"] = [int(x) for x in (targets > 0.5).sum(axis=0)]
    stats["oversampling"] = {"source": str(train_dir), "factor": factor,
                             "hard_negative_source_ids": len(wanted),
                             "hard_negative_rows": len(rows), "rows_added": len(extra)}
    artifacts.write_json(out_dir / artifacts.CLASS_STATS, stats)
    return out_dir


def _per_class(result, name: str) -> tuple[pd.DataFrame, float]:
    """(per-class table, macro-F1) from a per_class_table, or a dict holding one."""
    report = None
    table = result
    if isinstance(result, dict):
        table = result.get("per_class")
        report = result.get("report", result)
    if not isinstance(table, pd.DataFrame):
        raise ParameterError(name, type(result).__name__,
                             "must be a metrics.per_class_table result, or a dict with "
                             "'per_class' (that table) and optionally 'report' "
                             "(a metrics.multilabel_report result)")
    missing = [c for c in ("precision", "recall", "f1") if c not in table.columns]
    if missing:
        raise DataError(f"{name}['per_class'] lacks column(s) {missing}", column=missing[0])
    if isinstance(report, dict) and "macro_f1" in report:
        macro = float(report["macro_f1"])
    else:  # the report's macro-F1 is the mean over labels with positives, i.e. non-NaN F1
        f1 = table["f1"].to_numpy(dtype=float)
        macro = float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan")
    return table, macro


def compare_before_after(before, after, classes) -> pd.DataFrame:
    """Precision and recall of the given classes, and macro-F1, before and after retraining.

    ``before``/``after``: ``metrics.per_class_table`` results, or dicts ``{"per_class": table,
    "report": metrics.multilabel_report(...)}``. Recall is shown beside precision because
    fewer false positives bought with many more false negatives is no fix.
    """
    before_table, before_macro = _per_class(before, "before")
    after_table, after_macro = _per_class(after, "after")
    classes = [classes] if isinstance(classes, str) else list(dict.fromkeys(classes))
    if not classes:
        raise ParameterError("classes", classes, "need at least one class")
    for name, table in (("before", before_table), ("after", after_table)):
        unknown = [c for c in classes if c not in table.index]
        if unknown:
            raise ParameterError("classes", unknown[:10], f"not in the {name} per-class table")
    rows = []
    for c in classes:
        for metric in ("precision", "recall"):
            b, a = float(before_table.loc[c, metric]), float(after_table.loc[c, metric])
            rows.append({"class": c, "metric": metric, "before": b, "after": a, "change": a - b})
    rows.append({"class": "(all labels)", "metric": "macro_f1", "before": before_macro,
                 "after": after_macro, "change": after_macro - before_macro})
    return pd.DataFrame(rows, columns=["class", "metric", "before", "after", "change"])
