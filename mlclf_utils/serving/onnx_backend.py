"""The ONNX Runtime half of ``Classifier``: one CPU session that turns padded token ids into logits.

``Classifier`` does everything around it exactly as for torch (cleaning, the token cut, batches
sorted by length and padded to their own longest text, sigmoid, calibration, thresholds), so
the two backends differ only in the line that computes the logits. ``onnxruntime`` is
imported when a session is made, never at import time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlclf_utils.errors import DataError, check_positive_int

INPUTS = ("input_ids", "attention_mask")
EXPORT_HINT = ("add it with `python -m mlclf_utils export-onnx BUNDLE` (or "
               "mlclf_utils.serving.bundle.add_onnx); 04_evaluate writes it when export_onnx=True")


class OnnxModel:
    """An ``onnxruntime.InferenceSession`` on the CPU, with every graph optimisation on.

    ``threads`` is ONNX Runtime's intra-op thread count for this session only (default: one
    per core); unlike torch's setting it does not change the rest of the process.
    """

    backend = "onnx"

    def __init__(self, path, *, threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise DataError("file is missing from the bundle: backend='onnx' runs it",
                            file=str(path), hint=EXPORT_HINT)
        try:
            import onnxruntime
        except ImportError:
            raise DataError("backend='onnx' needs the onnxruntime package", file=str(path),
                            hint="pip install onnxruntime (requirements.txt pins it)") from None
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = check_positive_int("threads", threads)
        try:
            self.session = onnxruntime.InferenceSession(str(path), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise DataError(f"ONNX Runtime cannot load it ({type(exc).__name__}: "
                            f"{str(exc)[:200]})", file=str(path), hint=EXPORT_HINT) from None
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != sorted(INPUTS):
            raise DataError(f"the ONNX model's inputs are {names}; expected {list(INPUTS)}",
                            file=str(path), hint=EXPORT_HINT)
        self.path = path

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r})"

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(batch, K) float32 logits for int64 (batch, length) ids and mask."""
        feeds = {"input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
                 "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64)}
        return self.session.run(None, feeds)[0].astype(np.float32, copy=False)
