"""Inference from a bundle: Classifier, the predict CLI, SageMaker handlers, transformers.pipeline.

The "trained" model is the tiny random DistilBERT with a fresh head, saved like 03 saves a
model: training adds nothing to the plumbing under test, and the numbers are checked against
the model itself, not against expected labels.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mlclf_utils.serving import bundle
from mlclf_utils.modeling import encoders
from mlclf_utils.__main__ import main
from mlclf_utils.data.cleaning import CleaningConfig, clean_text
from mlclf_utils.errors import DataError, ParameterError, TruncationWarning
from mlclf_utils.serving.predict import Classifier
from mlclf_utils.serving.hosting import (export_sagemaker_model, input_fn, model_fn,
                                             output_fn, predict_fn)

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["admin", "audio", "network", "web"]
MAX_LENGTH = 32
PREPROCESS = {"source": "smoke.csv", "cleaning": CleaningConfig().to_dict(),
              "max_length": MAX_LENGTH}
TEXTS = [
    "A web server. See https://example.org/docs for details",
    "plays music",
    "Network tools\n .\n for administrators, with a very long description of what they do",
    "x",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model_dir, untrained):
    return untrained.model_dir(tmp_path_factory.mktemp("trained") / "model", encoders.TINY_MODEL,
                               LABELS)


@pytest.fixture(scope="module")
def bundle_dir(model_dir, tmp_path_factory):
    return bundle.export_bundle(model_dir, tmp_path_factory.mktemp("b") / "bundle",
                                thresholds={label: 0.5 for label in LABELS},
                                preprocess_config=PREPROCESS, metrics={"micro_f1": 0.5})


@pytest.fixture(scope="module")
def classifier(bundle_dir):
    return Classifier.load(bundle_dir)


def direct_probabilities(model, tokenizer, text):
    """The reference: one text, no padding, sigmoid of the model's logits."""
    batch = tokenizer([text], truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    with torch.inference_mode():
        return torch.sigmoid(model(**batch).logits)[0].numpy()


def test_export_writes_a_checked_bundle(bundle_dir, model_dir):
    bundle.check_bundle(bundle_dir)
    names = {p.name for p in bundle_dir.iterdir()}
    assert set(bundle.REQUIRED_FILES) <= names and "pos_weight.json" in names
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    assert manifest["num_labels"] == 4 and manifest["metrics"] == {"micro_f1": 0.5}
    assert {f["name"] for f in manifest["files"]} == names - {"bundle.json"}
    thresholds = json.loads((bundle_dir / "thresholds.json").read_text())["thresholds"]
    assert list(thresholds) == LABELS


def test_classifier_reads_labels_thresholds_and_cleaning(classifier):
    assert classifier.labels == LABELS
    np.testing.assert_array_equal(classifier.thresholds, [0.5] * 4)
    assert classifier.max_length == MAX_LENGTH and classifier.cleaning == CleaningConfig()
    assert not classifier.model.training


def test_probabilities_are_sigmoids_of_the_logits_on_cleaned_text(classifier):
    probabilities = classifier.predict_proba(TEXTS, batch_size=3)
    assert probabilities.shape == (4, 4) and probabilities.dtype == np.float32
    expected = np.stack([direct_probabilities(classifier.model, classifier.tokenizer,
                                              clean_text(t, CleaningConfig())) for t in TEXTS])
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    uncleaned = direct_probabilities(classifier.model, classifier.tokenizer, TEXTS[0])
    assert np.abs(uncleaned - probabilities[0]).max() > 1e-4  # so cleaning did matter above
    assert not np.allclose(probabilities.sum(axis=1), 1.0, atol=0.05)  # no softmax
    assert ((probabilities > 0) & (probabilities < 1)).all()


def test_input_order_survives_length_sorting(classifier):
    texts = [("word " * n).strip() for n in (3, 25, 1, 12, 7, 30, 2)]
    together = classifier.predict_proba(texts, batch_size=2)
    one_by_one = np.concatenate([classifier.predict_proba([t]) for t in texts])
    assert np.ptp(one_by_one, axis=0).min() > 1e-3  # rows differ, so a mix-up would show
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    reversed_ = classifier.predict_proba(texts[::-1], batch_size=3)
    np.testing.assert_allclose(reversed_[::-1], together, atol=1e-5)


def test_thresholds_decide_the_labels(model_dir, tmp_path):
    only_audio = {label: (0.0 if label == "audio" else 1.01) for label in LABELS}
    path = bundle.export_bundle(model_dir, tmp_path / "bundle", thresholds=only_audio,
                                preprocess_config=PREPROCESS)
    predictions = Classifier.load(path).predict(TEXTS)
    assert [p["labels"] for p in predictions] == [["audio"]] * len(TEXTS)
    assert all(list(p["probabilities"]) == LABELS for p in predictions)


def test_predicted_labels_are_those_at_or_above_their_thresholds(classifier):
    probabilities = classifier.predict_proba(TEXTS)
    middle = np.median(probabilities, axis=0)
    shifted = Classifier(classifier.model, classifier.tokenizer, LABELS, middle,
                         max_length=MAX_LENGTH, cleaning=classifier.cleaning)
    for row, record in zip(probabilities, shifted.predict(TEXTS)):
        fired = {label for label, p, t in zip(LABELS, row, middle) if p >= t}
        assert set(record["labels"]) == fired
        assert [record["probabilities"][x] for x in record["labels"]] == sorted(
            (record["probabilities"][x] for x in record["labels"]), reverse=True)


def test_quantized_model_runs_and_stays_close(bundle_dir, classifier):
    quantized = Classifier.load(bundle_dir, quantize=True)
    assert not [m for m in quantized.model.modules() if type(m) is torch.nn.Linear]
    assert "DynamicQuantizedLinear" in {m._get_name() for m in quantized.model.modules()}
    diff = np.abs(quantized.predict_proba(TEXTS) - classifier.predict_proba(TEXTS)).max()
    assert diff < 0.05


def test_bf16_autocast_runs_and_stays_close(bundle_dir, classifier):
    fast = Classifier.load(bundle_dir, bf16=True)
    assert fast.bf16 and not classifier.bf16
    probs = fast.predict_proba(TEXTS)
    assert probs.dtype == np.float32 and np.isfinite(probs).all()
    assert np.abs(probs - classifier.predict_proba(TEXTS)).max() < 0.05


@pytest.mark.parametrize("texts, error, words", [
    ([], ParameterError, ["texts", "at least one"]),
    ("one string", ParameterError, ["texts", "list"]),
    (["fine", 3, None], DataError, ["rows 2, 3:", "not a string", "int", "NoneType"]),
    (["fine", "   "], DataError, ["row 2:", "empty"]),
    (["fine", "https://example.org/only-a-link"], DataError, ["row 2:", "after cleaning"]),
])
def test_bad_inputs_name_what_is_wrong(classifier, texts, error, words):
    with pytest.raises(error) as caught:
        classifier.predict(texts)
    for word in words:
        assert word in str(caught.value)


def test_bad_text_rows_count_from_1_and_say_so(classifier):
    """One convention with the file errors: row 1 is the first text (the first data row)."""
    with pytest.raises(DataError) as caught:
        classifier.predict(["fine", "also fine", "https://example.org/only-a-link"])
    assert caught.value.rows == [3]
    assert "row 3:" in str(caught.value) and "row 1 is the first text" in str(caught.value)
    assert "index" not in str(caught.value)


def test_bad_batch_size_names_the_parameter(classifier):
    with pytest.raises(ParameterError, match="batch_size"):
        classifier.predict_proba(["fine"], batch_size=0)


def test_overlong_texts_are_truncated_with_one_warning(classifier):
    long_text = "word " * 200
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probabilities = classifier.predict_proba([long_text, "short", long_text + "more"])
    messages = [str(w.message) for w in caught if "truncated" in str(w.message)]
    assert len(messages) == 1 and "2 of 3 texts" in messages[0]
    assert [w.category for w in caught if "truncated" in str(w.message)] == [TruncationWarning]
    cut = classifier.tokenizer([long_text], truncation=True, max_length=MAX_LENGTH,
                               return_tensors="pt")
    assert cut["input_ids"].shape[1] == MAX_LENGTH
    with torch.inference_mode():
        expected = torch.sigmoid(classifier.model(**cut).logits)[0].numpy()
    np.testing.assert_allclose(probabilities[0], expected, atol=1e-5)


def test_bundle_missing_a_file_is_named(bundle_dir, tmp_path):
    broken = shutil.copytree(bundle_dir, tmp_path / "broken")
    (broken / "tokenizer.json").unlink()
    with pytest.raises(DataError, match="tokenizer.json") as caught:
        Classifier.load(broken)
    assert "missing" in str(caught.value)


def test_from_model_dir_uses_plain_thresholds_and_no_cleaning(model_dir, classifier):
    raw = Classifier.from_model_dir(model_dir)
    assert raw.labels == LABELS and raw.cleaning is None
    np.testing.assert_array_equal(raw.thresholds, [0.5] * 4)
    already_clean = [clean_text(t, CleaningConfig()) for t in TEXTS]
    np.testing.assert_allclose(raw.predict_proba(already_clean),
                               classifier.predict_proba(TEXTS), atol=1e-5)


# --- command line ----------------------------------------------------------------------------


def test_cli_with_text_arguments_prints_jsonl(bundle_dir, classifier, capsys):
    assert main(["predict", "--model", str(bundle_dir), "plays music", "a web server"]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["text"] for r in records] == ["plays music", "a web server"]
    expected = classifier.predict(["plays music", "a web server"])
    for record, want in zip(records, expected):
        assert record["labels"] == want["labels"]
        assert record["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)


def test_cli_reads_csv_and_writes_csv_and_jsonl(bundle_dir, classifier, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3], "description": TEXTS[:3]}).to_csv(source, index=False)
    expected = classifier.predict_proba(TEXTS[:3])
    out_csv = tmp_path / "out.csv"
    assert main(["predict", "--model", str(bundle_dir), "--input", str(source),
                 "--text-column", "description", "--output", str(out_csv)]) == 0
    table = pd.read_csv(out_csv, keep_default_na=False)
    assert list(table.columns) == ["text", "labels"] + [f"prob:{x}" for x in LABELS]
    assert table["text"].tolist() == TEXTS[:3]
    np.testing.assert_allclose(table[[f"prob:{x}" for x in LABELS]].to_numpy(), expected,
                               atol=1e-6)
    for labels, row in zip(table["labels"], expected):
        assert set(filter(None, labels.split(","))) == {x for x, p in zip(LABELS, row) if p >= 0.5}

    out_jsonl = tmp_path / "out.jsonl"
    assert main(["predict", "--model", str(bundle_dir), "--input", str(source), "--text-column",
                 "description", "--output", str(out_jsonl), "--batch-size", "2"]) == 0
    records = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert [r["text"] for r in records] == TEXTS[:3]
    np.testing.assert_allclose([[r["probabilities"][x] for x in LABELS] for r in records],
                               expected, atol=1e-6)


