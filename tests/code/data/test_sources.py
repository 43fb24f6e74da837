"""Every source yields text/labels/source_id; every bad input names file, row and column."""

import json

import numpy as np
import pandas as pd
import pytest

from mlclf_utils.errors import DataError, ParameterError, SetupError
from mlclf_utils.data.sources import load_source, subsample


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


@pytest.fixture()
def rows():
    return pd.DataFrame({"body": ["first text", "second text", "third"],
                         "tags": ["a, b", "b", "c,a,"]})


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_every_file_format_gives_the_common_table(tmp_path, rows, fmt):
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        rows.to_csv(path, index=False)
    elif fmt == "tsv":
        rows.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        rows.to_json(path, orient="records", lines=True)
    else:
        rows.to_parquet(path)
    table, report = load_source(str(path), text_column="body", labels_column="tags")
    assert list(table.columns) == ["text", "labels", "source_id"]
    assert table["labels"].tolist() == [["a", "b"], ["b"], ["c", "a"]]
    assert table["source_id"].tolist() == [f"data.{fmt}:1", f"data.{fmt}:2", f"data.{fmt}:3"]
    assert report["rows_read"] == 3 and report["rows_kept"] == 3


def test_a_labels_column_that_is_already_a_list_is_accepted(tmp_path):
    path = tmp_path / "lists.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "labels": l})
                              for t, l in [("x", ["a", "b"]), ("y", ["c"])]))
    table, _ = load_source(str(path))
    assert table["labels"].tolist() == [["a", "b"], ["c"]]
    pq = tmp_path / "lists.parquet"
    pd.DataFrame({"text": ["x"], "labels": [np.array(["a", "b"])]}).to_parquet(pq)
    assert load_source(str(pq))[0]["labels"].tolist() == [["a", "b"]]


def test_custom_separator(tmp_path):
    path = write(tmp_path / "d.csv", "text,labels\nhello,a|b\n")
    assert load_source(path, label_sep="|")[0]["labels"].tolist() == [["a", "b"]]


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv.*file not found"):
        load_source(str(tmp_path / "nope.csv"))


def test_unknown_extension(tmp_path):
    path = write(tmp_path / "d.xlsx", "x")
    with pytest.raises(DataError, match=r"unknown file type '\.xlsx'"):
        load_source(path)


def test_misnamed_column_names_it_and_suggests_the_close_one(tmp_path):
    path = write(tmp_path / "d.csv", "txt,labels\nhello,a\n")
    with pytest.raises(DataError) as info:
        load_source(path)
    message = str(info.value)
    assert "d.csv" in message and "column 'text'" in message and "did you mean 'txt'" in message


def test_missing_labels_column(tmp_path):
    path = write(tmp_path / "d.csv", "text\nhello\n")
    with pytest.raises(DataError, match=r"column 'labels' not found"):
        load_source(path)


def test_wrong_delimiter_is_recognised(tmp_path):
    path = write(tmp_path / "d.csv", "text\tlabels\nhello\ta\n")
    with pytest.raises(DataError, match=r"delimited by '\\t'"):
        load_source(path)


def test_undecodable_bytes_name_the_line(tmp_path):
    path = write(tmp_path / "d.csv", b"text,labels\nok,a\ncaf\xe9,b\n")
    with pytest.raises(DataError) as info:
        load_source(path)
    assert "d.csv" in str(info.value) and "file line 3" in str(info.value)
    assert "encoding='latin-1'" in str(info.value)
    table, _ = load_source(path, encoding="latin-1")
    assert table["text"].tolist() == ["ok", "café"]


@pytest.mark.parametrize("body", ["text,labels\nok,a\n,b\n", 'text,labels\nok,a\n"   ",b\n'])
def test_empty_or_nan_text_names_row_and_column(tmp_path, body):
    path = write(tmp_path / "d.csv", body)
    with pytest.raises(DataError, match=r"d\.csv; column 'text'; row 2: 1 row\(s\) with empty"):
        load_source(path)


