"""Scoring a model folder the 04 way says which texts it cut as plain lines, one per split, and
a second model scored on the same splits (05's retrain) repeats none of them."""

import warnings

import pytest

from mlclf_utils import artifacts
from mlclf_utils.errors import TruncationWarning, truncation_lines
from mlclf_utils.evaluation import scoring
from mlclf_utils.modeling import encoders

LABELS = ["a", "b"]
LONG = " ".join(["filler"] * 40)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The real tiny model saved as 03 saves one, trained (recorded) with max_length 16."""
    out = tmp_path_factory.mktemp("scoring") / "model"
    encoders.load_classifier(encoders.TINY_MODEL, LABELS).save_pretrained(out)
    encoders.load_tokenizer(encoders.TINY_MODEL).save_pretrained(out)
    artifacts.write_json(out / artifacts.HYPERPARAMETERS, {"max_length": 16})
    return out


def split(texts):
    return {"text": texts, "labels": [[i % 2, 1 - i % 2] for i in range(len(texts))]}


VALIDATION = split([LONG, "short", "another short one", LONG + " more"] * 3)
TEST = split([LONG, "short", "tiny", "small"] * 3)


def score(model_dir):
    return scoring.evaluate_model_dir(model_dir, VALIDATION, TEST, LABELS, min_support=1)


def test_each_split_is_one_printed_line_not_a_warning(model_dir, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = score(model_dir)
    assert not [w for w in caught if issubclass(w.category, TruncationWarning)]
    assert set(result) == {"thresholds", "per_class", "report"}
    assert capsys.readouterr().out.splitlines() == [
        "validation: 6 of 12 texts were longer than 16 tokens; they were cut to their first 16, "
        "the same cut as in training (01 reported the share)",
        "test: 3 of 12 texts were longer than 16 tokens; they were cut to their first 16, "
        "the same cut as in training (01 reported the share)"]


def test_two_models_in_one_block_say_each_split_once(model_dir, capsys):
    with truncation_lines():  # as 05 scores its retrain and the control
        score(model_dir)
        score(model_dir)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["validation", "test"]
