"""Hosting a bundle on SageMaker with the Hugging Face inference container.

The container's inference toolkit imports ``code/inference.py`` from the model directory and
uses its ``model_fn``, ``input_fn``, ``predict_fn`` and ``output_fn`` instead of its default
``pipeline``. Ours run the same ``Classifier`` as the CLI and notebooks, so an endpoint cleans,
truncates and thresholds exactly like local predictions.

``export_sagemaker_model`` lays the directory out: the bundle files at the root, and in
``code/`` a copy of the few mlclf_utils modules inference needs (``INFERENCE_MODULES``: this
one, ``predict``, ``bundle_reader``, ``calibration_maps``, ``cleaning``, ``windows`` and
``window_aggregation`` (long texts as token windows), ``artifacts``,
``errors``, and ``modeling.pooling``, so that a mean-pooling bundle loads there) plus ``requirements.txt``. Copying the real modules,
rather than writing a self-contained script, means there is one implementation to test; the
container does not have mlclf_utils installed, and ``inference.py`` puts ``code/`` on
``sys.path`` itself. Pack it with ``tar -czf model.tar.gz -C <out_dir> .`` and upload.

Requests: ``application/json`` with ``{"inputs": "text" | ["text", ...]}`` (the toolkit's
convention; optional ``"parameters": {"batch_size": N}``), or ``text/csv`` with one text per
line. Responses: ``application/json``, a list of ``{"labels": [...], "probabilities": {...}}``
in request order. Set the endpoint environment variable ``MLCLF_QUANTIZE=1`` for int8
dynamic quantization on CPU instances.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mlclf_utils.artifacts import write_json
from mlclf_utils.serving.bundle_reader import MANIFEST_FILE, ONNX_FILES, read_bundle
from mlclf_utils.errors import DataError, ParameterError

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
CODE_DIR = "code"
# The modules inference needs (paths inside the package), copied into code/mlclf_utils/ by
# export_sagemaker_model with their subpackages. Their imports of mlclf_utils must stay inside
# this list (tests/code/serving/test_hosting.py checks it), or the endpoint fails on its first
# request.
INFERENCE_MODULES = ("errors.py", "artifacts.py", "data/cleaning.py", "data/windows.py",
                     "evaluation/calibration_maps.py", "evaluation/window_aggregation.py",
                     "modeling/pooling.py",
                     "serving/bundle_reader.py", "serving/predict.py", "serving/hosting.py")
PREDICT_PARAMETERS = ("batch_size",)
# cleaning.py imports pandas; torch, transformers and numpy come with the container.
REQUIREMENTS = "pandas>=2.0\n"
INFERENCE_PY = '''"""SageMaker entry point, written by export_sagemaker_model (mlclf_utils).

The mlclf_utils folder next to this file is the subset of the package that inference needs;
the container has no mlclf_utils installed, so this directory goes on sys.path first.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from mlclf_utils.serving.hosting import input_fn, model_fn, output_fn, predict_fn  # noqa: E402

__all__ = ["model_fn", "input_fn", "predict_fn", "output_fn"]
'''
PACKAGE_INIT = '"""The inference subset of mlclf_utils, copied for SageMaker hosting."""\n'


def _media_type(value: str | None) -> str:
    """``"application/json; charset=utf-8"`` -> ``"application/json"``."""
    return (value or "").split(";")[0].strip().lower()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def model_fn(model_dir, context=None):
    """Load the bundle at the root of the model directory (checked file by file)."""
    from mlclf_utils.serving.predict import Classifier

    return Classifier.load(model_dir, quantize=_flag("MLCLF_QUANTIZE"))


def input_fn(input_data, content_type, context=None) -> dict:
    """Request body -> ``{"inputs": [texts], "parameters": {...}}``."""
    if isinstance(input_data, bytes | bytearray):
        try:
            input_data = bytes(input_data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"the request body is not UTF-8 ({exc.reason} at byte {exc.start})"
                            ) from None
    if not isinstance(input_data, str):
        raise DataError(f"expected the request body as text, got {type(input_data).__name__}")
    media = _media_type(content_type)
    if media == JSON_TYPE:
        try:
            payload = json.loads(input_data)
        except json.JSONDecodeError as exc:
            raise DataError(f"the request body is not valid JSON ({exc.msg})") from None
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise DataError('expected a JSON object {"inputs": "text" or ["text", ...]}')
        inputs = payload["inputs"]
        parameters = payload.get("parameters") or {}
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list):
            raise DataError(f'"inputs" must be a string or a list of strings, got '
                            f"{type(inputs).__name__}")
        if not isinstance(parameters, dict):
            raise DataError('"parameters" must be a JSON object')
        return {"inputs": inputs, "parameters": parameters}
    if media == CSV_TYPE:
        return {"inputs": input_data.lstrip("\ufeff").splitlines(), "parameters": {}}
    raise ParameterError("content_type", content_type, f"send {JSON_TYPE} or {CSV_TYPE}")


def predict_fn(data, model, context=None) -> list[dict]:
    """Classify; accepts input_fn's dict or a plain list of texts."""
    if isinstance(data, dict):
        inputs, parameters = data.get("inputs"), data.get("parameters") or {}
    else:
        inputs, parameters = data, {}
    unknown = sorted(set(parameters) - set(PREDICT_PARAMETERS))
    if unknown:
        raise ParameterError("parameters", unknown, f"supported: {list(PREDICT_PARAMETERS)}")
    return model.predict(inputs, **parameters)


def output_fn(prediction, accept, context=None) -> str:
    """Predictions -> JSON text (the only response type)."""
    if _media_type(accept) not in (JSON_TYPE, "*/*", ""):
        raise ParameterError("accept", accept, f"only {JSON_TYPE} is supported")
    return json.dumps(prediction, ensure_ascii=False)


def export_sagemaker_model(bundle_dir, out_dir) -> Path:
    """A SageMaker model directory: bundle files at the root (the ONNX files left out: the
    endpoint runs torch), handlers in ``code/``.

    Refuses an existing non-empty ``out_dir``. The bundle is checked first, so a broken bundle
    never reaches an endpoint.
    """
    from mlclf_utils.serving.bundle import staged_dir  # the writing side stays out of the container

    info = read_bundle(bundle_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ParameterError("out_dir", str(out_dir), "already exists and is not empty; choose a "
                             "new folder or delete this one")
    # The container runs torch, so the ONNX files (about 140 MB with int8) stay behind, and the
    # copy's bundle.json lists only what the copy holds.
    manifest = {**info.manifest, "onnx": None,
                "files": [e for e in info.manifest["files"] if e["name"] not in ONNX_FILES]}
    with staged_dir(out_dir) as tmp:
        (tmp / CODE_DIR / "mlclf_utils").mkdir(parents=True)
        for entry in manifest["files"]:
            shutil.copyfile(info.path / entry["name"], tmp / entry["name"])
        write_json(tmp / MANIFEST_FILE, manifest)
        package = Path(__file__).resolve().parents[1]
        copied = tmp / CODE_DIR / "mlclf_utils"
        for name in INFERENCE_MODULES:
            (copied / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(package / name, copied / name)
        for folder in {(copied / name).parent for name in INFERENCE_MODULES}:
            (folder / "__init__.py").write_text(PACKAGE_INIT)
        (tmp / CODE_DIR / "inference.py").write_text(INFERENCE_PY)
        (tmp / CODE_DIR / "requirements.txt").write_text(REQUIREMENTS)
    read_bundle(out_dir)
    return out_dir
