"""Bundle export and checks on files alone: the "model" is placeholder bytes, nothing loads it."""

import json
import math
import os

import pytest

from mlclf_utils.serving import bundle
from mlclf_utils.data.cleaning import CleaningConfig
from mlclf_utils.errors import DataError, ParameterError

LABELS = ["audio", "network", "web"]
THRESHOLDS = {"audio": 0.3, "network": 0.5, "web": 0.7}
PREPROCESS = {"source": "data.csv", "cleaning": {"lowercase": True}, "max_length": 64}


@pytest.fixture()
def model_dir(tmp_path):
    path = tmp_path / "run-1" / "03_train" / "model"
    path.mkdir(parents=True)
    config = {"model_type": "distilbert", "max_position_embeddings": 512,
              "id2label": {str(i): name for i, name in enumerate(LABELS)}}
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(os.urandom(256))
    (path / "tokenizer.json").write_text("{}")
    (path / "tokenizer_config.json").write_text("{}")
    (path / "vocab.txt").write_text("[PAD]\n")
    (path / "label_map.json").write_text(json.dumps({"labels": LABELS}))
    (path / "pos_weight.json").write_text(json.dumps({"pos_weight": dict.fromkeys(LABELS, 1.0)}))
    (path / "hyperparameters.json").write_text(json.dumps({"max_length": 64}))
    (path / "training_args.bin").write_bytes(b"\x80\x04pickle")
    return path


def export(model_dir, out, **overrides):
    kwargs = {"thresholds": THRESHOLDS, "preprocess_config": PREPROCESS} | overrides
    return bundle.export_bundle(model_dir, out, **kwargs)


def test_export_copies_safe_files_and_describes_them(model_dir, tmp_path):
    out = export(model_dir, tmp_path / "bundle", metrics={"macro_f1": 0.42})
    names = {p.name for p in out.iterdir()}
    assert set(bundle.REQUIRED_FILES) <= names
    assert {"vocab.txt", "pos_weight.json", "hyperparameters.json"} <= names
    assert "training_args.bin" not in names  # a pickle never enters a bundle
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["format"] == "mlclf-bundle" and manifest["format_version"] == 1
    assert manifest["source_run"] == "run-1" and manifest["num_labels"] == 3
    assert manifest["metrics"] == {"macro_f1": 0.42} and manifest["max_length"] == 64
    assert manifest["not_copied"] == ["training_args.bin"]
    assert manifest["created"].endswith("+00:00")
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == names - {"bundle.json"}
    weights = model_dir / "model.safetensors"
    assert listed["model.safetensors"]["sha256"] == bundle.sha256_of(weights)
    assert (out / "model.safetensors").read_bytes() == weights.read_bytes()


def test_thresholds_and_cleaning_files(model_dir, tmp_path):
    reordered = {"web": 0.7, "audio": 0.3, "network": 0.5}
    out = export(model_dir, tmp_path / "bundle", thresholds=reordered)
    document = json.loads((out / "thresholds.json").read_text())
    assert list(document["thresholds"].items()) == list(THRESHOLDS.items())  # model order
    config = json.loads((out / "preprocess_config.json").read_text())
    assert config["source"] == "data.csv"
    assert config["cleaning"] == CleaningConfig(lowercase=True).to_dict()  # every switch
    info = bundle.read_bundle(out)
    assert info.labels == LABELS and info.thresholds == [0.3, 0.5, 0.7]
    assert info.cleaning == CleaningConfig(lowercase=True) and info.max_length == 64


def test_max_length_is_the_one_training_used(model_dir, tmp_path):
    (model_dir / "hyperparameters.json").write_text(json.dumps({"max_length": 48}))
    out = export(model_dir, tmp_path / "bundle")
    assert json.loads((out / "bundle.json").read_text())["max_length"] == 48
    assert json.loads((out / "preprocess_config.json").read_text())["max_length"] == 64
    assert bundle.read_bundle(out).max_length == 48


def test_numpy_thresholds_and_metrics_are_accepted(model_dir, tmp_path):
    np = pytest.importorskip("numpy")
    out = export(model_dir, tmp_path / "bundle",
                 thresholds={k: np.float32(v) for k, v in THRESHOLDS.items()},
                 metrics={"f1": np.float64(0.25), "n": np.int64(3)})
    assert json.loads((out / "bundle.json").read_text())["metrics"] == {"f1": 0.25, "n": 3}
    assert bundle.read_bundle(out).thresholds == pytest.approx([0.3, 0.5, 0.7])


