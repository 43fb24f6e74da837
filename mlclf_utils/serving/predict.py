"""Inference from a model bundle: clean, tokenize once, batch by length, one sigmoid per label.

Every label is its own yes/no question, so each output goes through a sigmoid and the
probabilities of one text do not sum to one; a softmax would make the labels compete.
Texts are cleaned with the bundle's cleaning config and cut to its ``max_length`` exactly as
01 did in training, because the model never saw anything else.

Speed on CPU comes from three things: texts are sorted by token length so each batch is
padded only to its own longest text, ``torch.inference_mode()`` skips autograd bookkeeping,
and optionally the ``nn.Linear`` layers are quantized to int8 (``quantize=True``).

Only ``bundle_reader``, ``calibration_maps``, ``cleaning``, ``artifacts``, ``errors`` and
``modeling.pooling`` (which registers the mean-pooling classifier) are imported from the package (``hosting.INFERENCE_MODULES``): the SageMaker export copies these
modules into the container, where mlclf_utils is not installed.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mlclf_utils.serving.bundle_reader import CONFIG_FILE, read_bundle
from mlclf_utils.data.cleaning import CleaningConfig, clean_text
from mlclf_utils.errors import DataError, ParameterError, SetupError, check_positive_int

DEFAULT_THRESHOLD = 0.5
DEFAULT_BATCH_SIZE = 64
TEXT_FORMATS = (".txt", ".csv", ".tsv", ".jsonl", ".ndjson", ".parquet")
OUTPUT_FORMATS = ("csv", "jsonl")
PROB_PREFIX = "prob:"


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


def _load_model(path: Path, *, quantize: bool, threads: int | None):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if threads is not None:
        torch.set_num_threads(check_positive_int("threads", threads))
    # Registers the mean-pooling classifier's model_type before anything reads config.json
    # (the tokenizer does too, and would warn about an unknown type).
    from mlclf_utils.modeling import pooling  # noqa: F401

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if not tokenizer.is_fast:
        raise SetupError(f"{path} has no fast tokenizer (tokenizer.json); mlclf needs one")
    model = AutoModelForSequenceClassification.from_pretrained(str(path))
    model.eval()
    if quantize:
        model = _quantize(model)
    return model, tokenizer


class Classifier:
    """A multi-label classifier ready for texts: model, tokenizer, labels, thresholds, cleaning.

    ``load`` reads a bundle (the normal way); ``from_model_dir`` reads 03's model folder
    before thresholds are tuned.
    """

    def __init__(self, model, tokenizer, labels, thresholds, *, max_length: int,
                 cleaning: CleaningConfig | None = None, source: str | Path | None = None,
                 bf16: bool = False, calibration: dict | None = None):
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

    def __repr__(self) -> str:
        return (f"Classifier({len(self.labels)} labels, max_length={self.max_length}, "
                f"source={str(self.source) if self.source else None!r})")

    @classmethod
    def load(cls, bundle_dir, *, quantize: bool = False, bf16: bool = False,
             threads: int | None = None) -> "Classifier":
        """Check the bundle (a missing or corrupt file names itself), then load it for CPU.

        ``threads`` sets torch's thread count for the whole process. ``bf16`` runs the model
        under bf16 autocast; docs/benchmarks.md shows its speed and macro-F1 on the demo.
        """
        info = read_bundle(bundle_dir)
        model, tokenizer = _load_model(info.path, quantize=quantize, threads=threads)
        return cls(model, tokenizer, info.labels, info.thresholds, max_length=info.max_length,
                   cleaning=info.cleaning, source=info.path, bf16=bf16,
                   calibration=info.calibration)

    @classmethod
    def from_model_dir(cls, model_dir, *, thresholds=None, cleaning: CleaningConfig | None = None,
                       max_length: int | None = None, quantize: bool = False,
                       threads: int | None = None) -> "Classifier":
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
                   source=path)

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
        limit = self.max_length
        sep = self.tokenizer.sep_token_id
        truncated = 0
        for i, ids in enumerate(encoded):
            if len(ids) > limit:
                encoded[i] = ids[: limit - 1] + [sep if sep is not None else ids[-1]]
                truncated += 1
        if truncated:
            warnings.warn(f"{truncated} of {len(texts)} texts were longer than max_length="
                          f"{limit} tokens and were truncated (as in training)", stacklevel=3)
        return encoded

    def _pad(self, sequences: list[list[int]]):
        """One batch padded to its own longest sequence (dynamic padding)."""
        import torch

        width = max(len(s) for s in sequences)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(sequences), width), 0 if pad_id is None else pad_id,
                               dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        for row, seq in enumerate(sequences):
            span = slice(width - len(seq), width) if left else slice(0, len(seq))
            input_ids[row, span] = torch.tensor(seq, dtype=torch.long)
            mask[row, span] = 1
        return input_ids, mask

    def predict_proba(self, texts, *, batch_size: int = DEFAULT_BATCH_SIZE,
                      progress: bool = False) -> np.ndarray:
        """(N, K) float32 probabilities, rows in input order, column k = labels[k]: the sigmoid
        outputs, through the bundle's per-label calibration when it has one."""
        import torch

        texts = check_texts(texts)
        check_positive_int("batch_size", batch_size)
        encoded = self._encode(texts)
        # Longest first: the biggest batch runs first, so memory trouble shows at once.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        probabilities = np.empty((len(encoded), len(self.labels)), dtype=np.float32)
        starts = range(0, len(order), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="predicting", unit="batch")
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                     enabled=self.bf16):
            for start in starts:
                rows = order[start : start + batch_size]
                input_ids, mask = self._pad([encoded[i] for i in rows])
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits
                probabilities[rows] = torch.sigmoid(logits.float()).numpy()
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


