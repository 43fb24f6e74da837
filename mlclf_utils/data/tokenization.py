"""Tokenization in batches with the model's fast tokenizer.

Sequences are stored unpadded: padding happens per batch at training time (dynamic padding),
which is what makes short texts cheap. The untruncated length is kept too, so the notebook can
show how much text ``max_length`` cuts away. With ``long_text="chunks"`` (``data.windows``) each
text also keeps all of its windows, in ``window_ids``; ``input_ids`` stays its first window, which
is its truncation, so everything that reads one sequence per text reads the same as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mlclf_utils.data.windows import (WINDOW_IDS, WindowSettings, special_layout, split_texts,
                                     window_report)
from mlclf_utils.errors import ParameterError


def check_max_length(max_length: int, model_limit: int) -> None:
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 8:
        raise ParameterError("max_length", max_length, "must be an integer >= 8")
    if max_length > model_limit:
        raise ParameterError(
            "max_length", max_length, f"the model accepts at most {model_limit} tokens"
        )


def tokenize_table(
    df: pd.DataFrame,
    tokenizer,
    *,
    max_length: int,
    batch_size: int = 512,
    progress: bool = True,
    windows: WindowSettings | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Add ``input_ids`` (truncated, special tokens included) and ``n_tokens`` (untruncated),
    and with ``windows`` set to chunks, ``window_ids`` and the window counts in the report."""
    limit = getattr(tokenizer, "model_max_length", None)
    check_max_length(max_length, limit if isinstance(limit, int) and limit < 10**6 else 10**6)
    chunks = windows is not None and windows.chunks
    if chunks:
        windows.check_fits(max_length, sum(special_layout(tokenizer)))
    full_ids: list[list[int]] = []
    texts = df["text"].tolist()
    input_ids: list[np.ndarray] = []
    full_lengths: list[int] = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="tokenizing", unit="batch", disable=not progress):
        batch = texts[start : start + batch_size]
        # Tokenize once without truncation to learn the true length, then cut; cheaper than two
        # tokenizer calls and identical to truncation="longest_first" for single sequences.
        encoded = tokenizer(batch, add_special_tokens=True, truncation=False, verbose=False)
        for ids in encoded["input_ids"]:
            full_lengths.append(len(ids))
            if chunks:
                full_ids.append(ids)
            if len(ids) > max_length:
                ids = ids[: max_length - 1] + [tokenizer.sep_token_id or ids[-1]]
            input_ids.append(np.asarray(ids, dtype=np.int32))
    out = df.copy()
    out["input_ids"] = input_ids
    out["n_tokens"] = np.asarray(full_lengths, dtype=np.int32)
    truncated = out["n_tokens"] > max_length
    report = {
        "max_length": max_length,
        "rows": int(len(out)),
        "truncated_rows": int(truncated.sum()),
        "truncated_share": round(float(truncated.mean()) if len(out) else 0.0, 4),
        "median_tokens": float(np.median(out["n_tokens"])) if len(out) else 0.0,
        "p95_tokens": float(np.percentile(out["n_tokens"], 95)) if len(out) else 0.0,
    }
    if chunks:
        split = split_texts(full_ids, windows, max_length, tokenizer)
        out[WINDOW_IDS] = [[np.asarray(w, dtype=np.int32) for w in text]
                           for text in split.per_text()]
        report["windows"] = window_report(split, windows)
    return out, report
