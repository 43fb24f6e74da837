"""``Classifier`` reads long texts as 01 did: windows, aggregated per text (issue 12, item 3).

The tokenizer is the real MiniLM one; the model is a stand-in whose logits say whether a word
is in the window it sees, so that what is found depends only on which tokens reach it.
"""

import json

import numpy as np
import pytest
import torch

from mlclf_utils.data import windows
from mlclf_utils.modeling import encoders
from mlclf_utils.serving import bundle
from mlclf_utils.serving.predict import Classifier

LABELS = ["has_zebra", "always_off"]


@pytest.fixture(scope="module")
def tokenizer():
    return encoders.load_tokenizer(encoders.DEFAULT_MODEL)


class WordDetector(torch.nn.Module):
    """Label 0 fires when the word's first token is among the real (unmasked) tokens."""

    def __init__(self, token_id: int):
        super().__init__()
        self.token_id = token_id
        self.seen = []

    def forward(self, input_ids, attention_mask):
        self.seen.append(int(input_ids.shape[0]))
        present = ((input_ids == self.token_id) & (attention_mask > 0)).any(dim=1)
        logits = torch.stack([torch.where(present, 8.0, -8.0), torch.full_like(present, -8.0,
                                                                               dtype=torch.float)],
                             dim=1)
        return type("Output", (), {"logits": logits})()


def classifier(tokenizer, settings):
    zebra = tokenizer("zebra", add_special_tokens=False)["input_ids"][0]
    return Classifier(WordDetector(zebra), tokenizer, LABELS, [0.5, 0.5], max_length=16,
                      windows=windows.for_classifier(settings))


LONG = " ".join(["filler"] * 60) + " zebra"  # the evidence only at the end
SHORT = "a zebra here"
NONE = " ".join(["filler"] * 40)


def test_evidence_at_the_end_is_found_with_chunks_and_missed_with_truncate(tokenizer):
    chunks = windows.WindowSettings(long_text="chunks", window_stride=4)
    found = classifier(tokenizer, chunks).predict([LONG, SHORT, NONE])
    with pytest.warns(UserWarning, match="truncated"):
        missed = classifier(tokenizer, windows.WindowSettings()).predict([LONG, SHORT, NONE])
    assert [r["labels"] for r in found] == [["has_zebra"], ["has_zebra"], []]
    assert [r["labels"] for r in missed] == [[], ["has_zebra"], []]


def test_one_row_per_text_in_input_order_and_max_or_mean(tokenizer):
    chunks = windows.WindowSettings(long_text="chunks", window_stride=4)
    model = classifier(tokenizer, chunks)
    probs = model.predict_proba([NONE, LONG, SHORT])
    assert probs.shape == (3, 2)
    n_windows = len(windows.split_ids(tokenizer(LONG)["input_ids"], max_length=16, stride=4)[0])
    assert n_windows > 3 and sum(model.model.seen) == 1 + n_windows + len(
        windows.split_ids(tokenizer(NONE)["input_ids"], max_length=16, stride=4)[0])
    high, low = 1 / (1 + np.exp(-8.0)), 1 / (1 + np.exp(8.0))
    np.testing.assert_allclose(probs[:, 0], [low, high, high], rtol=1e-5)
    mean = classifier(tokenizer, {**chunks.to_dict(), "window_aggregation": "mean"})
    expected = (high + (n_windows - 1) * low) / n_windows  # one window of the long text has it
    np.testing.assert_allclose(mean.predict_proba([LONG])[0, 0], expected, rtol=1e-5)


def test_a_short_text_scores_the_same_either_way(tokenizer):
    chunks = windows.WindowSettings(long_text="chunks", window_stride=4)
    np.testing.assert_array_equal(classifier(tokenizer, chunks).predict_proba([SHORT, "no"]),
                                  classifier(tokenizer, None).predict_proba([SHORT, "no"]))


def test_the_bundle_records_how_long_texts_are_read(tmp_path):
    """bundle.json carries 01's settings; Classifier.load reads them from there."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    config = {"model_type": "bert", "id2label": {"0": "a", "1": "b"}}
    (model_dir / "config.json").write_text(json.dumps(config))
    (model_dir / "model.safetensors").write_bytes(b"0" * 64)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model_dir / name).write_text("{}")
    (model_dir / "label_map.json").write_text(json.dumps({"labels": ["a", "b"]}))
    settings = {"long_text": "chunks", "window_stride": 8, "max_windows": 4,
                "window_aggregation": "mean"}
    out = bundle.export_bundle(model_dir, tmp_path / "bundle", thresholds={"a": 0.5, "b": 0.5},
                               preprocess_config={"cleaning": {}, "max_length": 32, **settings})
    manifest = json.loads((out / bundle.MANIFEST_FILE).read_text())
    assert {k: manifest[k] for k in windows.SETTINGS} == settings
    assert windows.for_classifier(manifest) == windows.WindowSettings(**settings)
    older = bundle.export_bundle(model_dir, tmp_path / "older", thresholds={"a": 0.5, "b": 0.5},
                                 preprocess_config={"cleaning": {}, "max_length": 32})
    assert windows.for_classifier(json.loads((older / bundle.MANIFEST_FILE).read_text())) is None