# --- files in and out, for the command line -------------------------------------------------


def read_texts(path, *, text_column: str = "text") -> tuple[list[str], int]:
    """Texts from a file, and how many blank lines of a .txt file were skipped.

    ``.txt``: one text per line (blank lines skipped and counted). ``.csv``, ``.tsv``,
    ``.jsonl``, ``.parquet``: the ``text_column``; a missing or empty cell names its row.
    """
    texts, _, skipped = read_text_rows(path, text_column=text_column)
    return texts, skipped


def read_text_rows(path, *, text_column: str = "text") -> tuple[list[str], list[int], int]:
    """``read_texts`` plus each text's row in the file, counted from 1: a .txt file's line
    (blank lines count), else its data row (the header does not count)."""
    from mlclf_utils.data.sources import read_file  # not copied to SageMaker; only the CLI reads files

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEXT_FORMATS:
        raise DataError(f"unknown file type {suffix!r}; expected one of {list(TEXT_FORMATS)}",
                        file=str(path))
    if suffix == ".txt":
        if not path.is_file():
            raise DataError("file not found", file=str(path))
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            raise DataError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                            file=str(path)) from None
        rows = [i + 1 for i, line in enumerate(lines) if line.strip()]
        if not rows:
            raise DataError("the file holds no text", file=str(path))
        return [lines[r - 1] for r in rows], rows, len(lines) - len(rows)
    frame, where = read_file(str(path), encoding="utf-8")
    if text_column not in frame.columns:
        raise DataError(f"no column {text_column!r}; columns are {list(frame.columns)}",
                        file=where, column=text_column, hint="pass --text-column NAME")
    values = frame[text_column].tolist()
    bad = [i + 1 for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise DataError("empty or missing text", file=where, column=text_column, rows=bad)
    if not values:
        raise DataError("the file has no rows", file=where)
    return values, list(range(1, len(values) + 1)), 0


def in_file(error: DataError, file, rows: list[int], column: str | None = None) -> DataError:
    """A Classifier error about rows of its text list, said of the file the texts came from
    (``rows`` from ``read_text_rows``); any other error is returned as it is."""
    if not error.rows or error.file is not None or not error.message.endswith(ROWS_NOTE):
        return error
    return DataError(error.message.removesuffix(ROWS_NOTE), file=str(file), column=column,
                     rows=[rows[r - 1] for r in error.rows], hint=error.hint)


def check_output(output, *, overwrite: bool = False, inputs: Mapping | None = None) -> Path:
    """The --output path, checked before any work: its folder exists, it is no input file
    (``inputs``: option -> file or folder, never written even with ``overwrite``; a folder
    protects everything in it) and it replaces an existing file only with ``overwrite``."""
    path = Path(output)
    if path.is_dir():
        raise ParameterError("--output", str(output), "is a folder; give a file name in it, "
                             "e.g. predictions.csv")
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ParameterError("--output", str(output), f"the folder {folder} {what}; create it "
                             "first (predict never creates folders)")
    target = path.resolve()
    for option, other in (inputs or {}).items():
        if other is None:
            continue
        other = Path(other)
        if other.is_dir():
            if other.resolve() in target.parents:
                raise ParameterError("--output", str(output), f"is inside the {option} folder "
                                     f"({other}); writing there would change it")
        elif target == other.resolve() or (path.exists() and other.exists()
                                           and os.path.samefile(path, other)):
            raise ParameterError("--output", str(output), f"is the {option} file ({other}); "
                                 "predictions never replace their input, even with "
                                 "--overwrite: choose another name")
    if path.exists() and not overwrite:
        raise ParameterError("--output", str(output), "already exists; pass --overwrite to "
                             "replace it, or choose another name")
    return path


def prediction_rows(texts: list[str], predictions: list[dict], labels: list[str]) -> list[dict]:
    """Flat rows for CSV: text, labels joined by commas, one ``prob:<label>`` column each."""
    rows = []
    for text, record in zip(texts, predictions):
        row = {"text": text, "labels": ",".join(record["labels"])}
        row.update({PROB_PREFIX + label: record["probabilities"][label] for label in labels})
        rows.append(row)
    return rows


def write_predictions(texts: list[str], predictions: list[dict], labels: list[str], out,
                      fmt: str) -> None:
    """Write CSV or JSONL to an open text stream."""
    if fmt not in OUTPUT_FORMATS:
        raise ParameterError("format", fmt, f"choose one of {list(OUTPUT_FORMATS)}")
    if fmt == "jsonl":
        for text, record in zip(texts, predictions):
            out.write(json.dumps({"text": text, **record}, ensure_ascii=False) + "\n")
        return
    import pandas as pd

    columns = ["text", "labels"] + [PROB_PREFIX + label for label in labels]
    pd.DataFrame(prediction_rows(texts, predictions, labels), columns=columns).to_csv(
        out, index=False, lineterminator="\n")


def output_format(output: str | None, fmt: str | None) -> str:
    """--format wins; else the output file's suffix; else JSONL."""
    if fmt is not None:
        if fmt not in OUTPUT_FORMATS:
            raise ParameterError("format", fmt, f"choose one of {list(OUTPUT_FORMATS)}")
        return fmt
    if output and Path(output).suffix.lower() == ".csv":
        return "csv"
    return "jsonl"
