"""Long texts as overlapping token windows: 01's ``long_text="chunks"``.

``truncate`` (the default, and what every run before this setting did) keeps a text's first
``max_length`` tokens. ``chunks`` reads the whole text instead, as windows of ``max_length``
tokens, special tokens included, each sharing ``window_stride`` tokens with the one before it (the
meaning transformers' ``stride`` has with ``return_overflowing_tokens``; a test holds the two
equal on the real tokenizer). ``max_windows`` caps the windows of one text (None: no cap); the
tokens a cap leaves out are counted in 01's report, never dropped without a word.

01 decides, and records the four settings in ``preprocess_config.json``; 02 turns each window
into a row (``text_index``, ``window_index``, the text's labels), 03 trains on those rows, and 04,
the bundle and ``Classifier`` aggregate the window probabilities per text
(``evaluation.window_aggregation``, max by default). A text no longer than ``max_length`` gives
one window, identical to its truncation, so short texts are scored the same either way.

Imports only ``errors``, ``artifacts`` and ``window_aggregation``: ``serving.predict`` uses it on
an endpoint, where only those modules are copied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mlclf_utils.errors import ParameterError
from mlclf_utils.evaluation import window_aggregation

LONG_TEXT = ("truncate", "chunks")
# 01's parameters that decide the windows, as preprocess_config.json records them.
SETTINGS = ("long_text", "window_stride", "max_windows", "window_aggregation")
# The columns 02 adds to each row when a run reads texts as windows.
TEXT_INDEX, WINDOW_INDEX = "text_index", "window_index"
WINDOW_IDS = "window_ids"  # 01's table: every window of a text, a list of token-id arrays


@dataclass(frozen=True)
class WindowSettings:
    """How 01 reads a long text; every later stage and the bundle follow it."""

    long_text: str = "truncate"
    window_stride: int = 32
    max_windows: int | None = None
    window_aggregation: str = "max"

    def __post_init__(self) -> None:
        if self.long_text not in LONG_TEXT:
            raise ParameterError("long_text", self.long_text, f"choose one of {list(LONG_TEXT)}")
        stride = self.window_stride
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
            raise ParameterError("window_stride", stride, "must be an integer >= 0 (tokens shared "
                                 "by neighbouring windows)")
        cap = self.max_windows
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ParameterError("max_windows", cap, "must be an integer >= 1, or None (no cap)")
        window_aggregation.check_aggregation(self.window_aggregation)

    @property
    def chunks(self) -> bool:
        return self.long_text == "chunks"

    def check_fits(self, max_length: int, n_special: int = 2) -> None:
        """A stride must leave each window new tokens to read."""
        content = max_length - n_special
        if self.chunks and self.window_stride >= content:
            raise ParameterError("window_stride", self.window_stride,
                                 f"must be smaller than the {content} text tokens a window of "
                                 f"max_length={max_length} holds")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, config: Mapping | None) -> "WindowSettings":
        """From 01's config (or a bundle's manifest entry); a config from before these settings
        existed means ``truncate``, which is what that run did."""
        config = config or {}
        return cls(**{name: config[name] for name in SETTINGS if name in config})

    def split(self, encoded: list[list[int]], max_length: int, tokenizer) -> "TextWindows":
        """Every text's windows, in text order (``TextWindows.owners`` says whose)."""
        return split_texts(encoded, self, max_length, tokenizer)

    def aggregate(self, window_probs, windows: "TextWindows") -> np.ndarray:
        """One row of probabilities per text, from one per window."""
        return window_aggregation.aggregate(window_probs, windows.owners, windows.n_texts,
                                            how=self.window_aggregation)


class TextWindows(list):
    """The token ids of every window (a list, so that it batches like one id list per text),
    with ``owners`` (each window's text), ``n_texts`` and what ``max_windows`` left out."""

    def __init__(self, windows, owners, n_texts: int, *, capped_texts: int = 0,
                 tokens_left_out: int = 0):
        super().__init__(windows)
        self.owners = np.asarray(owners, dtype=np.int64)
        self.n_texts = int(n_texts)
        self.capped_texts = int(capped_texts)
        self.tokens_left_out = int(tokens_left_out)

    def per_text(self) -> list[list[list[int]]]:
        out = [[] for _ in range(self.n_texts)]
        for ids, owner in zip(self, self.owners):
            out[owner].append(ids)
        return out