def test_empty_text_can_be_dropped_and_is_counted(tmp_path):
    path = write(tmp_path / "d.csv", "text,labels\nok,a\n,b\nfine,c\n")
    table, report = load_source(path, on_empty_text="drop")
    assert table["source_id"].tolist() == ["d.csv:1", "d.csv:3"]
    assert report["rows_dropped_empty_text"] == 1 and report["dropped_ids_empty_text"] == ["d.csv:2"]


@pytest.mark.parametrize("labels", ["", '" , "'])
def test_nan_or_empty_labels_name_the_row(tmp_path, labels):
    path = write(tmp_path / "d.csv", f"text,labels\nok,a\nbad,{labels}\n")
    with pytest.raises(DataError, match=r"column 'labels'; row 2: 1 row\(s\) with empty or missing labels"):
        load_source(path)
    table, report = load_source(path, on_empty_labels="drop")
    assert len(table) == 1 and report["rows_dropped_empty_labels"] == 1


def test_semicolon_where_comma_is_expected(tmp_path):
    path = write(tmp_path / "d.csv", 'text,labels\nx,a;b\ny,c\nz,"b;c"\n')
    with pytest.raises(DataError) as info:
        load_source(path)
    message = str(info.value)
    assert "';'" in message and "column 'labels'" in message and "rows 1, 3" in message
    assert load_source(path, label_sep=";")[0]["labels"].tolist() == [["a", "b"], ["c"], ["b", "c"]]


def test_non_string_text_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok", "labels": "a"}\n{"text": 12, "labels": "a"}\n')
    with pytest.raises(DataError, match=r"row 2: text values must be strings"):
        load_source(str(path))


def test_bad_jsonl_line(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "ok", "labels": "a"}\n{oops\n')
    with pytest.raises(DataError, match=r"line 2 is not valid JSON"):
        load_source(path)


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match="empty"):
        load_source(write(tmp_path / "d.csv", ""))


def test_bad_policy_parameter(tmp_path):
    with pytest.raises(ParameterError, match="on_empty_text"):
        load_source("x.csv", on_empty_text="ignore")


def test_hf_source_offline_names_the_alternatives(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(SetupError) as info:
        load_source("hf:surely-not-a-cached-dataset-xyz")
    assert "source='debtags'" in str(info.value) and ".csv" in str(info.value)


def test_hf_source_maps_class_label_ids_to_names(monkeypatch):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=["x", "y", "z"]))})
    fake = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a", "b"], "labels": [[0, 2], [1]]}, features=features),
        "test": datasets.Dataset.from_dict({"text": ["c"], "labels": [[2]]}, features=features),
    })
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: fake)
    table, report = load_source("hf:fake:cfg")
    assert table["labels"].tolist() == [["x", "z"], ["y"], ["z"]]
    assert table["source_id"].tolist() == ["hf:fake:cfg:train:1", "hf:fake:cfg:train:2", "hf:fake:cfg:test:1"]


def test_subsample_is_reproducible_and_counted():
    df = pd.DataFrame({"text": list("abcdefghij"), "labels": [["x"]] * 10, "source_id": list("0123456789")})
    a, report = subsample(df, 4, seed=1)
    b, _ = subsample(df, 4, seed=1)
    assert a.equals(b) and len(a) == 4 and report["rows_not_sampled"] == 6
    assert subsample(df, None)[0].equals(df)
    with pytest.raises(ParameterError, match="sample_size"):
        subsample(df, -1)


def test_relative_paths_are_found_from_the_repository_root_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table, _ = load_source("tests/fixtures/smoke_packages.csv", text_column="description",
                           labels_column="tags")
    assert len(table) == 401
    with pytest.raises(DataError, match=r"file not found \(looked in .* and "):
        load_source("tests/fixtures/absent.csv")


