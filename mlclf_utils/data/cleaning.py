"""Text cleaning, one switch per step, so the same steps run at training and at inference.

The config is saved with the run (``preprocess_config.json``) and later with the model bundle:
a model trained on cleaned text must see cleaned text in production too.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

import pandas as pd

from mlclf_utils.errors import DataError, ParameterError

URL_RE = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
EMAIL_RE = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
DIGITS_RE = re.compile(r"\d+")
# Keep letters, digits, whitespace and the characters that carry meaning in technical text
# (C++, .NET, x86-64, foo_bar); everything else becomes a space.
PUNCT_RE = re.compile(r"[^\w\s+#.\-]", re.UNICODE)
# Debian long descriptions: every line starts with one space; a line holding only " ." is an
# empty line (a paragraph break).
DEBIAN_PARA_RE = re.compile(r"^ ?\.\s*$", re.MULTILINE)
WHITESPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class CleaningConfig:
    """Which cleaning steps to apply; the defaults suit transformer encoders.

    Transformers see punctuation and digits as signal ("Python 3", "C++"), so those two steps
    are off by default; they exist for bag-of-words baselines and for experiments.
    """

    debian_paragraphs: bool = True
    urls: bool = True
    emails: bool = True
    digits: bool = False
    punctuation: bool = False
    whitespace: bool = True
    lowercase: bool = False
    url_token: str = " "
    email_token: str = " "
    digit_token: str = "0"

    @classmethod
    def from_dict(cls, values: dict | None) -> "CleaningConfig":
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError(
                "cleaning", values, f"unknown step(s) {unknown}; known: {sorted(known)}"
            )
        for name, value in values.items():
            expected = type(getattr(cls(), name))
            if not isinstance(value, expected):
                raise ParameterError(
                    f"cleaning.{name}", value, f"expected {expected.__name__}"
                )
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


def clean_text(text: str, config: CleaningConfig = CleaningConfig()) -> str:
    """Clean one text; order matters (URLs before punctuation, whitespace last)."""
    if config.debian_paragraphs:
        text = DEBIAN_PARA_RE.sub("\n", text)
    if config.urls:
        text = URL_RE.sub(config.url_token, text)
    if config.emails:
        text = EMAIL_RE.sub(config.email_token, text)
    if config.digits:
        text = DIGITS_RE.sub(config.digit_token, text)
    if config.punctuation:
        text = PUNCT_RE.sub(" ", text)
    if config.lowercase:
        text = text.lower()
    if config.whitespace:
        text = WHITESPACE_RE.sub(" ", text).strip()
    return text


def clean_column(
    df: pd.DataFrame, config: CleaningConfig = CleaningConfig(), *, column: str = "text"
) -> tuple[pd.DataFrame, dict]:
    """Clean a table's text column; rows whose text is empty afterwards are dropped and counted.

    Returns the cleaned copy and a report with the counts and the ids of dropped rows.
    """
    if column not in df.columns:
        raise DataError(f"no column {column!r}; columns are {list(df.columns)}", column=column)
    bad = [i for i, t in zip(df["source_id"], df[column]) if not isinstance(t, str)]
    if bad:
        raise DataError(
            "text must be a string; found a non-string value",
            column=column,
            rows=bad,
        )
    out = df.copy()
    before = out[column].str.len().sum()
    out[column] = [clean_text(t, config) for t in out[column]]
    empty = out[column].str.len() == 0
    report = {
        "rows_in": int(len(df)),
        "rows_empty_after_cleaning": int(empty.sum()),
        "empty_after_cleaning_ids": out.loc[empty, "source_id"].tolist(),
        "rows_out": int((~empty).sum()),
        "chars_removed_share": round(
            float(1 - out[column].str.len().sum() / before) if before else 0.0, 4
        ),
    }
    return out.loc[~empty].reset_index(drop=True), report