def special_layout(tokenizer) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after one text (BERT: 1 and 1)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return start, len(full) - start - len(bare)
    raise ParameterError("tokenizer", type(tokenizer).__name__,
                         "its special tokens do not wrap the text; chunks cannot be cut")


def split_ids(ids: list[int], *, max_length: int, stride: int, prefix: int = 1, suffix: int = 1,
              max_windows: int | None = None) -> tuple[list[list[int]], int]:
    """``(windows, tokens_left_out)`` of one text's ids (special tokens included): each window
    is the specials around ``max_length - prefix - suffix`` text tokens, starting ``content -
    stride`` tokens after the one before, until the last reaches the text's end."""
    ids = list(ids)
    if len(ids) <= max_length:
        return [ids], 0
    head, body, tail = ids[:prefix], ids[prefix:len(ids) - suffix], ids[len(ids) - suffix:]
    content = max_length - prefix - suffix
    if not 0 <= stride < content:
        raise ParameterError("window_stride", stride, f"must be smaller than the {content} text "
                             f"tokens a window of max_length={max_length} holds")
    starts = [0]
    while starts[-1] + content < len(body):
        starts.append(starts[-1] + content - stride)
    left_out = 0
    if max_windows is not None and len(starts) > max_windows:
        starts = starts[:max_windows]
        left_out = len(body) - (starts[-1] + content)
    return [head + body[s:s + content] + tail for s in starts], left_out


def split_texts(encoded: list[list[int]], settings: WindowSettings, max_length: int,
                tokenizer) -> TextWindows:
    """The windows of every text's full ids (``chunks``), or their truncation (``truncate``)."""
    prefix, suffix = special_layout(tokenizer)
    windows, owners, capped, left_out = [], [], 0, 0
    for text, ids in enumerate(encoded):
        if settings.chunks:
            pieces, lost = split_ids(ids, max_length=max_length, stride=settings.window_stride,
                                     prefix=prefix, suffix=suffix, max_windows=settings.max_windows)
        else:
            pieces, lost = split_ids(ids, max_length=max_length, stride=0, prefix=prefix,
                                     suffix=suffix, max_windows=1)
        capped += lost > 0
        left_out += lost
        windows += pieces
        owners += [text] * len(pieces)
    return TextWindows(windows, owners, len(encoded), capped_texts=capped if settings.chunks else 0,
                       tokens_left_out=left_out if settings.chunks else 0)


def window_report(windows: TextWindows, settings: WindowSettings) -> dict:
    """Counts for 01's report: texts, windows, texts read as several, what a cap left out."""
    per_text = np.bincount(windows.owners, minlength=windows.n_texts)
    return {**settings.to_dict(), "texts": windows.n_texts, "windows": int(len(windows)),
            "texts_with_several_windows": int((per_text > 1).sum()),
            "max_windows_of_a_text": int(per_text.max()) if len(per_text) else 0,
            "texts_capped_by_max_windows": windows.capped_texts,
            "tokens_left_out_by_max_windows": windows.tokens_left_out}


# --- 02's splits, one row per window, seen per text -------------------------------------------

def is_windowed(split) -> bool:
    return TEXT_INDEX in split.column_names


def text_rows(split):
    """One row per text (its first window): what 04 scores, 05 counts and the baselines read.
    A split without windows is returned as it is."""
    if not is_windowed(split):
        return split
    return split.select(np.flatnonzero(np.asarray(split[WINDOW_INDEX]) == 0))


def text_targets(split) -> np.ndarray:
    """The (texts, K) multi-hot matrix: pos_weight counts texts, not windows (a long text
    would otherwise weigh as many times as it has windows)."""
    targets = np.asarray(split["labels"], dtype=np.float32)
    if not is_windowed(split):
        return targets
    return targets[np.asarray(split[WINDOW_INDEX]) == 0]


def read_settings(folder: str | Path) -> WindowSettings:
    """The settings a 02 split folder (or a run's 01 folder) records in preprocess_config.json."""
    from mlclf_utils import artifacts

    config = artifacts.read_json(Path(folder) / artifacts.PREPROCESS_CONFIG, what="01's config",
                                 hint="expected a split folder written by 02_save_data")
    return WindowSettings.from_config(config)


def for_classifier(settings: WindowSettings | Mapping | None) -> WindowSettings | None:
    """What ``Classifier`` keeps: the settings when texts are read as windows, else None."""
    if settings is not None and not isinstance(settings, WindowSettings):
        settings = WindowSettings.from_config(settings)
    return settings if settings is not None and settings.chunks else None
