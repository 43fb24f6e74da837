"""The training entry point's hyperparameters: the parser, their checks, and their round trip.

SageMaker hands every hyperparameter to the script as a ``--key value`` string, and the
notebook, the runner's preflight, the sweep and the retrains of 04 and 05 hand them over as a
dict. Both meet here, so a value is refused by the same words however it arrives, and always
before a model or a dataset is loaded. The parser's defaults are the one place the training
defaults live (``DEFAULTS``); stage 03's config reads them from there.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
from pathlib import Path

from mlclf_utils import artifacts
from mlclf_utils.errors import ParameterError
from mlclf_utils.modeling.class_weights import STRATEGIES
from mlclf_utils.modeling.encoders import DEFAULT_MAX_LENGTH, DEFAULT_MODEL

PADDING_CHOICES = ("dynamic", "max_length")
POOLING_CHOICES = ("cls", "mean")
HEAD_INIT_CHOICES = ("random", "probe")
# transformers' schedules that need no argument beyond the warmup (see SchedulerType).
LR_SCHEDULER_CHOICES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                        "constant_with_warmup", "inverse_sqrt")
# torch.optim.AdamW's three implementations; "fused" (one kernel for every parameter) is the
# fastest on CPUs too since torch 2.4 (benchmarks/train_throughput.py measures them).
ADAMW_CHOICES = ("fused", "foreach", "for_loop")
MODES = ("local", "sagemaker")
# When 01's preprocess_config.json does not say (a channel made by hand), 03 uses these.
FALLBACKS = {"model_name": DEFAULT_MODEL, "max_length": DEFAULT_MAX_LENGTH}
# Options whose None is a value of its own (no separate head rate, no floor, no cap, the
# encoder's own attention dropout), not "use the default".
NONE_MEANS_SOMETHING = ("head_learning_rate", "pos_weight_floor", "pos_weight_cap",
                        "attention_dropout")
# The hyperparameters 03_train's parameters cell hands to the trainer (the rest have defaults).
NOTEBOOK_HYPERPARAMETERS = ("epochs", "learning_rate", "head_learning_rate",
                            "batch_size", "pos_weight_strategy", "pos_weight_floor",
                            "pos_weight_cap", "seed", "early_stopping_patience", "eval_steps",
                            "max_steps", "bf16", "freeze_layers", "attention_dropout")
# What makes a model what it is, as opposed to where it was written (paths, progress bars).
RECIPE_KEYS = ("model_name", "epochs", "learning_rate", "head_learning_rate", "batch_size",
               "eval_batch_size", "max_length", "padding", "group_by_length",
               "pos_weight_strategy", "pos_weight_floor", "pos_weight_cap", "pooling",
               "head_init", "freeze_embeddings", "freeze_layers", "layer_lr_decay",
               "attention_dropout", "lr_scheduler_type", "adamw", "torch_compile", "weight_decay",
               "warmup_ratio", "gradient_accumulation_steps", "early_stopping_patience",
               "eval_steps", "max_steps", "seed", "bf16", "max_train_rows")


def parse_bool(text) -> bool:
    """SageMaker passes every hyperparameter as a string, so "False" must not be truthy."""
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "y"):
        return True
    if lowered in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_bool_or_auto(text):
    """bf16's third answer, "auto", leaves the choice to :func:`bf16_supported`."""
    return "auto" if str(text).strip().lower() == "auto" else parse_bool(text)


def parse_optional_float(text) -> float | None:
    """The words SageMaker and YAML use for None mean "no bound" for floor, cap and head rate."""
    if text is None or str(text).strip().lower() in ("", "none", "null"):
        return None
    return float(text)


# What argparse's "invalid <type> value" becomes, said in the words of the parameter's type.
TYPE_REASONS = {"float": "is not a number", "parse_optional_float": "is not a number",
                "int": "is not a whole number", "parse_bool": "is not a valid bool value",
                "parse_bool_or_auto": "is not a valid bool value"}