def test_export_refuses_a_non_empty_folder_but_fills_an_empty_one(model_dir, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ParameterError, match="never overwritten"):
        export(model_dir, tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    bundle.check_bundle(export(model_dir, tmp_path / "empty"))


@pytest.mark.parametrize("thresholds, words", [
    ({"audio": 0.3, "network": 0.5}, ["missing ['web']"]),
    (THRESHOLDS | {"games": 0.5}, ["not in the model ['games']"]),
    (THRESHOLDS | {"web": math.nan}, ["finite"]),
    (THRESHOLDS | {"web": -0.1}, [">= 0"]),
    (THRESHOLDS | {"web": "0.5"}, ["finite"]),
    (THRESHOLDS | {"web": True}, ["finite"]),
    ([0.3, 0.5, 0.7], ["dict"]),
])
def test_bad_thresholds_are_refused_and_leave_nothing(model_dir, tmp_path, thresholds, words):
    with pytest.raises(ParameterError, match="thresholds") as caught:
        export(model_dir, tmp_path / "bundle", thresholds=thresholds)
    for word in words:
        assert word in str(caught.value)
    assert not (tmp_path / "bundle").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]


@pytest.mark.parametrize("config, word", [
    ({"cleaning": {"lowercase": True}}, "max_length"),
    (PREPROCESS | {"max_length": 1024}, "at most 512"),
    (PREPROCESS | {"cleaning": {"shout": True}}, "shout"),
    ("not a dict", "preprocess_config"),
])
def test_bad_preprocess_config_is_refused(model_dir, tmp_path, config, word):
    with pytest.raises(ParameterError, match=word):
        export(model_dir, tmp_path / "bundle", preprocess_config=config)


def test_model_folder_problems_name_the_file(model_dir, tmp_path):
    (model_dir / "tokenizer.json").unlink()
    with pytest.raises(DataError, match="tokenizer.json"):
        export(model_dir, tmp_path / "b1")
    (model_dir / "tokenizer.json").write_text("{}")
    (model_dir / "label_map.json").write_text(json.dumps({"labels": ["audio", "web", "network"]}))
    with pytest.raises(DataError, match="label_map.json.*another order"):
        export(model_dir, tmp_path / "b2")


def test_pickled_weights_are_refused(model_dir, tmp_path):
    (model_dir / "model.safetensors").rename(model_dir / "pytorch_model.bin")
    with pytest.raises(DataError, match="pickled") as caught:
        export(model_dir, tmp_path / "bundle")
    assert "save_pretrained" in str(caught.value)


@pytest.mark.parametrize("name", bundle.REQUIRED_FILES + ("vocab.txt",))
def test_check_bundle_names_a_missing_file(model_dir, tmp_path, name):
    out = export(model_dir, tmp_path / "bundle")
    (out / name).unlink()
    with pytest.raises(DataError, match=name.replace(".", r"\.")) as caught:
        bundle.check_bundle(out)
    assert "missing" in str(caught.value) and "export_bundle" in str(caught.value)


def test_check_bundle_catches_changed_and_truncated_files(model_dir, tmp_path):
    out = export(model_dir, tmp_path / "bundle")
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"model\.safetensors.*SHA-256"):
        bundle.check_bundle(out)
    weights.write_bytes(bytes(data[:100]))
    with pytest.raises(DataError, match=r"model\.safetensors.*interrupted copy"):
        bundle.check_bundle(out)


def test_check_bundle_reports_invalid_json_and_inconsistent_labels(model_dir, tmp_path):
    out = export(model_dir, tmp_path / "bundle")
    (out / "bundle.json").write_text("{broken")
    with pytest.raises(DataError, match=r"bundle\.json.*not valid JSON"):
        bundle.check_bundle(out)
    out = export(model_dir, tmp_path / "bundle2")
    # checksums that match content that disagrees with the model: the label check catches it
    (out / "thresholds.json").write_text(json.dumps({"thresholds": {"audio": 0.5}}))
    manifest = json.loads((out / "bundle.json").read_text())
    for entry in manifest["files"]:
        if entry["name"] == "thresholds.json":
            entry.update(bytes=(out / "thresholds.json").stat().st_size,
                         sha256=bundle.sha256_of(out / "thresholds.json"))
    (out / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"thresholds\.json.*missing \['network', 'web'\]"):
        bundle.check_bundle(out)


def test_check_bundle_on_a_folder_that_is_not_there(tmp_path):
    with pytest.raises(DataError, match="no such bundle folder"):
        bundle.check_bundle(tmp_path / "nope")


def test_newer_format_asks_for_an_upgrade(model_dir, tmp_path):
    out = export(model_dir, tmp_path / "bundle")
    manifest = json.loads((out / "bundle.json").read_text())
    manifest["format_version"] = 99
    (out / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="upgrade"):
        bundle.check_bundle(out)


