"""05 explains the window that carries the decision (issue 12, item 3), on the real tokenizer."""

from types import SimpleNamespace

import pytest
import torch

from mlclf_utils.data import windows
from mlclf_utils.explain import decisive_window
from mlclf_utils.modeling import encoders

CHUNKS = windows.WindowSettings(long_text="chunks", window_stride=4)


@pytest.fixture(scope="module")
def explainer():
    tokenizer = encoders.load_tokenizer(encoders.DEFAULT_MODEL)
    zebra = tokenizer("zebra", add_special_tokens=False)["input_ids"][0]

    def model(input_ids, attention_mask):
        present = ((input_ids == zebra) & (attention_mask > 0)).any(dim=1)
        logits = torch.stack([torch.where(present, 5.0, -5.0), torch.zeros(len(present))], dim=1)
        return SimpleNamespace(logits=logits)

    return SimpleNamespace(tokenizer=tokenizer, model=model, max_length=16,
                           label_index=lambda label: ["zebra", "other"].index(label))


def test_the_window_with_the_highest_probability_is_explained(explainer):
    text = "The " + " ".join(f"filler{i}" for i in range(30)) + " and a zebra at the very end."
    [(window_text, label)] = decisive_window.decisive_items([(text, "zebra")], explainer, CHUNKS)
    assert label == "zebra" and "zebra" in window_text and window_text in text
    assert len(window_text) < len(text)
    # The explainer's own tokens of that text fit in one window: nothing is cut again.
    assert len(explainer.tokenizer(window_text)["input_ids"]) <= explainer.max_length


def test_window_spans_start_and_end_on_whole_words(explainer):
    text = " ".join(f"filler{i}" for i in range(20))
    pieces, spans = decisive_window.window_spans(text, explainer.tokenizer, CHUNKS, 16)
    assert len(pieces) == len(spans) > 1
    for start, end in spans:
        assert start == 0 or text[start - 1] == " "
        assert end == len(text) or text[end] == " "


def test_truncate_and_short_texts_are_left_as_they_are(explainer):
    items = [("a zebra", "zebra"), ("filler " * 40, "other")]
    assert decisive_window.decisive_items(items, explainer, windows.WindowSettings()) == items
    assert decisive_window.decisive_items(items, explainer, None) == items
    assert decisive_window.decisive_items(items[:1], explainer, CHUNKS) == items[:1]
