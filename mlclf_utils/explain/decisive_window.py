"""Which part of a long text 05 explains when 01 read texts as windows (``long_text="chunks"``).

04 scored a text by the highest of its windows' probabilities (``window_aggregation="max"``),
so for a label the decision sits in one window: the one with the highest probability for that
label. 05 explains that window, passed to the ``Explainer`` as its text: the window's tokens
from the first whole word to the last whole word (a word cut by the window's edge is left
out, so the explainer's tokens are the window's own). With ``mean`` no single window decides;
the highest one is still the one that pulled the text's probability up most.
"""

from __future__ import annotations

import numpy as np

from mlclf_utils.data import windows


def window_spans(text: str, tokenizer, settings: windows.WindowSettings, max_length: int
                 ) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """``(window ids, character spans)`` of one text, the windows ``Classifier`` reads."""
    encoding = tokenizer(text, add_special_tokens=True, truncation=False,
                         return_offsets_mapping=True, verbose=False)
    ids, offsets, word_ids = encoding["input_ids"], encoding["offset_mapping"], encoding.word_ids()
    prefix, suffix = windows.special_layout(tokenizer)
    positions, _ = windows.split_ids(list(range(len(ids))), max_length=max_length,
                                     stride=settings.window_stride, prefix=prefix, suffix=suffix,
                                     max_windows=settings.max_windows)
    spans = []
    for window in positions:
        inner = window[prefix:len(window) - suffix]
        first = next((p for p in inner if p == prefix or word_ids[p] != word_ids[p - 1]),
                     inner[0])
        last = next((p for p in reversed(inner)
                     if p + 1 >= len(ids) - suffix or word_ids[p] != word_ids[p + 1]), inner[-1])
        if last < first:  # one word longer than the window: keep its pieces as they are
            first, last = inner[0], inner[-1]
        spans.append((offsets[first][0], offsets[last][1]))
    return [[ids[p] for p in window] for window in positions], spans


def window_probabilities(model, tokenizer, pieces: list[list[int]]) -> np.ndarray:
    """(windows, K) sigmoid outputs of ``model`` on the windows, as one padded batch."""
    import torch

    width = max(len(p) for p in pieces)
    pad = tokenizer.pad_token_id or 0
    input_ids = torch.full((len(pieces), width), pad, dtype=torch.long)
    mask = torch.zeros((len(pieces), width), dtype=torch.long)
    for row, piece in enumerate(pieces):
        input_ids[row, :len(piece)] = torch.tensor(piece, dtype=torch.long)
        mask[row, :len(piece)] = 1
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=mask).logits
    return torch.sigmoid(logits.float()).cpu().numpy()


def decisive_items(items, explainer, settings: windows.WindowSettings | None) -> list[tuple]:
    """Each (text, label) as (the text of its decisive window, label); unchanged with
    ``truncate``, or for a text that fits in one window."""
    items = list(items)
    if settings is None or not settings.chunks:
        return items
    out = []
    for text, label in items:
        pieces, spans = window_spans(text, explainer.tokenizer, settings, explainer.max_length)
        if len(pieces) == 1:
            out.append((text, label))
            continue
        probs = window_probabilities(explainer.model, explainer.tokenizer, pieces)
        best = int(np.argmax(probs[:, explainer.label_index(label)]))
        start, end = spans[best]
        out.append((text[start:end], label))
    return out
