"""04's files read back: ``calibration_of`` tells "04 chose no calibration" from "04 is missing"
and names a broken file; 05 learns from it whether 04 calibrated, and refuses a broken one
before it makes its folder. (The other readers are tested through ``stages.evaluate``.)"""

import numpy as np
import pytest

from mlclf_utils import artifacts
from mlclf_utils.errors import DataError
from mlclf_utils.evaluation import calibration, misclassifications, thresholds
from mlclf_utils.serving.bundle_reader import CALIBRATION_FILE
from mlclf_utils.stages import evaluate, evaluate_readers, explain

LABELS = ["a", "b"]


def _bundle(run_dir):
    bundle = artifacts.path(run_dir, evaluate.STAGE, artifacts.BUNDLE_DIR)
    bundle.mkdir(parents=True)
    return bundle


def _fitted() -> dict:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(60, 2))
    probs = np.clip(0.3 * y + rng.uniform(0.0, 0.7, size=(60, 2)), 0.01, 0.99)
    return calibration.fit_calibration(y, probs, LABELS, method="platt", min_support=1)


def test_04s_stage_module_reads_through_these_readers():
    for name in ("read_report", "read_per_class", "read_thresholds", "read_misclassifications",
                 "calibration_of", "READ_HINT"):
        assert getattr(evaluate, name) is getattr(evaluate_readers, name), name


def test_calibration_of_returns_the_maps_04_saved(tmp_path):
    fitted = _fitted()
    calibration.save_calibration(fitted, _bundle(tmp_path) / CALIBRATION_FILE)
    found = evaluate.calibration_of(tmp_path)
    assert found["method"] == "platt" and found["labels"] == LABELS
    np.testing.assert_allclose(found["a"], fitted["a"])
    np.testing.assert_allclose(found["b"], fitted["b"])


def test_calibration_of_is_none_when_04_calibrated_nothing(tmp_path):
    (_bundle(tmp_path) / artifacts.THRESHOLDS).write_text("{}")  # a bundle, no calibration.json
    assert evaluate.calibration_of(tmp_path) is None


def test_calibration_of_a_run_without_04s_bundle_is_an_error_not_none(tmp_path):
    with pytest.raises(DataError, match="04's bundle not found") as caught:
        evaluate.calibration_of(tmp_path)
    assert str(artifacts.path(tmp_path, evaluate.STAGE, artifacts.BUNDLE_DIR)) in str(caught.value)
    assert "04_evaluate has not finished" in str(caught.value)


@pytest.mark.parametrize("text, why", [
    ('{"method": "platt", "labels": ["a", "b"], "a": [1.0', "not valid JSON"),
    ('{"method": "platt", "labels": ["a", "b"], "a": [-1.0, 1.0], "b": [0.0, 0.0]}',
     '"a" must be positive'),
    ('{"method": "isotonic", "labels": ["a"], "a": [1.0], "b": [0.0]}', "not a calibration file"),
])
def test_a_broken_calibration_names_its_file_and_what_to_do(tmp_path, text, why):
    path = _bundle(tmp_path) / CALIBRATION_FILE
    path.write_text(text)
    with pytest.raises(DataError, match=why) as caught:
        evaluate.calibration_of(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"file {path}: ")
    assert "run 04 again (python -m mlclf_utils run --resume RUN --from 04 --to 04)" in message


def _finished_04(run_dir) -> None:
    """The 04 files 05 reads before anything else: its mistakes and its thresholds."""
    out = artifacts.path(run_dir, evaluate.STAGE)
    out.mkdir(parents=True)
    table = misclassifications.misclassification_table(
        ["x", "y"], ["s:1", "s:2"], np.array([[1, 0], [0, 1]]),
        np.array([[0.9, 0.6], [0.2, 0.4]]), LABELS, 0.5)
    misclassifications.save_misclassifications(table, out)
    tuned = thresholds.tune_thresholds(np.array([[1, 0], [0, 1], [1, 1]]),
                                       np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6]]), LABELS,
                                       min_support=1)
    thresholds.save_thresholds(tuned, out / artifacts.THRESHOLDS)


def test_05_refuses_a_broken_calibration_of_04_before_making_its_folder(tmp_path):
    # 05 used to look only for the file's name: a torn calibration.json read as "calibrated",
    # and the run went on to make 05's folder before anything else failed.
    _finished_04(tmp_path)
    (_bundle(tmp_path) / CALIBRATION_FILE).write_text('{"method": "platt", "labels": ')
    with pytest.raises(DataError, match=CALIBRATION_FILE):
        explain.load_inputs(tmp_path)
    assert not artifacts.path(tmp_path, explain.STAGE).exists()


def test_05_refuses_a_run_whose_04_left_no_bundle_before_making_its_folder(tmp_path):
    _finished_04(tmp_path)
    with pytest.raises(DataError, match="04's bundle not found"):
        explain.load_inputs(tmp_path)
    assert not artifacts.path(tmp_path, explain.STAGE).exists()