def _rewrite_manifest(out, change):
    manifest = json.loads((out / "bundle.json").read_text())
    change(manifest)
    (out / "bundle.json").write_text(json.dumps(manifest))


def _damage(path):
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("change", [
    lambda m: m.update(files=[]),
    lambda m: m.pop("files"),
], ids=["empty-list", "missing-key"])
def test_an_empty_or_missing_file_list_is_a_corrupt_bundle(model_dir, tmp_path, change):
    out = export(model_dir, tmp_path / "bundle")
    _damage(out / "model.safetensors")
    _rewrite_manifest(out, change)
    with pytest.raises(DataError, match=r"bundle\.json.*file list") as caught:
        bundle.check_bundle(out)
    assert "corrupt" in str(caught.value) and "export_bundle" in str(caught.value)


def test_a_file_the_loader_reads_must_be_listed_and_match(model_dir, tmp_path):
    """Dropping the weights' entry from bundle.json does not skip their checksum."""
    out = export(model_dir, tmp_path / "bundle")
    _damage(out / "model.safetensors")
    _rewrite_manifest(out, lambda m: m.update(
        files=[e for e in m["files"] if e["name"] != "model.safetensors"]))
    with pytest.raises(DataError, match=r"model\.safetensors.*not listed in bundle\.json"):
        bundle.check_bundle(out)


def test_an_unlisted_file_the_loader_would_read_is_refused(model_dir, tmp_path):
    out = export(model_dir, tmp_path / "bundle")
    (out / "special_tokens_map.json").write_text("{}")  # transformers would read it
    with pytest.raises(DataError, match=r"special_tokens_map\.json.*not listed in bundle\.json"):
        bundle.check_bundle(out)
    (out / "special_tokens_map.json").unlink()
    (out / "predictions.csv").write_text("text,labels\n")  # no loader reads a CSV
    (out / ".DS_Store").write_bytes(b"\0")
    bundle.check_bundle(out)


def test_a_listed_name_must_be_a_file_in_the_bundle(model_dir, tmp_path):
    out = export(model_dir, tmp_path / "bundle")
    (tmp_path / "outside.json").write_text("{}")
    digest = bundle.sha256_of(tmp_path / "outside.json")
    _rewrite_manifest(out, lambda m: m["files"].append(
        {"name": "../outside.json", "bytes": 2, "sha256": digest}))
    with pytest.raises(DataError, match=r"bundle\.json.*'\.\./outside\.json'.*not a file name"):
        bundle.check_bundle(out)


def _calibration(labels, a=2.0, b=-1.0):
    return {"method": "platt", "fitted_on": "validation", "labels": list(labels),
            "a": [a] * len(labels), "b": [b] * len(labels)}


def test_a_calibration_is_stored_listed_and_read_back(model_dir, tmp_path):
    out = export(model_dir, tmp_path / "bundle", calibration=_calibration(LABELS))
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["calibration"] == "platt"
    assert "calibration.json" in {f["name"] for f in manifest["files"]}
    assert "returns the raw sigmoid outputs" in manifest["notes"]
    info = bundle.read_bundle(out)
    assert info.calibration["a"] == [2.0] * len(LABELS)
    assert bundle.read_bundle(export(model_dir, tmp_path / "plain")).calibration is None


def test_a_calibration_for_other_labels_is_refused_at_export_and_load(model_dir, tmp_path):
    with pytest.raises(DataError, match="other labels"):
        export(model_dir, tmp_path / "bad", calibration=_calibration(list(reversed(LABELS))))
    assert not (tmp_path / "bad").exists()
    out = export(model_dir, tmp_path / "bundle", calibration=_calibration(LABELS))
    (out / "calibration.json").write_text(json.dumps(_calibration(LABELS, a=-1.0)))
    with pytest.raises(DataError, match="calibration.json: corrupt"):  # changed after export
        bundle.read_bundle(out)


def test_the_manifest_records_the_versions_that_decide_whether_it_loads(model_dir, tmp_path):
    out = export(model_dir, tmp_path / "bundle")
    recorded = json.loads((out / "bundle.json").read_text())["versions"]
    assert {"python", "torch", "transformers", "tokenizers", "mlclf-utils"} <= set(recorded)


def test_unserialisable_metrics_are_refused_before_anything_is_written(model_dir, tmp_path):
    with pytest.raises(ParameterError, match="metrics"):
        export(model_dir, tmp_path / "bundle", metrics={"f1": object()})
    assert not (tmp_path / "bundle").exists()
