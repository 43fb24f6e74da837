"""The ONNX backend's edges that need no model: files that are not ONNX, the 04 switch, and the
command line's file helpers, which moved to predict_io and still answer from predict."""

import pytest

from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.serving import onnx_backend, predict, predict_io
from mlclf_utils.stages import evaluate


def test_a_missing_onnx_file_says_how_to_add_it(tmp_path):
    with pytest.raises(DataError) as caught:
        onnx_backend.OnnxModel(tmp_path / "model.onnx")
    message = str(caught.value)
    assert "model.onnx" in message and "export-onnx" in message and "export_onnx" in message


def test_a_file_that_is_not_onnx_is_named(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(DataError, match="cannot load") as caught:
        onnx_backend.OnnxModel(path)
    assert str(path) in str(caught.value)


def test_onnx_threads_must_be_positive(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"x")
    with pytest.raises(ParameterError, match="threads"):
        onnx_backend.OnnxModel(path, threads=0)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_04s_export_onnx_switch_is_a_bool(value):
    with pytest.raises(ParameterError, match="export_onnx"):
        evaluate.check({"export_onnx": value})
    assert evaluate.Config().export_onnx is True


def test_the_file_helpers_still_answer_from_predict():
    for name in predict.IO_NAMES:
        assert getattr(predict, name) is getattr(predict_io, name)
    from mlclf_utils.serving.predict import read_texts, write_predictions  # noqa: F401

    with pytest.raises(AttributeError, match="no_such_name"):
        predict.no_such_name  # noqa: B018
