"""Inference from a model bundle: clean, tokenize once, batch by length, one sigmoid per label.

Every label is its own yes/no question, so each output goes through a sigmoid and the
probabilities of one text do not sum to one; a softmax would make the labels compete.
Texts are cleaned with the bundle's cleaning config and cut to its ``max_length`` exactly as
01 did in training, because the model never saw anything else.

Speed on CPU comes from texts sorted by token length, so each batch is padded only to its
own longest text, and from the backend: torch under ``inference_mode`` (optionally bf16
autocast, or int8 ``nn.Linear`` layers with ``quantize=True``), or ONNX Runtime on the
bundle's ``model.onnx`` (``backend="onnx"``; with ``quantize=True`` its ``model.int8.onnx``).
Both backends get the same token ids, and their logits go through the same sigmoid,
calibration and thresholds. Reading and writing files for the command line is ``predict_io``.

Only ``bundle_reader``, ``calibration_maps``, ``cleaning``, ``artifacts``, ``errors`` and
``modeling.pooling`` (which registers the mean-pooling classifier) are imported from the package (``hosting.INFERENCE_MODULES``): the SageMaker export copies these
modules into the container, where mlclf_utils is not installed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mlclf_utils.serving.bundle_reader import (CONFIG_FILE, ONNX_FILE, ONNX_INT8_FILE, BundleInfo,
                                               read_bundle)
from mlclf_utils.data.cleaning import CleaningConfig, clean_text
from mlclf_utils.evaluation.calibration_maps import sigmoid
from mlclf_utils.errors import (DataError, ParameterError, SetupError, TruncationWarning,
                                 check_positive_int)

DEFAULT_THRESHOLD = 0.5
DEFAULT_BATCH_SIZE = 64
BACKENDS = ("torch", "onnx")
# Moved to predict_io with the command line's file handling; still importable from here.
IO_NAMES = ("TEXT_FORMATS", "OUTPUT_FORMATS", "PROB_PREFIX", "read_texts", "read_text_rows",
            "in_file", "check_output", "prediction_rows", "write_predictions", "output_format")


def __getattr__(name: str):
    if name in IO_NAMES:
        from mlclf_utils.serving import predict_io

        return getattr(predict_io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Bad texts are named by row, counted from 1 like the data rows of a file (header not counted),
# and the message says so; the CLI re-says them as rows of the --input file (``in_file``).
ROWS_NOTE = "; row 1 is the first text"


def _bad_rows(indices: list[int], message: str, hint: str) -> DataError:
    return DataError(message + ROWS_NOTE, rows=[i + 1 for i in indices], hint=hint)


def check_texts(texts) -> list[str]:
    """A list of non-empty strings, or an error naming the bad rows (1-based)."""
    if isinstance(texts, str | bytes):
        raise ParameterError("texts", texts[:60], "pass a list of texts; a single string would "
                             "be read one character at a time")
    try:
        texts = list(texts)
    except TypeError:
        raise ParameterError("texts", type(texts).__name__, "must be a list of strings") from None
    if not texts:
        raise ParameterError("texts", texts, "need at least one text")
    not_str = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if not_str:
        kinds = sorted({type(texts[i]).__name__ for i in not_str})
        raise _bad_rows(not_str, f"not a string (got {', '.join(kinds)})",
                        hint="convert or drop them; missing values (None, NaN) are not texts")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise _bad_rows(empty, "empty or only whitespace",
                        hint="drop them: there is nothing to classify")
    return texts


def _quantize(model):
    """int8 weights for every nn.Linear, activations quantized on the fly: CPU only.

    ``torch.ao.quantization`` announces its deprecation (torchao is its successor) but still
    works on torch 2.13; the notices are silenced here because callers cannot act on them.
    """
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*torch\.quantize_per_tensor")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model.float(), {torch.nn.Linear}, dtype=torch.qint8)


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    # Registers the mean-pooling classifier's model_type before anything reads config.json
    # (the tokenizer does too, and would warn about an unknown type).
    from mlclf_utils.modeling import pooling  # noqa: F401

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if not tokenizer.is_fast:
        raise SetupError(f"{path} has no fast tokenizer (tokenizer.json); mlclf needs one")
    return tokenizer


def _load_model(path: Path, *, quantize: bool, threads: int | None):
    import torch
    from transformers import AutoModelForSequenceClassification

    if threads is not None:
        torch.set_num_threads(check_positive_int("threads", threads))
    tokenizer = _load_tokenizer(path)
    model = AutoModelForSequenceClassification.from_pretrained(str(path))
    model.eval()
    if quantize:
        model = _quantize(model)
    return model, tokenizer


class Classifier:
    """A multi-label classifier ready for texts: model, tokenizer, labels, thresholds, cleaning.

    ``load`` reads a bundle (the normal way); ``from_model_dir`` reads 03's model folder
    before thresholds are tuned. ``model`` is a transformers model (torch) or an
    ``onnx_backend.OnnxModel`` (``backend`` says which).
    """

    def __init__(self, model, tokenizer, labels, thresholds, *, max_length: int,
                 cleaning: CleaningConfig | None = None, source: str | Path | None = None,
                 bf16: bool = False, calibration: dict | None = None, windows=None):
        self.bf16 = bool(bf16)  # bf16 autocast: pays off on CPUs with AVX512-BF16/AMX
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        if self.thresholds.shape != (len(self.labels),):
            raise ParameterError("thresholds", f"shape {self.thresholds.shape}",
                                 f"need one threshold for each of the {len(self.labels)} labels")
        self.max_length = check_positive_int("max_length", max_length)
        self.cleaning = cleaning
        self.source = Path(source) if source is not None else None
        if calibration is not None:
            from mlclf_utils.evaluation.calibration_maps import check_calibration_labels

            check_calibration_labels(calibration, self.labels)
        self.calibration = calibration
        self.windows = windows  # None: truncate; else data.windows.WindowSettings (chunks)

    def __repr__(self) -> str:
        return (f"Classifier({len(self.labels)} labels, max_length={self.max_length}, "
                f"backend={self.backend!r}, "
                f"source={str(self.source) if self.source else None!r})")

    @property
    def backend(self) -> str:
        return getattr(self.model, "backend", "torch")

    @classmethod
    def load(cls, bundle_dir, *, quantize: bool = False, bf16: bool = False,
             threads: int | None = None, backend: str = "torch") -> "Classifier":
        """Check the bundle (a missing or corrupt file names itself), then load it for CPU.

        ``backend="torch"``: ``threads`` sets torch's thread count for the whole process,
        ``bf16`` runs the model under bf16 autocast, ``quantize`` makes its linear layers int8.
        ``backend="onnx"``: ONNX Runtime on the bundle's ``model.onnx`` (``model.int8.onnx``
        with ``quantize``), ``threads`` for its session only. docs/benchmarks.md shows each
        one's speed and macro-F1 on the demo.
        """
        return cls.from_bundle_info(read_bundle(bundle_dir), quantize=quantize, bf16=bf16,
                                    threads=threads, backend=backend)

    @classmethod
    def from_bundle_info(cls, info: BundleInfo, *, quantize: bool = False, bf16: bool = False,
                         threads: int | None = None, backend: str = "torch") -> "Classifier":
        """``load`` once the bundle is read; also how a bundle's ONNX files are judged while
        they are written (``onnx_export.judge_int8``)."""
        if backend not in BACKENDS:
            raise ParameterError("backend", backend, f"choose one of {list(BACKENDS)}")
        if backend == "onnx":
            if bf16:
                raise ParameterError("bf16", bf16, "is a torch option; the onnx backend runs "
                                     "fp32, or int8 with quantize=True")
            from mlclf_utils.serving.onnx_backend import OnnxModel

            model = OnnxModel(info.path / (ONNX_INT8_FILE if quantize else ONNX_FILE),
                              threads=threads)
            tokenizer = _load_tokenizer(info.path)
        else:
            model, tokenizer = _load_model(info.path, quantize=quantize, threads=threads)
        from mlclf_utils.data.windows import for_classifier

        return cls(model, tokenizer, info.labels, info.thresholds, max_length=info.max_length,
                   cleaning=info.cleaning, source=info.path, bf16=bf16,
                   calibration=info.calibration, windows=for_classifier(info.manifest))

    @classmethod
    def from_model_dir(cls, model_dir, *, thresholds=None, cleaning: CleaningConfig | None = None,
                       max_length: int | None = None, quantize: bool = False,
                       threads: int | None = None, windows=None) -> "Classifier":
        """03's model folder, for evaluating before a bundle exists.

        Defaults suit texts from 02's dataset, which are cleaned already: no cleaning,
        thresholds 0.5, and ``max_length`` by ``encoders.trained_max_length`` (01's, as 03
        recorded it), the one rule 05's ``Explainer`` uses too. ``thresholds`` may be a dict label -> value or a sequence in label order.
        """
        path = Path(model_dir)
        if not (path / CONFIG_FILE).is_file():
            raise DataError(f"not a model folder: {CONFIG_FILE} is missing",
                            file=str(path / CONFIG_FILE),
                            hint="pass runs/<run-id>/03_train/model (what train.py saves)")
        model, tokenizer = _load_model(path, quantize=quantize, threads=threads)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if thresholds is None:
            values = [DEFAULT_THRESHOLD] * len(labels)
        elif isinstance(thresholds, Mapping):
            missing = [x for x in labels if x not in thresholds]
            if missing:
                raise ParameterError("thresholds", f"{len(thresholds)} labels",
                                     f"missing labels {missing[:10]}")
            values = [thresholds[x] for x in labels]
        else:
            values = list(thresholds)
        if max_length is None:
            from mlclf_utils.modeling.encoders import trained_max_length

            max_length = trained_max_length(path, model.config)
        return cls(model, tokenizer, labels, values, max_length=max_length, cleaning=cleaning,
                   source=path, windows=windows)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Clean, tokenize all texts in one call, and cut to max_length as 01 did."""
        if self.cleaning is not None:
            cleaned = [clean_text(t, self.cleaning) for t in texts]
            emptied = [i for i, t in enumerate(cleaned) if not t.strip()]
            if emptied:
                raise _bad_rows(emptied, "empty after cleaning (only URLs, e-mail addresses "
                                "or whitespace)",
                                hint="drop them: the model would see an empty text")
        else:
            cleaned = texts
        encoded = self.tokenizer(cleaned, add_special_tokens=True, truncation=False,
                                 verbose=False)["input_ids"]
        if self.windows is not None:  # every window of every text (data/windows.py)
            return self.windows.split(encoded, self.max_length, self.tokenizer)
        limit = self.max_length
        sep = self.tokenizer.sep_token_id
        truncated = 0
        for i, ids in enumerate(encoded):
            if len(ids) > limit:
                encoded[i] = ids[: limit - 1] + [sep if sep is not None else ids[-1]]
                truncated += 1
        if truncated:
            warnings.warn(TruncationWarning(
                f"{truncated} of {len(texts)} texts were longer than max_length={limit} tokens "
                "and were truncated (as in training)", cut=truncated, total=len(texts),
                max_length=limit), stacklevel=3)
        return encoded

    def _pad(self, sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """One batch padded to its own longest sequence (dynamic padding): int64 ids, mask."""
        width = max(len(s) for s in sequences)
        pad_id = self.tokenizer.pad_token_id
        input_ids = np.full((len(sequences), width), 0 if pad_id is None else pad_id,
                            dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        for row, seq in enumerate(sequences):
            span = slice(width - len(seq), width) if left else slice(0, len(seq))
            input_ids[row, span] = seq
            mask[row, span] = 1
        return input_ids, mask

    def logits(self, encoded: list[list[int]], *, batch_size: int = DEFAULT_BATCH_SIZE,
               progress: bool = False) -> np.ndarray:
        """(N, K) float32 logits of token id lists (texts or windows), rows in their order:
        batches sorted by length, each padded to its own longest row. The one place a model
        runs, torch or ONNX Runtime."""
        import contextlib

        check_positive_int("batch_size", batch_size)
        # Longest first: the biggest batch runs first, so memory trouble shows at once.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        out = np.empty((len(encoded), len(self.labels)), dtype=np.float32)
        starts = range(0, len(order), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="predicting", unit="batch")
        onnx = self.backend == "onnx"
        with contextlib.ExitStack() as stack:
            if not onnx:
                import torch

                stack.enter_context(torch.inference_mode())
                stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16,
                                                   enabled=self.bf16))
            for start in starts:
                rows = order[start : start + batch_size]
                input_ids, mask = self._pad([encoded[i] for i in rows])
                if onnx:
                    out[rows] = self.model.logits(input_ids, mask)
                else:
                    out[rows] = self.model(input_ids=torch.from_numpy(input_ids),
                                           attention_mask=torch.from_numpy(mask)
                                           ).logits.float().numpy()
        return out

    def predict_proba(self, texts, *, batch_size: int = DEFAULT_BATCH_SIZE,
                      progress: bool = False) -> np.ndarray:
        """(N, K) float32 probabilities, rows in input order, column k = labels[k]: the sigmoid
        outputs, through the bundle's per-label calibration when it has one."""
        texts = check_texts(texts)
        check_positive_int("batch_size", batch_size)
        encoded = self._encode(texts)
        logits = self.logits(encoded, batch_size=batch_size, progress=progress)
        probabilities = sigmoid(logits).astype(np.float32)
        if self.windows is not None:
            probabilities = self.windows.aggregate(probabilities, encoded)
        if self.calibration is not None:
            from mlclf_utils.evaluation.calibration_maps import apply_calibration

            probabilities = apply_calibration(self.calibration, probabilities).astype(np.float32)
        return probabilities

    def predict(self, texts, *, batch_size: int = DEFAULT_BATCH_SIZE,
                progress: bool = False) -> list[dict]:
        """Per text: the labels at or above their thresholds (most probable first) and all
        probabilities by label name."""
        probabilities = self.predict_proba(texts, batch_size=batch_size, progress=progress)
        return [self._record(row) for row in probabilities]

    def _record(self, row: np.ndarray) -> dict:
        fired = [k for k in np.argsort(-row, kind="stable") if row[k] >= self.thresholds[k]]
        return {"labels": [self.labels[k] for k in fired],
                "probabilities": {label: float(p) for label, p in zip(self.labels, row)}}
