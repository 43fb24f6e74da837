import pandas as pd
import pytest

from mlclf_utils.data.cleaning import CleaningConfig, clean_column, clean_text
from mlclf_utils.errors import DataError, ParameterError

DEBIAN = "GNU Emacs editor\n The extensible editor.\n .\n See https://gnu.org/emacs or mail bug@gnu.org.\n Version 29 for C++."


def test_defaults_remove_debian_markers_urls_emails_and_squash_whitespace():
    out = clean_text(DEBIAN)
    assert out == "GNU Emacs editor The extensible editor. See or mail . Version 29 for C++."


def test_each_step_can_be_switched_off():
    out = clean_text(DEBIAN, CleaningConfig(urls=False, emails=False, whitespace=False))
    assert "https://gnu.org/emacs" in out and "bug@gnu.org" in out and "\n" in out


def test_digits_and_punctuation_are_opt_in():
    config = CleaningConfig(digits=True, punctuation=True)
    assert clean_text("Python 3.11, (fast)!", config) == "Python 0.0 fast"
    assert clean_text("C++ and C# on x86-64", config) == "C++ and C# on x0-0"


def test_lowercase_and_custom_tokens():
    config = CleaningConfig(lowercase=True, url_token=" URL ")
    assert clean_text("See HTTP://Example.COM/x now", config) == "see url now"


def test_paragraph_marker_only_matches_whole_lines():
    assert clean_text("version 1 .\n .\n next") == "version 1 . next"


def test_from_dict_rejects_unknown_steps_and_wrong_types():
    with pytest.raises(ParameterError, match="unknown step"):
        CleaningConfig.from_dict({"emojis": True})
    with pytest.raises(ParameterError, match=r"cleaning\.digits"):
        CleaningConfig.from_dict({"digits": "yes"})
    assert CleaningConfig.from_dict({"digits": True}).digits is True


def test_clean_column_counts_and_drops_texts_that_become_empty():
    df = pd.DataFrame({"text": ["keep me", "https://only.a.url", " . "],
                       "labels": [["a"], ["b"], ["c"]], "source_id": ["f:1", "f:2", "f:3"]})
    out, report = clean_column(df)
    assert out["text"].tolist() == ["keep me"]
    assert report["rows_empty_after_cleaning"] == 2
    assert report["empty_after_cleaning_ids"] == ["f:2", "f:3"]
    assert report["rows_in"] == 3 and report["rows_out"] == 1


def test_clean_column_names_rows_with_non_string_text():
    df = pd.DataFrame({"text": ["ok", 5], "labels": [["a"], ["b"]], "source_id": ["f:1", "f:2"]})
    with pytest.raises(DataError, match=r"column 'text'.*row f:2"):
        clean_column(df)