def test_cli_reads_txt_and_skips_blank_lines(bundle_dir, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("plays music\n\na web server\n", encoding="utf-8")
    assert main(["predict", "--model", str(bundle_dir), "--input", str(source),
                 "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 blank line" in captured.err
    assert captured.out.splitlines()[0].startswith("text,labels,prob:admin")
    assert len(captured.out.splitlines()) == 3


@pytest.mark.parametrize("extra, words", [
    ([], ["TEXT", "--input"]),
    (["some text", "--input", "x.csv"], ["not both"]),
    (["--input", "{csv}", "--text-column", "nope"], ["no column 'nope'", "--text-column"]),
    (["--input", "{empty_cell}", "--text-column", "description"], ["row 2", "empty"]),
])
def test_cli_errors_exit_2_with_a_message(bundle_dir, tmp_path, capsys, extra, words):
    csv = tmp_path / "in.csv"
    pd.DataFrame({"description": ["plays music"]}).to_csv(csv, index=False)
    empty_cell = tmp_path / "empty.csv"
    empty_cell.write_text("description\nplays music\n\"\"\n")
    extra = [e.format(csv=csv, empty_cell=empty_cell) for e in extra]
    assert main(["predict", "--model", str(bundle_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    for word in words:
        assert word in err


def test_cli_names_a_missing_bundle_file(bundle_dir, tmp_path, capsys):
    broken = shutil.copytree(bundle_dir, tmp_path / "broken")
    (broken / "thresholds.json").unlink()
    assert main(["predict", "--model", str(broken), "plays music"]) == 2
    assert "thresholds.json" in capsys.readouterr().err


# --- the command line as users run it: a real process -----------------------------------------


def run_cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "mlclf_utils", "predict", *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def refused(result, *words):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert re.search(r"^error: ", result.stderr, re.M), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def test_cli_refuses_an_existing_output_unless_overwrite(bundle_dir, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("plays music\na web server\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("earlier results\n", encoding="utf-8")
    refused(run_cli("--model", bundle_dir, "--input", source, "--output", out),
            "--output", "already exists", "--overwrite")
    assert out.read_text(encoding="utf-8") == "earlier results\n"
    done = run_cli("--model", bundle_dir, "--input", source, "--output", out, "--overwrite",
                   "--no-progress")
    assert done.returncode == 0, done.stderr
    assert [json.loads(x)["text"] for x in out.read_text().splitlines()] == [
        "plays music", "a web server"]


def test_cli_never_writes_over_its_input(bundle_dir, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": ["plays music", "a web server"]}).to_csv(source, index=False)
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.csv").symlink_to(source)
    os.link(source, tmp_path / "hardlink.csv")
    for output in (source, tmp_path / "sub" / ".." / "in.csv", tmp_path / "link.csv",
                   tmp_path / "hardlink.csv"):
        for extra in ([], ["--overwrite"]):
            refused(run_cli("--model", bundle_dir, "--input", source, "--output", output, *extra),
                    "--output", "is the --input file")
    assert source.read_bytes() == before
    # The bundle is an input too: nothing is written into it.
    model = shutil.copytree(bundle_dir, tmp_path / "model")
    config = (model / "config.json").read_bytes()
    for output in (model / "config.json", model / "predictions.csv"):
        refused(run_cli("--model", model, "--input", source, "--output", output, "--overwrite"),
                "--output", "inside the --model folder")
    assert (model / "config.json").read_bytes() == config
    assert not (model / "predictions.csv").exists()


def test_cli_checks_the_output_folder_before_loading_the_model(bundle_dir, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("plays music\n", encoding="utf-8")
    out = tmp_path / "no-such-folder" / "out.csv"
    # The bundle is not even there: the output is checked first, before any loading.
    refused(run_cli("--model", tmp_path / "no-bundle", "--input", source, "--output", out),
            "--output", "no-such-folder", "does not exist")
    refused(run_cli("--model", bundle_dir, "plays music", "--output", out),
            "--output", "does not exist")
    refused(run_cli("--model", bundle_dir, "plays music", "--output", tmp_path),
            "--output", "is a folder")
    assert not out.parent.exists()


def test_cli_refuses_a_damaged_bundle_with_an_empty_file_list(bundle_dir, tmp_path):
    broken = shutil.copytree(bundle_dir, tmp_path / "broken")
    weights = broken / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:40] = b"\xff" * 32  # the safetensors header: loading it would fail in Rust
    weights.write_bytes(bytes(data))
    manifest = json.loads((broken / "bundle.json").read_text())
    manifest["files"] = []
    (broken / "bundle.json").write_text(json.dumps(manifest))
    result = run_cli("--model", broken, "plays music")
    refused(result, "bundle.json", "file list", "corrupt")
    assert "Safetensor" not in result.stderr


def test_cli_shows_a_progress_bar_on_stderr_for_file_input(bundle_dir, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"text number {i}\n" for i in range(5)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run_cli("--model", bundle_dir, "--input", source, "--output", out,
                     "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    assert re.search(r"predicting: 100%.*\b3/3\b", result.stderr), result.stderr
    assert len([json.loads(x) for x in out.read_text().splitlines()]) == 5
    assert "predicting" not in out.read_text()

    to_stdout = run_cli("--model", bundle_dir, "--input", source, "--batch-size", "2")
    assert "predicting" in to_stdout.stderr and "predicting" not in to_stdout.stdout
    assert len([json.loads(x) for x in to_stdout.stdout.splitlines()]) == 5

    quiet = run_cli("--model", bundle_dir, "--input", source, "--batch-size", "2",
                    "--no-progress")
    assert quiet.returncode == 0 and "predicting" not in quiet.stderr, quiet.stderr
    assert len(quiet.stdout.splitlines()) == 5


def test_cli_names_the_file_row_of_a_text_that_cleaning_empties(bundle_dir, tmp_path):
    """A .txt file's rows are its lines, blank ones included, as a reader counts them."""
    source = tmp_path / "in.txt"
    source.write_text("plays music\n\nhttps://example.org/only-a-link\n", encoding="utf-8")
    refused(run_cli("--model", bundle_dir, "--input", source, "--no-progress"),
            f"file {source}; row 3:", "empty after cleaning")
    table = tmp_path / "in.csv"
    pd.DataFrame({"text": ["plays music", "a web server", "https://example.org/x"]}).to_csv(
        table, index=False)
    refused(run_cli("--model", bundle_dir, "--input", table, "--no-progress"),
            f"file {table}; column 'text'; row 3:", "empty after cleaning")


# --- SageMaker ----------------------------------------------------------------------------------


def test_sagemaker_handlers_round_trip_json(bundle_dir, classifier):
    model = model_fn(str(bundle_dir))
    data = input_fn(json.dumps({"inputs": TEXTS, "parameters": {"batch_size": 2}}).encode(),
                    "application/json; charset=utf-8")
    body = output_fn(predict_fn(data, model), "application/json")
    records = json.loads(body)
    expected = classifier.predict(TEXTS)
    assert [r["labels"] for r in records] == [e["labels"] for e in expected]
    for record, want in zip(records, expected):
        assert record["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
    single = json.loads(output_fn(predict_fn(input_fn('{"inputs": "plays music"}',
                                                      "application/json"), model), "*/*"))
    assert len(single) == 1


def test_sagemaker_csv_input_is_one_text_per_line(bundle_dir):
    data = input_fn("plays music\r\na web server\n", "text/csv")
    assert data["inputs"] == ["plays music", "a web server"]


@pytest.mark.parametrize("call, error, word", [
    (lambda: input_fn("{}", "application/json"), DataError, "inputs"),
    (lambda: input_fn("not json", "application/json"), DataError, "JSON"),
    (lambda: input_fn('{"inputs": 3}', "application/json"), DataError, "inputs"),
    (lambda: input_fn("x", "application/x-npy"), ParameterError, "content_type"),
    (lambda: output_fn([], "text/csv"), ParameterError, "accept"),
    (lambda: predict_fn({"inputs": ["x"], "parameters": {"top_k": 2}}, None), ParameterError,
     "top_k"),
])
def test_sagemaker_handlers_reject_bad_requests(call, error, word):
    with pytest.raises(error, match=word):
        call()


def test_quantize_switch_for_endpoints(bundle_dir, monkeypatch):
    monkeypatch.setenv("MLCLF_QUANTIZE", "1")
    kinds = {m._get_name() for m in model_fn(str(bundle_dir)).model.modules()}
    assert "DynamicQuantizedLinear" in kinds


def test_exported_sagemaker_model_imports_without_mlclf_installed(bundle_dir, classifier,
                                                                 tmp_path):
    out = export_sagemaker_model(bundle_dir, tmp_path / "sm")
    bundle.check_bundle(out)
    code = out / "code"
    assert (code / "inference.py").is_file() and "pandas" in (code / "requirements.txt").read_text()
    # -I -S: no PYTHONPATH, no cwd, no .pth files (so no editable install of mlclf_utils);
    # sys.path is the standard library, code/ and site-packages only.
    script = f"""
import json, sys
sys.path.insert(0, {str(code)!r})
sys.path.append({sysconfig.get_paths()["purelib"]!r})
import inference
import mlclf_utils
assert mlclf_utils.__file__.startswith({str(code)!r}), mlclf_utils.__file__
model = inference.model_fn({str(out)!r})
body = inference.output_fn(inference.predict_fn(
    inference.input_fn(json.dumps({{"inputs": ["plays music"]}}), "application/json"), model),
    "application/json")
print(body)
"""
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])[0]
    want = classifier.predict(["plays music"])[0]
    assert record["labels"] == want["labels"]
    assert record["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)


def test_export_sagemaker_refuses_a_non_empty_folder(bundle_dir, tmp_path):
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "old.txt").write_text("x")
    with pytest.raises(ParameterError, match="out_dir"):
        export_sagemaker_model(bundle_dir, tmp_path / "sm")


# --- plain transformers ------------------------------------------------------------------------


def pipeline_probabilities(path, texts, labels):
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(path), top_k=None,
                        function_to_apply="sigmoid")
    return np.array([[{d["label"]: d["score"] for d in result}[x] for x in labels]
                     for result in classify(texts)])


def test_bundle_loads_in_transformers_pipeline_with_the_same_probabilities(bundle_dir,
                                                                          classifier):
    texts = ["plays music", "a web server for admins", "network"]  # cleaning leaves them alone
    np.testing.assert_allclose(pipeline_probabilities(bundle_dir, texts, LABELS),
                               classifier.predict_proba(texts), atol=1e-5)


@pytest.mark.slow
def test_packaged_minilm_bundle_predicts(tmp_path, minilm_dir, untrained):
    model_dir = untrained.model_dir(tmp_path / "model", encoders.DEFAULT_MODEL, LABELS)
    path = bundle.export_bundle(model_dir, tmp_path / "bundle",
                                thresholds={label: 0.5 for label in LABELS},
                                preprocess_config={**PREPROCESS, "max_length": 128})
    minilm = Classifier.load(path)
    assert minilm.model.config.model_type == "bert"
    texts = ["plays music", "a web server for admins", "network tools for the command line"]
    probabilities = minilm.predict_proba(texts, batch_size=2)
    expected = np.stack([direct_probabilities(minilm.model, minilm.tokenizer, t) for t in texts])
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(pipeline_probabilities(path, texts, LABELS), probabilities,
                               atol=1e-5)


def test_a_bundle_with_a_calibration_returns_calibrated_probabilities(model_dir, classifier,
                                                                     tmp_path):
    """What Classifier returns is what 04 tuned the thresholds on: the calibrated outputs."""
    from mlclf_utils.evaluation import calibration

    fitted = {"method": "platt", "labels": LABELS, "a": [0.5, 1.0, 2.0, 3.0],
              "b": [1.0, 0.0, -1.0, 0.5]}
    out = bundle.export_bundle(model_dir, tmp_path / "calibrated",
                               thresholds={label: 0.5 for label in LABELS},
                               preprocess_config=PREPROCESS, calibration=fitted)
    calibrated = Classifier.load(out)
    raw = classifier.predict_proba(TEXTS)
    np.testing.assert_allclose(calibrated.predict_proba(TEXTS),
                               calibration.apply_calibration(fitted, raw, LABELS), atol=1e-5)
    assert not np.allclose(calibrated.predict_proba(TEXTS), raw, atol=1e-3)