def bf16_supported() -> bool:
    """bf16 autocast pays off only with native bf16 units; elsewhere it is emulated and slow."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def torch_compile_unavailable() -> str | None:
    """Why torch.compile cannot run here, or None: on CPUs inductor compiles C++ at run time."""
    import torch

    if torch.cuda.is_available():
        return None
    compiler = os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None and shutil.which("clang++") is None:
        return (f"torch.compile on a CPU needs a C++ compiler and none was found ({compiler}, "
                "clang++); install one (apt-get install g++) or set torch_compile=False")
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mlclf_utils.modeling.train",
        allow_abbrev=False,  # "--epoch" must be an error, not a silent "--epochs"
        description="Fine-tune a transformer for multi-label classification with weighted BCE.",
    )
    add = p.add_argument
    add("--model_name", default=None,
        help="alias, local directory or Hub id; default: the one 01 tokenized for (its "
             "preprocess_config.json, which 02 puts in every channel), else the packaged "
             "all-MiniLM-L6-v2. Another model than 01's is an error naming both")
    add("--epochs", type=float, default=3)
    add("--learning_rate", "--lr", type=float, default=2e-4)
    add("--head_learning_rate", type=parse_optional_float, default=None,
        help="learning rate of the new classification head and the pooler; None (default) = "
             "learning_rate: the linear probe (head_init probe) has fitted the head already. "
             "With a random head use about 3e-3: at the encoder's rate it barely moves in three "
             "epochs, and all-MiniLM never trained its CLS pooler")
    add("--batch_size", type=int, default=32)
    add("--eval_batch_size", type=int, default=64)
    add("--max_length", type=int, default=None,
        help="longest sequence the collator will feed; default: 01's max_length (else "
             f"01's default, {DEFAULT_MAX_LENGTH}). A smaller value is a deliberate override "
             "that cuts 01's tokens further (benchmarks do); a larger one is an error naming "
             "both, since 01 already truncated")
    add("--padding", choices=PADDING_CHOICES, default="dynamic",
        help="dynamic: pad each batch to its longest text; max_length: the tutorial recipe")
    add("--group_by_length", type=parse_bool, default=True,
        help="batch texts of similar length together, so dynamic padding wastes little")
    add("--pos_weight_strategy", default="sqrt", help=f"one of {STRATEGIES}")
    add("--pos_weight_floor", type=parse_optional_float, default=0.5)
    add("--pos_weight_cap", type=parse_optional_float, default=None)
    add("--pooling", choices=POOLING_CHOICES, default="mean",
        help="mean (default): the mean of the token vectors (modeling.pooling), what sentence "
             "encoders such as all-MiniLM were trained to produce; cls: transformers' head on "
             "BERT's [CLS] pooler (with head_init random and head_learning_rate 3e-3)")
    add("--head_init", choices=HEAD_INIT_CHOICES, default="probe",
        help="probe (default): LP-FT, fit the head on frozen mean-pooled train features before "
             "fine-tuning everything at one rate (needs pooling mean); random: transformers' "
             "initialisation")
    add("--freeze_embeddings", type=parse_bool, default=False,
        help="keep the word-embedding matrix fixed (half of MiniLM's parameters)")
    add("--freeze_layers", type=int, default=0,
        help="also keep the whole embeddings module and the bottom N encoder layers fixed "
             "(N > 0 implies freeze_embeddings): backward stops above them; the head trains")
    add("--layer_lr_decay", type=float, default=1.0,
        help="layer-wise rate decay: each encoder block trains at this times the rate of the "
             "block above, the embeddings at this to the power of the block count; 1 = off")
    add("--attention_dropout", type=parse_optional_float, default=0.0,
        help="dropout on the attention probabilities; None = the encoder's own (0.1 for BERT "
             "and DistilBERT). 0 (default) trains 256-token batches about 1.75x as fast on "
             "CPUs, within seed noise of its macro-F1 (docs/benchmarks.md)")
    add("--lr_scheduler_type", choices=LR_SCHEDULER_CHOICES, default="linear",
        help="transformers' learning-rate schedule after the warmup")
    add("--adamw", choices=ADAMW_CHOICES, default="fused",
        help="torch's AdamW implementation: the same update, computed by one fused kernel, by "
             "foreach kernels over lists, or by a loop over parameters (torch's CPU default)")
    add("--torch_compile", type=parse_bool, default=False,
        help="torch.compile the model (inductor; needs a C++ compiler on CPUs); the first steps "
             "and every new batch shape pay for compilation")
    add("--weight_decay", type=float, default=0.01)
    add("--warmup_ratio", type=float, default=0.06)
    add("--gradient_accumulation_steps", type=int, default=1)
    add("--early_stopping_patience", type=int, default=2,
        help="evaluations without a macro-F1 gain before stopping; 0 turns early stopping off")
    add("--eval_steps", type=int, default=0,
        help="evaluate and checkpoint every N steps; 0 means once per epoch")
    add("--max_steps", type=int, default=-1, help="stop after N optimizer steps (tests, smoke runs)")
    add("--max_train_rows", type=int, default=0,
        help="train on a seeded random subset of this many rows; 0 = all (benchmarks, quick looks)")
    add("--seed", type=int, default=42)
    add("--bf16", type=parse_bool_or_auto, default="auto",
        help="bf16 autocast: auto = on where the hardware has bf16 (AVX512-BF16/AMX CPUs, "
             "Ampere+ GPUs); benchmarks/bf16_quality.py checks it costs no macro-F1")
    add("--threads", type=int, default=0, help="torch CPU threads per process; 0 = cores / processes")
    add("--logging_steps", type=int, default=10)
    add("--resume_from_checkpoint", default=None,
        help="a checkpoint folder, or 'latest' for the newest one in the checkpoint folder")
    add("--progress", type=parse_bool, default=True)
    # Paths. SageMaker sets the SM_* variables; locally they fall back to the run directory.
    add("--run_dir", default=None, help="local run directory (default: the latest run)")
    add("--train_dir", default=os.environ.get("SM_CHANNEL_TRAIN"))
    add("--validation_dir", default=os.environ.get("SM_CHANNEL_VALIDATION"))
    add("--model_dir", default=os.environ.get("SM_MODEL_DIR"))
    add("--output_data_dir", default=os.environ.get("SM_OUTPUT_DATA_DIR"))
    add("--checkpoint_dir", default=None,
        help="default: /opt/ml/checkpoints on SageMaker, else <run>/03_train/checkpoints")
    return p


def defaults() -> dict:
    """The parser's default of every hyperparameter the notebook sets (03's Config reads them)."""
    parser = build_parser()
    return {name: parser.get_default(name) for name in NOTEBOOK_HYPERPARAMETERS}


def validate(args: argparse.Namespace) -> argparse.Namespace:
    """Every check that can fail fast does so here, before a model or a dataset is loaded."""
    checks = [
        ("learning_rate", args.learning_rate > 0 and math.isfinite(args.learning_rate), "must be > 0"),
        ("epochs", args.epochs > 0, "must be > 0"),
        ("head_learning_rate", args.head_learning_rate is None or args.head_learning_rate > 0,
         "must be > 0 or None"),
        ("batch_size", args.batch_size > 0, "must be > 0"),
        ("eval_batch_size", args.eval_batch_size > 0, "must be > 0"),
        ("max_length", args.max_length is None or args.max_length >= 8, "must be >= 8"),
        ("weight_decay", args.weight_decay >= 0, "must be >= 0"),
        ("warmup_ratio", 0 <= args.warmup_ratio < 1, "must be in [0, 1)"),
        ("gradient_accumulation_steps", args.gradient_accumulation_steps >= 1, "must be >= 1"),
        ("early_stopping_patience", args.early_stopping_patience >= 0, "must be >= 0"),
        ("eval_steps", args.eval_steps >= 0, "must be >= 0"),
        ("logging_steps", args.logging_steps >= 1, "must be >= 1"),
        ("threads", args.threads >= 0, "must be >= 0"),
        ("max_train_rows", args.max_train_rows >= 0, "must be >= 0"),
        ("freeze_layers", args.freeze_layers >= 0, "must be >= 0"),
        ("layer_lr_decay", 0 < args.layer_lr_decay <= 1, "must be in (0, 1]"),
        ("attention_dropout", args.attention_dropout is None or 0 <= args.attention_dropout < 1,
         "must be in [0, 1) or None"),
        ("max_steps", args.max_steps == -1 or args.max_steps > 0, "must be -1 (no limit) or > 0"),
    ]
    for name, ok, message in checks:
        if not ok:
            raise ParameterError(name, getattr(args, name), message)
    if args.pos_weight_strategy not in STRATEGIES:
        raise ParameterError("pos_weight_strategy", args.pos_weight_strategy,
                             f"choose one of {STRATEGIES}")
    if args.pos_weight_floor is not None and args.pos_weight_floor <= 0:
        raise ParameterError("pos_weight_floor", args.pos_weight_floor, "must be > 0 or None")
    if args.pos_weight_cap is not None and args.pos_weight_cap < (args.pos_weight_floor or 0):
        raise ParameterError("pos_weight_cap", args.pos_weight_cap, "must be >= pos_weight_floor")
    if args.head_init == "probe" and args.pooling != "mean":
        raise ParameterError("head_init", args.head_init,
                             "the linear probe fits a head on mean-pooled features; set "
                             "pooling='mean', or head_init='random' for the CLS pooler")
    if args.torch_compile and torch_compile_unavailable():
        raise ParameterError("torch_compile", args.torch_compile, torch_compile_unavailable())
    if args.bf16 == "auto":
        args.bf16 = bf16_supported()
    if args.model_name is not None and args.max_length is not None:
        check_model_limit(args)
    return args


def check_model_limit(args: argparse.Namespace) -> None:
    """A cut longer than the encoder's position table would crash in the first forward pass;
    freezing every layer would leave only the head to train (re-checked on the loaded model)."""
    from mlclf_utils.modeling import encoders

    limit = encoders.max_positions(args.model_name)
    if args.max_length > limit:
        raise ParameterError("max_length", args.max_length,
                             f"{args.model_name} accepts at most {limit} tokens")
    if args.freeze_layers:
        layers = getattr(encoders.load_config(args.model_name), "num_hidden_layers", None)
        if isinstance(layers, int):
            encoders.check_freeze_layers(args.freeze_layers, layers, args.model_name)


def settle_shared(args: argparse.Namespace, train_dir) -> argparse.Namespace:
    """Fill ``model_name`` and ``max_length`` in from 01's choice, recorded in the train
    channel's ``preprocess_config.json``; a different explicit value is an error naming both,
    except a smaller ``max_length`` (documented above as a deliberate override).

    It reads the channel, not the run directory, because on SageMaker the channel is all the
    job has."""
    from mlclf_utils.stages.save_data import SHARED_SETTINGS

    config_path = Path(train_dir) / artifacts.PREPROCESS_CONFIG
    chosen = artifacts.read_json(config_path, what="preprocess config") if config_path.exists() else {}
    for name in SHARED_SETTINGS:
        given, in_01 = getattr(args, name), chosen.get(name)
        if given is None:
            setattr(args, name, in_01 if in_01 is not None else FALLBACKS[name])
        elif in_01 is None or given == in_01:
            continue
        elif name == "max_length" and given < in_01:
            continue  # a shorter cut than 01's: allowed, see --max_length
        else:
            raise ParameterError(
                name, given,
                f"01_preprocess chose {name}={in_01!r} ({config_path}), and 03 trains on what 01 "
                f"produced; leave {name} out (03 reads 01's), or run 01_preprocess again with "
                f"{name}={given!r}")
    check_model_limit(args)
    return args


def to_argv(hyperparameters: dict) -> list[str]:
    """``{"epochs": 3}`` -> ``["--epochs", "3"]``: the form SageMaker passes them in."""
    argv = []
    for key, value in hyperparameters.items():
        if value is not None:
            argv += [f"--{key}", str(value)]
        elif key in NONE_MEANS_SOMETHING:  # dropping it would bring back the script's default
            argv += [f"--{key}", "none"]
    return argv


class RefusedArguments(Exception):
    """argparse's complaint, raised instead of printing the usage and exiting the notebook."""