def test_non_string_label_items_name_file_row_and_column(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok", "labels": ["a"]}\n{"text": "x", "labels": ["a", 3]}\n')
    with pytest.raises(DataError, match=r"d\.jsonl; column 'labels'; row 2: every label must be a string"):
        load_source(str(path))


# --- issue 12, item 2: a labels cell holding a JSON list ----------------------------------------

def test_a_csv_labels_cell_holding_a_json_list_is_parsed_as_a_list(tmp_path):
    path = write(tmp_path / "j.csv", 'text,labels\nfirst,"[""a"", ""b""]"\nsecond,"[""c""]"\n'
                                     'third,"a, c"\nfourth,[]\n')
    table, report = load_source(path, on_empty_labels="drop")
    assert table["labels"].tolist() == [["a", "b"], ["c"], ["a", "c"]]
    assert report["dropped_ids_empty_labels"] == ["j.csv:4"]  # [] is no labels, counted


def test_a_json_list_item_keeps_the_separator_inside_it(tmp_path):
    path = write(tmp_path / "j.tsv", 'text\tlabels\nx\t["tcp/ip, udp", "b"]\n')
    assert load_source(path)[0]["labels"].tolist() == [["tcp/ip, udp", "b"]]


def test_a_malformed_json_list_names_the_file_row_and_column(tmp_path):
    path = write(tmp_path / "bad.csv", 'text,tags\nok,"[""a""]"\nbroken,"[""a"", ""b"""\n')
    with pytest.raises(DataError) as info:
        load_source(path, labels_column="tags")
    err = info.value
    assert err.rows == [2] and err.column == "tags" and err.file.endswith("bad.csv")
    assert "JSON list" in str(err)


def test_a_json_list_of_numbers_is_refused_naming_the_row(tmp_path):
    path = write(tmp_path / "n.csv", 'text,labels\nok,a\nnums,"[1, 2]"\n')
    with pytest.raises(DataError) as info:
        load_source(path)
    assert info.value.rows == [2] and info.value.column == "labels"


# --- issue 12, item 1: a given split column ------------------------------------------------------

def test_the_split_column_is_kept_and_mapped(tmp_path):
    path = write(tmp_path / "s.csv", "text,labels,part\na,x,train\nb,y,dev\nc,x,test\nd,y,val\n")
    table, report = load_source(path, split_column="part")
    assert list(table.columns) == ["text", "labels", "source_id", "split"]
    assert table["split"].tolist() == ["train", "validation", "test", "validation"]
    assert report["split_column"] == "part"
    assert report["given_split_rows"] == {"train": 1, "validation": 2, "test": 1}


def test_a_split_mapping_replaces_the_default_names(tmp_path):
    path = write(tmp_path / "s.csv", "text,labels,fold\na,x,A\nb,y,B\nc,x,A\n")
    table, _ = load_source(path, split_column="fold", split_values={"A": "train", "B": "test"})
    assert table["split"].tolist() == ["train", "test", "train"]


def test_a_split_value_not_in_the_mapping_names_file_rows_and_column(tmp_path):
    path = write(tmp_path / "s.csv", "text,labels,part\na,x,train\nb,y,holdout\nc,x,test\n"
                                     "d,y,\ne,x,holdout\n")
    with pytest.raises(DataError) as info:
        load_source(path, split_column="part")
    err = info.value
    assert err.file.endswith("s.csv") and err.column == "part" and err.rows == [2, 4, 5]
    assert "'holdout'" in str(err) and "split_values" in str(err)


def test_a_missing_split_column_is_named(tmp_path):
    path = write(tmp_path / "s.csv", "text,labels,part\na,x,train\n")
    with pytest.raises(DataError, match="'prt' not found") as info:
        load_source(path, split_column="prt")
    assert info.value.column == "prt"


def test_the_demo_has_no_split_column():
    with pytest.raises(ParameterError, match="split_column"):
        load_source("debtags", split_column="part")
