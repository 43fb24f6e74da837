"""The ONNX Runtime backend on real models: export, probabilities against PyTorch, int8, bundles
with and without the ONNX file, and ``predict --backend onnx``.

Tolerances (max abs probability difference from the torch backend on the same bundle):
fp32 ``FP32_TOL`` = 1e-4 (measured: about 1e-7); int8 ``INT8_TOL`` = 0.05 on the tiny model with
a bold random head (measured: about 0.02). Each check also requires the probabilities to
differ between texts, so a backend returning constants could not pass.
"""

import json
import shutil

import numpy as np
import onnx
import pytest

from mlclf_utils.__main__ import main
from mlclf_utils.data.cleaning import CleaningConfig
from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.modeling import encoders
from mlclf_utils.serving import bundle, onnx_export
from mlclf_utils.serving.bundle_reader import ONNX_FILE, ONNX_INT8_FILE
from mlclf_utils.serving.predict import Classifier

FP32_TOL = 1e-4
INT8_TOL = 0.05
LABELS = ["admin", "audio", "network", "web"]
PREPROCESS = {"source": "smoke.csv", "cleaning": CleaningConfig().to_dict(), "max_length": 32}
CALIBRATION = {"method": "platt", "labels": LABELS, "a": [0.5, 1.0, 2.0, 3.0],
               "b": [1.0, 0.0, -1.0, 0.5]}
TEXTS = [
    "A web server. See https://example.org/docs for details",
    "plays music",
    "Network tools\n .\n for administrators, with a very long description of what they do",
    "x",
    "a proxy for the web, with a small admin console",
]
CHECK_TEXTS = TEXTS * 4
CHECK_TARGETS = np.random.default_rng(0).integers(0, 2, (len(CHECK_TEXTS), len(LABELS)))


def export(model_dir, out, **options):
    return bundle.export_bundle(model_dir, out, thresholds={x: 0.5 for x in LABELS},
                                preprocess_config=PREPROCESS, calibration=CALIBRATION, **options)


@pytest.fixture(scope="module", params=["cls", "mean"])
def pooling(request):
    return request.param


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model_dir, pooling, untrained):
    return untrained.model_dir(tmp_path_factory.mktemp(f"model-{pooling}") / "model",
                               encoders.TINY_MODEL, LABELS, pooling)


@pytest.fixture(scope="module")
def onnx_bundle(model_dir, tmp_path_factory):
    """04's way: fp32 always, int8 judged on texts with targets."""
    return export(model_dir, tmp_path_factory.mktemp("ob") / "bundle", onnx=True,
                  onnx_check=(CHECK_TEXTS, CHECK_TARGETS))


@pytest.fixture(scope="module")
def plain_bundle(model_dir, tmp_path_factory):
    return export(model_dir, tmp_path_factory.mktemp("pb") / "bundle")


@pytest.fixture(scope="module")
def torch_probs(onnx_bundle):
    probs = Classifier.load(onnx_bundle).predict_proba(TEXTS, batch_size=2)
    assert np.ptp(probs, axis=0).min() > 1e-3  # rows differ: a mix-up or a constant would show
    return probs


def test_fp32_onnx_probabilities_match_torch(onnx_bundle, torch_probs):
    classifier = Classifier.load(onnx_bundle, backend="onnx")
    assert classifier.backend == "onnx" and "backend='onnx'" in repr(classifier)
    probs = classifier.predict_proba(TEXTS, batch_size=2)
    assert probs.dtype == np.float32 and probs.shape == (len(TEXTS), len(LABELS))
    np.testing.assert_allclose(probs, torch_probs, atol=FP32_TOL, rtol=0)
    # One text at a time (no padding) gives the same rows: padding is masked in the graph too.
    alone = np.concatenate([classifier.predict_proba([t]) for t in TEXTS])
    np.testing.assert_allclose(alone, probs, atol=FP32_TOL, rtol=0)


def test_onnx_applies_the_same_calibration_and_thresholds(onnx_bundle, torch_probs):
    from mlclf_utils.evaluation.calibration_maps import apply_calibration

    classifier = Classifier.load(onnx_bundle, backend="onnx")
    uncalibrated = Classifier(classifier.model, classifier.tokenizer, LABELS, [0.5] * 4,
                              max_length=32, cleaning=CleaningConfig())
    raw = uncalibrated.predict_proba(TEXTS)
    assert not np.allclose(raw, torch_probs, atol=1e-2)  # so calibration did matter
    np.testing.assert_allclose(apply_calibration(CALIBRATION, raw), torch_probs, atol=FP32_TOL)
    torch_labels = [p["labels"] for p in Classifier.load(onnx_bundle).predict(TEXTS)]
    assert [p["labels"] for p in classifier.predict(TEXTS)] == torch_labels


