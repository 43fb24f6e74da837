"""04's bundle cell: the bundle and one prediction as a few readable lines, on real bundles of
the tiny model (real ONNX export, real int8 verdict), never the raw probability vector."""

import json

import numpy as np
import pytest

from mlclf_utils.data.cleaning import CleaningConfig
from mlclf_utils.modeling import encoders
from mlclf_utils.serving import bundle, bundle_summary, onnx_export
from mlclf_utils.serving.predict import Classifier

LABELS = ["admin", "audio", "network", "web", "x11", "games", "mail"]
PREPROCESS = {"source": "smoke.csv", "cleaning": CleaningConfig().to_dict(), "max_length": 32}
THRESHOLDS = dict(zip(LABELS, [0.5, 0.4, 0.45, 0.55, 0.5, 0.6, 0.3]))
TEXTS = ["a web server with an admin console", "plays music", "network tools", "x",
         "a mail client for the desktop"] * 4
TARGETS = np.random.default_rng(0).integers(0, 2, (len(TEXTS), len(LABELS)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model_dir, untrained):
    return untrained.model_dir(tmp_path_factory.mktemp("model") / "model", encoders.TINY_MODEL,
                               LABELS)


def export(model_dir, out, **options):
    return bundle.export_bundle(model_dir, out, thresholds=THRESHOLDS,
                                preprocess_config=PREPROCESS, **options)


def manifest(bundle_dir):
    return json.loads((bundle_dir / "bundle.json").read_text())


@pytest.fixture(scope="module")
def onnx_bundle(model_dir, tmp_path_factory):
    return export(model_dir, tmp_path_factory.mktemp("ob") / "bundle", onnx=True,
                  onnx_check=(TEXTS, TARGETS))


def test_the_summary_lists_the_files_and_both_onnx_verdicts(onnx_bundle):
    text = bundle_summary.describe_bundle(onnx_bundle)
    section = manifest(onnx_bundle)["onnx"]
    for entry in manifest(onnx_bundle)["files"]:
        assert entry["name"] in text
    assert "model.onnx" in text and "model.int8.onnx" in text
    assert (f"ONNX fp32 (model.onnx): matches PyTorch, probabilities differ by at most "
            f"{section['fp32']['max_abs_prob_diff_vs_torch']:.1e}") in text
    judged = section["int8"]["judged"]
    assert judged["kept"] and "ONNX int8 (model.int8.onnx): kept" in " ".join(text.split())
    flat = " ".join(text.split())
    assert f"on {len(TEXTS)} test texts" in flat
    assert f"({judged['macro_f1_change_points']:+.2f} points)" in flat
    assert "{" not in text  # no JSON dumped


def test_a_dropped_int8_says_why_and_that_fp32_serves(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "INT8_LIMIT_POINTS", -1.0)  # demand a 1-point gain
    out = export(model_dir, tmp_path / "bundle", onnx=True, onnx_check=(TEXTS, TARGETS))
    flat = " ".join(bundle_summary.describe_bundle(out).split())
    assert "ONNX int8: dropped, it costs more than the -1-point limit" in flat
    assert "the bundle serves fp32" in flat and "model.int8.onnx" not in flat


def test_a_bundle_without_onnx_says_how_to_add_it(model_dir, tmp_path):
    flat = " ".join(bundle_summary.describe_bundle(export(model_dir, tmp_path / "b")).split())
    assert "ONNX: not exported (export_onnx=False)" in flat and "export-onnx" in flat


def test_one_prediction_shows_the_top_labels_with_thresholds_not_every_probability(onnx_bundle):
    classifier = Classifier.load(onnx_bundle)
    text = TEXTS[0]
    probabilities = classifier.predict_proba([text])[0]
    record = classifier.predict([text])[0]
    shown = bundle_summary.describe_prediction(classifier, text, top=3, truth=TARGETS[0])
    lines = shown.splitlines()
    assert lines[0] == f"example: {text!r}"
    assert lines[1] == f"  predicted: {', '.join(record['labels'])}" or (
        not record["labels"] and "no label reaches its threshold" in lines[1])
    given = [label for label, flag in zip(LABELS, TARGETS[0]) if flag]
    assert lines[2] == f"  as given: {', '.join(given) or '(none)'}"
    assert lines[3] == f"  top 3 of {len(LABELS)} labels, probability (threshold):"
    rows = lines[4:]
    order = np.argsort(-probabilities, kind="stable")[:3]
    assert len(rows) == 3
    for row, k in zip(rows, order):
        label = LABELS[k]
        assert row.split()[:3] == [label, f"{probabilities[k]:.3f}", f"({THRESHOLDS[label]:.3f})"]
        assert row.endswith("<- predicted") == (label in record["labels"])
    assert "{" not in shown


def test_a_long_example_is_noted_as_cut_instead_of_warning(onnx_bundle):
    import warnings

    classifier = Classifier.load(onnx_bundle)
    long_text = "a web server with a plugin system and a manual " * 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a truncation warning would be a red box in 04
        shown = bundle_summary.describe_prediction(classifier, long_text)
    first = shown.splitlines()[0]
    assert first.endswith("...' (cut to 32 tokens, as in training)")
    assert "(cut to" not in bundle_summary.describe_prediction(classifier, "plays music")
