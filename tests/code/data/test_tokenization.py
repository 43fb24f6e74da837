import pandas as pd
import pytest

from mlclf_utils.modeling import encoders
from mlclf_utils.errors import ParameterError
from mlclf_utils.data.tokenization import check_max_length, tokenize_table


@pytest.fixture(scope="module")
def tokenizer():
    return encoders.load_tokenizer(encoders.DEFAULT_MODEL)


def test_matches_the_tokenizers_own_truncation_and_counts_truncated_rows(tokenizer):
    texts = ["debian package " * 40, "a short text", "exactly sixteen? " * 3]
    table, report = tokenize_table(pd.DataFrame({"text": texts}), tokenizer, max_length=16,
                                   batch_size=2, progress=False)
    expected = tokenizer(texts, truncation=True, max_length=16)["input_ids"]
    assert [list(ids) for ids in table["input_ids"]] == expected
    assert table["n_tokens"].tolist() == [len(x) for x in tokenizer(texts)["input_ids"]]
    assert report["truncated_rows"] == 1 and report["truncated_share"] == round(1 / 3, 4)
    assert all(ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
               for ids in table["input_ids"])


def test_max_length_is_checked_against_the_model():
    check_max_length(512, 512)
    with pytest.raises(ParameterError, match="at most 512"):
        check_max_length(1024, 512)
    with pytest.raises(ParameterError, match="max_length"):
        check_max_length(0, 512)
    with pytest.raises(ParameterError, match="max_length"):
        check_max_length(64.0, 512)