def test_int8_is_integer_arithmetic_and_stays_close(onnx_bundle, torch_probs):
    graph = onnx.load(str(onnx_bundle / ONNX_INT8_FILE))
    kinds = {node.op_type for node in graph.graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & kinds, kinds
    assert (onnx_bundle / ONNX_INT8_FILE).stat().st_size < (onnx_bundle / ONNX_FILE).stat().st_size
    # the matrix products only: every embedding table stays a float initializer
    tables = {i.name: i.data_type for i in graph.graph.initializer
              if "embeddings" in i.name and i.name.endswith(".weight")}
    assert tables and set(tables.values()) == {onnx.TensorProto.FLOAT}, tables
    assert not any(node.op_type == "DynamicQuantizeLinear" and "embeddings" in node.name
                   for node in graph.graph.node)
    probs = Classifier.load(onnx_bundle, backend="onnx", quantize=True).predict_proba(TEXTS)
    diff = np.abs(probs - torch_probs)
    assert diff.max() <= INT8_TOL and diff.max() > 0  # int8 really ran, and stayed close


def test_the_bundle_lists_and_describes_its_onnx_files(onnx_bundle):
    manifest = json.loads((onnx_bundle / "bundle.json").read_text())
    listed = {entry["name"]: entry for entry in manifest["files"]}
    for name in (ONNX_FILE, ONNX_INT8_FILE):
        assert listed[name]["sha256"] == bundle.sha256_of(onnx_bundle / name)
    section = manifest["onnx"]
    assert section["fp32"]["max_abs_prob_diff_vs_torch"] <= onnx_export.FP32_TOLERANCE
    assert "Attention" in section["fp32"]["fused_ops"]
    verdict = section["int8"]["judged"]
    assert verdict["texts"] == len(CHECK_TEXTS) and section["int8"]["kept"] is True
    assert "transformers.pipeline does not use it" in manifest["notes"]


def test_a_changed_onnx_file_is_refused(onnx_bundle, tmp_path):
    broken = shutil.copytree(onnx_bundle, tmp_path / "broken")
    data = bytearray((broken / ONNX_FILE).read_bytes())
    data[-20:] = b"\x00" * 20
    (broken / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(DataError, match="SHA-256") as caught:
        Classifier.load(broken, backend="onnx")
    assert ONNX_FILE in str(caught.value)


def test_int8_that_costs_too_much_is_left_out(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "INT8_LIMIT_POINTS", -1.0)  # demand a 1-point gain
    out = export(model_dir, tmp_path / "bundle", onnx=True,
                 onnx_check=(CHECK_TEXTS, CHECK_TARGETS))
    assert (out / ONNX_FILE).is_file() and not (out / ONNX_INT8_FILE).exists()
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["onnx"]["int8"]["kept"] is False
    assert ONNX_INT8_FILE not in {entry["name"] for entry in manifest["files"]}
    with pytest.raises(DataError, match=ONNX_INT8_FILE):
        Classifier.load(out, backend="onnx", quantize=True)


def test_a_bundle_without_onnx_says_how_to_add_it(plain_bundle, torch_probs):
    assert not (plain_bundle / ONNX_FILE).exists()
    with pytest.raises(DataError) as caught:
        Classifier.load(plain_bundle, backend="onnx")
    message = str(caught.value)
    assert ONNX_FILE in message and "missing" in message and "export-onnx" in message
    # The torch backend does not need it.
    np.testing.assert_allclose(Classifier.load(plain_bundle).predict_proba(TEXTS, batch_size=2),
                               torch_probs, atol=1e-6)


def test_add_onnx_exports_into_an_existing_bundle(plain_bundle, torch_probs, tmp_path):
    copy = shutil.copytree(plain_bundle, tmp_path / "bundle")
    bundle.add_onnx(copy)
    bundle.check_bundle(copy)
    assert not (copy / ONNX_INT8_FILE).exists()
    np.testing.assert_allclose(Classifier.load(copy, backend="onnx").predict_proba(TEXTS),
                               torch_probs, atol=FP32_TOL, rtol=0)
    with pytest.raises(ParameterError, match="overwrite"):
        bundle.add_onnx(copy)
    bundle.add_onnx(copy, int8=True, overwrite=True)
    manifest = json.loads((copy / "bundle.json").read_text())
    assert manifest["onnx"]["int8"]["judged"] is None  # written on request, not judged
    assert {ONNX_FILE, ONNX_INT8_FILE} <= {entry["name"] for entry in manifest["files"]}
    bundle.check_bundle(copy)


def test_an_unlisted_onnx_file_makes_the_bundle_corrupt(plain_bundle, onnx_bundle, tmp_path):
    copy = shutil.copytree(plain_bundle, tmp_path / "bundle")
    shutil.copyfile(onnx_bundle / ONNX_FILE, copy / ONNX_FILE)  # dropped in by hand
    with pytest.raises(DataError, match="not listed"):
        Classifier.load(copy, backend="onnx")


@pytest.mark.parametrize("options, name", [
    ({"backend": "tensorrt"}, "backend"),
    ({"backend": "onnx", "bf16": True}, "bf16"),
])
def test_bad_backend_options_name_the_parameter(onnx_bundle, options, name):
    with pytest.raises(ParameterError, match=name):
        Classifier.load(onnx_bundle, **options)


# --- command line ------------------------------------------------------------------------------


def cli_probs(capsys, *args):
    assert main(["predict", *map(str, args)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return np.array([[r["probabilities"][x] for x in LABELS] for r in records])


def test_cli_backend_onnx_predicts_what_torch_does(onnx_bundle, torch_probs, capsys):
    probs = cli_probs(capsys, "--model", onnx_bundle, "--backend", "onnx", "--threads", "1",
                      *TEXTS)
    np.testing.assert_allclose(probs, torch_probs, atol=FP32_TOL, rtol=0)
    int8 = cli_probs(capsys, "--model", onnx_bundle, "--backend", "onnx", "--quantize", *TEXTS)
    assert 0 < np.abs(int8 - torch_probs).max() <= INT8_TOL


def test_cli_export_onnx_then_predict(plain_bundle, torch_probs, tmp_path, capsys):
    copy = shutil.copytree(plain_bundle, tmp_path / "bundle")
    assert main(["predict", "--model", str(copy), "--backend", "onnx", "plays music"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ONNX_FILE in err and "export-onnx" in err
    assert main(["export-onnx", str(copy)]) == 0
    assert f"wrote {copy / ONNX_FILE}" in capsys.readouterr().err
    probs = cli_probs(capsys, "--model", copy, "--backend", "onnx", *TEXTS)
    np.testing.assert_allclose(probs, torch_probs, atol=FP32_TOL, rtol=0)
    assert main(["export-onnx", str(copy)]) == 2
    assert "--overwrite" in capsys.readouterr().err


# --- the packaged MiniLM, both poolings --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cls", "mean"])
def test_packaged_minilm_exports_and_matches_torch(tmp_path, minilm_dir, kind, untrained):
    model_dir = untrained.model_dir(tmp_path / "model", encoders.DEFAULT_MODEL, LABELS, kind)
    out = bundle.export_bundle(model_dir, tmp_path / "bundle",
                               thresholds={x: 0.5 for x in LABELS},
                               preprocess_config={**PREPROCESS, "max_length": 128}, onnx=True)
    section = json.loads((out / "bundle.json").read_text())["onnx"]
    assert {"Attention", "SkipLayerNormalization"} <= set(section["fp32"]["fused_ops"])
    reference = Classifier.load(out).predict_proba(TEXTS, batch_size=2)
    assert np.ptp(reference, axis=0).min() > 1e-3
    probs = Classifier.load(out, backend="onnx").predict_proba(TEXTS, batch_size=2)
    np.testing.assert_allclose(probs, reference, atol=FP32_TOL, rtol=0)


def test_an_export_that_disagrees_with_torch_is_refused_and_leaves_no_file(model_dir, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(onnx_export, "FP32_TOLERANCE", -1.0)  # nothing can agree this well
    folder = shutil.copytree(model_dir, tmp_path / "model")
    with pytest.raises(DataError, match="disagrees with PyTorch"):
        onnx_export.export_onnx(folder)
    assert not [p.name for p in folder.iterdir() if "onnx" in p.name]


def test_the_sagemaker_export_leaves_the_onnx_files_behind(onnx_bundle, torch_probs, tmp_path):
    """The endpoint runs torch: the files would only add to model.tar.gz, and the copy's
    bundle.json must list exactly what the copy holds."""
    from mlclf_utils.serving.hosting import export_sagemaker_model

    out = export_sagemaker_model(onnx_bundle, tmp_path / "sm")
    assert (onnx_bundle / ONNX_FILE).is_file() and not list(out.glob("*.onnx"))
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["onnx"] is None
    assert {e["name"] for e in manifest["files"]} == {p.name for p in out.iterdir()
                                                     if p.is_file() and p.name != "bundle.json"}
    bundle.check_bundle(out)
    np.testing.assert_allclose(Classifier.load(out).predict_proba(TEXTS, batch_size=2),
                               torch_probs, atol=1e-6)