def parse_hyperparameters(hyperparameters: dict) -> argparse.Namespace:
    """Parse as the script would; a refused value is named with the value given, not argv."""
    parser = build_parser()
    parser.exit_on_error = False

    def refuse(message):
        raise RefusedArguments(message)

    parser.error = refuse
    known = sorted(a.dest for a in parser._actions if a.dest != "help")
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        raise ParameterError(*((unknown[0], hyperparameters[unknown[0]]) if len(unknown) == 1
                               else ("hyperparameters", unknown)),
                             f"the trainer takes no such hyperparameter; known: {known}")
    try:
        return parser.parse_args(to_argv(hyperparameters))
    except argparse.ArgumentError as exc:
        name = (exc.argument_name or "").split("/")[0].lstrip("-")
        if name in hyperparameters:
            reason = exc.message
            if reason.startswith("invalid ") and " value: " in reason:  # "invalid float value: 'x'"
                kind = reason[len("invalid "):reason.index(" value: ")]
                reason = TYPE_REASONS.get(kind, f"is not a valid {kind} value")
            raise ParameterError(name, hyperparameters[name], reason) from None
        raise ParameterError("hyperparameters", sorted(hyperparameters), exc.message) from None
    except RefusedArguments as exc:
        raise ParameterError("hyperparameters", sorted(hyperparameters), str(exc)) from None


def check_hyperparameters(hyperparameters: dict, *, mode: str = "local") -> argparse.Namespace:
    """Validate everything up front, so a typo fails in a second, not after an epoch."""
    if mode not in MODES:
        raise ParameterError("mode", mode, f"choose one of {MODES}")
    return validate(parse_hyperparameters(hyperparameters))


def recipe(hyperparameters: dict, **overrides) -> dict:
    """The training recipe of a saved model (its hyperparameters.json), without its paths,
    so that a baseline or a retrain differs from it only where ``overrides`` say."""
    values = {k: hyperparameters[k] for k in RECIPE_KEYS if k in hyperparameters}
    return {**values, "progress": False, **overrides}
