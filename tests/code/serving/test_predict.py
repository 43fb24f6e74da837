"""``Classifier`` called directly warns about texts it cuts at max_length, with the counts; a
stage's ``truncation_lines`` block makes the same cut one printed line.

The tokenizer is the real MiniLM one; the model is a stand-in returning fixed logits, so the
test is about what reaches the user, not about a model."""

import warnings

import pytest
import torch

from mlclf_utils.errors import TruncationWarning, truncation_lines
from mlclf_utils.modeling import encoders
from mlclf_utils.serving.predict import Classifier

LABELS = ["a", "b"]
LONG = " ".join(["filler"] * 40)


class FixedLogits(torch.nn.Module):
    def forward(self, input_ids, attention_mask):
        logits = torch.tensor([[2.0, -2.0]]).repeat(input_ids.shape[0], 1)
        return type("Output", (), {"logits": logits})()


@pytest.fixture(scope="module")
def classifier():
    tokenizer = encoders.load_tokenizer(encoders.DEFAULT_MODEL)
    return Classifier(FixedLogits(), tokenizer, LABELS, [0.5, 0.5], max_length=16)


def test_a_direct_call_warns_with_the_counts(classifier):
    with pytest.warns(TruncationWarning, match="2 of 3 texts were longer than max_length=16 "
                                               "tokens and were truncated") as seen:
        probs = classifier.predict_proba([LONG, "short text", LONG + " more"])
    assert probs.shape == (3, 2)
    (warning,) = [w.message for w in seen if w.category is TruncationWarning]
    assert (warning.cut, warning.total, warning.max_length) == (2, 3, 16)
    assert seen[0].filename == __file__  # points at the caller's line, not at predict.py


def test_nothing_cut_nothing_said(classifier, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with truncation_lines("test"):
            classifier.predict_proba(["short text"])
    assert capsys.readouterr().out == ""


def test_inside_a_stage_block_the_cut_is_one_line_and_no_warning(classifier, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with truncation_lines("test"):
            probs = classifier.predict([LONG, "short text"])
    assert not [w for w in caught if issubclass(w.category, UserWarning)]
    assert [r["labels"] for r in probs] == [["a"], ["a"]]
    assert capsys.readouterr().out == (
        "test: 1 of 2 texts were longer than 16 tokens; they were cut to their first 16, the "
        "same cut as in training (01 reported the share)\n")
