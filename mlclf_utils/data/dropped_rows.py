"""Every row 01 dropped, and why: the table behind quality/dropped_rows.csv and 01's warning.

Nothing is dropped silently: each step that removes rows records their ids in its report, and
this module gathers them in the order 01 drops them.
"""

from __future__ import annotations

import pandas as pd

# Why a row was dropped, in the order 01 drops them, and how the warning says it.
DROP_REASONS = {
    "empty text": "with an empty text",
    "no labels": "without labels",
    "empty after cleaning": "empty after cleaning",
    "all labels rare": "whose labels were all rare",
    "all labels absent from train": "whose labels were all absent from the given train split",
}
COLUMNS = ["source_id", "reason"]


def dropped_rows(reports: dict, quality=None, split_report=None) -> pd.DataFrame:
    """The source's empty rows (``on_empty_*="drop"``), texts that cleaning emptied, rows left
    without a label once rare labels were removed, and (with a given split) rows whose labels
    were all absent from train."""
    source = reports.get("source") or {}
    cleaning = reports.get("cleaning") or {}
    records = [(i, "empty text") for i in source.get("dropped_ids_empty_text", [])]
    records += [(i, "no labels") for i in source.get("dropped_ids_empty_labels", [])]
    records += [(i, "empty after cleaning") for i in cleaning.get("empty_after_cleaning_ids", [])]
    if quality is not None:
        if quality.drop_empty:
            records += [(i, "no labels") for i in quality.empty_rows]
        records += [(i, "all labels rare") for i in quality.emptied_rows]
    if split_report is not None:
        records += [(i, "all labels absent from train")
                    for i in getattr(split_report, "rows_emptied", [])]
    return pd.DataFrame(records, columns=COLUMNS)


def drop_warning(report: dict, stage: str, listed_in) -> str | None:
    """One line when ``report`` (preprocess_report.json's ``dropped_rows``) counts drops, naming
    the file that lists them; None when nothing was dropped."""
    count = report.get("count")
    if not count:
        return None
    parts = ", ".join(f"{n} {DROP_REASONS.get(reason, reason)}"
                      for reason, n in report["by_reason"].items())
    return (f"warning: {stage} dropped {count} row{'s' if count != 1 else ''} ({parts}); "
            f"their ids are listed in {listed_in}")
