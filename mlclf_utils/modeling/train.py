"""Stage 03's training entry point: fine-tune an encoder with a class-weighted BCE-with-logits loss.

One script serves every way of running it:

* locally, in-process from the notebook (``run_training(...)``) or
  ``python -m mlclf_utils.modeling.train``;
* under ``torchrun --nproc_per_node=N`` (DDP: gloo on CPU, nccl on GPU), see ``run_torchrun``;
* as a SageMaker Hugging Face job (``python mlclf_utils/modeling/train.py --key value ...``),
  reading ``SM_CHANNEL_TRAIN`` / ``SM_CHANNEL_VALIDATION`` and writing ``SM_MODEL_DIR`` /
  ``SM_OUTPUT_DATA_DIR``.

This module wires the layers together and nothing else: the arguments are in
``hyperparameters``, the loop's parts in ``trainer``, the process group in ``distributed``.
It imports nothing heavy at the top, so the runner can check arguments without loading torch,
and nothing for plotting, which the SageMaker container does not install.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a plain script (SageMaker): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mlclf_utils import artifacts  # noqa: E402
from mlclf_utils.errors import MlclfError  # noqa: E402
from mlclf_utils.modeling import distributed  # noqa: E402
from mlclf_utils.modeling.hyperparameters import (build_parser, check_hyperparameters,  # noqa: E402
                                                  settle_shared, to_argv, validate)

# Set by ``python -m mlclf_utils run`` for each stage's kernel: training appends its progress
# to the file it names as JSON lines, and the runner shows them with tqdm (step, total, loss).
PROGRESS_FILE_ENV = "MLCLF_PROGRESS_FILE"


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

        run_dir = Path(args.run_dir) if args.run_dir else runs.latest_run_dir()
        data = artifacts.path(run_dir, artifacts.SAVE_DATA, artifacts.DATASET_DIR)
        stage = artifacts.path(run_dir, artifacts.TRAIN)
        args.train_dir = args.train_dir or str(data / "train")
        args.validation_dir = args.validation_dir or str(data / "validation")
        args.model_dir = args.model_dir or str(stage / artifacts.MODEL_DIR)
        args.output_data_dir = args.output_data_dir or str(stage / artifacts.METRICS_DIR)
    if args.checkpoint_dir:
        checkpoints = Path(args.checkpoint_dir)
    elif on_sagemaker and Path("/opt/ml").is_dir():
        checkpoints = Path("/opt/ml/checkpoints")  # synced to checkpoint_s3_uri by SageMaker
    elif stage is not None:
        checkpoints = stage / artifacts.CHECKPOINTS_DIR
    else:
        checkpoints = Path(args.output_data_dir) / artifacts.CHECKPOINTS_DIR
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


def load_training_data(args: argparse.Namespace, paths: Paths):
    """Train and validation splits cut to what the collator will feed, their label map, the
    positive weights (from the train split only: others would leak into training), and, when 01
    cut texts into windows, which text each validation row belongs to (else None)."""
    from mlclf_utils.data import windows
    from mlclf_utils.data.dataset import load_split
    from mlclf_utils.modeling import class_weights

    train_ds, label_map = load_split(paths.train)
    validation_ds, validation_map = load_split(paths.validation)
    if validation_map.labels != label_map.labels:
        raise MlclfError("train and validation folders have different label maps")
    if 0 < args.max_train_rows < len(train_ds):
        train_ds = train_ds.shuffle(seed=args.seed).select(range(args.max_train_rows))
    train_targets = windows.text_targets(train_ds)  # texts, not windows
    weights = class_weights.compute_pos_weight(
        train_targets, label_map.labels, strategy=args.pos_weight_strategy,
        floor=args.pos_weight_floor, cap=args.pos_weight_cap,
    )
    owners = validation_ds[windows.TEXT_INDEX] if windows.is_windowed(validation_ds) else None
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
    return train_ds, validation_ds, label_map, weights, owners


def training_arguments(args: argparse.Namespace, paths: Paths):
    """transformers' TrainingArguments for this run: evaluate, checkpoint and keep the best
    model by validation macro-F1, on the CPU or GPU and process group at hand."""
    import torch
    from transformers import TrainingArguments

    per_epoch = args.eval_steps == 0
    cuda = torch.cuda.is_available()
    ddp = distributed.world_size() > 1
    return TrainingArguments(
        output_dir=str(paths.checkpoints),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        lr_scheduler_type=args.lr_scheduler_type,
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
        torch_compile=args.torch_compile,
        use_cpu=not cuda,
        ddp_backend=("nccl" if cuda else "gloo") if ddp else None,
        ddp_find_unused_parameters=False if ddp else None,
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=not args.progress,
        label_names=["labels"],
    )


def probe_line(n_texts: int, loss: float, pos_weight) -> str:
    """What LP-FT's probe did. "weighted" only when some pos_weight is not 1: 04's plain recipe
    (strategy none) trains with plain BCE, and the line must not say otherwise."""
    bce = "BCE" if bool((pos_weight == 1).all()) else "weighted BCE"
    return (f"linear probe (LP-FT): the head fitted on the frozen encoder's mean-pooled vectors "
            f"of {n_texts:,} train texts, {bce} {loss:.3f}; now the encoder and head fine-tune "
            "together")


def train(args: argparse.Namespace) -> dict:
    """Load data, derive pos_weight from train, train, save the best model; returns metrics."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, set_seed

    from mlclf_utils.data import windows
    from mlclf_utils.evaluation import window_aggregation
    from mlclf_utils.modeling import class_weights, encoders, trainer

    paths = resolve_paths(args)
    distributed.set_threads(args.threads)
    settle_shared(args, paths.train)
    train_ds, validation_ds, label_map, weights, owners = load_training_data(args, paths)

    tokenizer = encoders.load_tokenizer(args.model_name)
    # Seed before the new classification head is initialised: the Trainer seeds only later,
    # and a head drawn from whatever state the global RNG was in makes runs unrepeatable.
    set_seed(args.seed)
    model = encoders.load_classifier(args.model_name, label_map.labels, pooling=args.pooling)
    collator = DataCollatorWithPadding(
        tokenizer,
        padding="max_length" if args.padding == "max_length" else "longest",
        max_length=args.max_length if args.padding == "max_length" else None,
    )
    if args.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    encoders.freeze_bottom(model, args.freeze_layers, args.model_name)  # 0: freezes nothing
    if args.attention_dropout is not None:
        encoders.set_attention_dropout(model, args.attention_dropout)
    if args.head_init == "probe":  # LP-FT: the linear probe first, then fine-tune everything
        from mlclf_utils.modeling import pooling

        pos_weight = class_weights.weights_tensor(weights)
        loss = pooling.probe_head(model, train_ds, collator, pos_weight, seed=args.seed,
                                  bf16=args.bf16)
        encoders.announce(probe_line(len(train_ds), loss, pos_weight))
    clock = trainer.training_clock()
    callbacks = [clock]
    if args.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    progress_file = trainer.progress_file_callback(f"{paths.model.parent.name}/{paths.model.name}",
                                                   os.environ.get(PROGRESS_FILE_ENV))
    if progress_file is not None:
        callbacks.append(progress_file)
    loop = trainer.make_trainer_class()(
        model=model,
        args=training_arguments(args, paths),
        train_dataset=train_ds,
        eval_dataset=validation_ds,
        processing_class=tokenizer,
        data_collator=collator,
        # With windows, the best checkpoint is chosen on texts, as 04 will score them.
        compute_metrics=(trainer.compute_metrics if owners is None else
                         window_aggregation.per_text_metrics(
                             trainer.compute_metrics, owners,
                             how=windows.read_settings(paths.train).window_aggregation)),
        callbacks=callbacks,
        pos_weight=class_weights.weights_tensor(weights),
        head_learning_rate=args.head_learning_rate,
        adamw=args.adamw,
        layer_lr_decay=args.layer_lr_decay,
    )
    if progress_file is not None:
        progress_file.trainer = loop
    trainer.readable_progress(loop)  # no raw log dicts, no "Epoch 0/1" at 0.3 epochs
    resume = args.resume_from_checkpoint
    if resume == "latest":
        resume = trainer.find_latest_checkpoint(paths.checkpoints)
        if resume is None:
            raise MlclfError(f"no checkpoint to resume from in {paths.checkpoints}")
    result = loop.train(resume_from_checkpoint=resume)
    final_eval = loop.evaluate()

    metrics = {
        "train_runtime_s": round(result.metrics.get("train_runtime", float("nan")), 2),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "global_step": result.global_step,
        "train_real_tokens_per_second": round(loop.real_tokens / result.metrics["train_runtime"], 1),
        # The training steps alone (train_runtime also holds evaluations and saves), in wall
        # seconds and in CPU seconds of this process, which stay comparable on a machine
        # shared with other work, where wall time also counts the waiting.
        "train_step_seconds": round(clock.wall, 2),
        "train_cpu_seconds": round(clock.cpu, 2),
        "train_real_tokens_per_step_second": round(loop.real_tokens / max(clock.wall, 1e-9), 1),
        "train_real_tokens_per_cpu_second": round(loop.real_tokens / max(clock.cpu, 1e-9), 1),
        "first_step_seconds": round(clock.first_step_wall or 0.0, 2),
        "train_real_tokens": loop.real_tokens,
        "padding_efficiency": round(loop.real_tokens / max(loop.padded_tokens, 1), 4),
        "best_checkpoint": loop.state.best_model_checkpoint,
        "best_validation_macro_f1": final_eval.get("eval_macro_f1"),
        "validation": final_eval,
        "world_size": distributed.world_size(),
    }
    if distributed.is_main_process():
        save_outputs(loop, paths, args, label_map, weights, metrics)
    return metrics


def save_outputs(loop, paths: Paths, args, label_map, weights, metrics: dict) -> None:
    """The model folder (what 04, 05 and the bundle load) and the metrics folder (curves)."""
    from mlclf_utils.modeling import class_weights

    paths.model.mkdir(parents=True, exist_ok=True)
    paths.metrics.mkdir(parents=True, exist_ok=True)
    loop.save_model(str(paths.model))  # safetensors weights, config and tokenizer
    # Trainer also pickles its TrainingArguments next to the weights; the model folder
    # stays pickle-free (hyperparameters.json carries the same facts as JSON).
    (paths.model / "training_args.bin").unlink(missing_ok=True)
    label_map.to_json(paths.model / artifacts.LABEL_MAP)
    class_weights.save_pos_weight(weights, paths.model / artifacts.POS_WEIGHT)
    artifacts.write_json(paths.model / artifacts.HYPERPARAMETERS, dict(vars(args)))
    artifacts.write_json(paths.metrics / artifacts.TRAINING_METRICS, metrics)
    artifacts.write_json(paths.metrics / artifacts.LOG_HISTORY, loop.state.log_history)
    weights.to_csv(paths.metrics / artifacts.POS_WEIGHT_TABLE)


def run_training(**hyperparameters) -> dict:
    """For notebooks and scripts: parse like the CLI does, but raise instead of exiting."""
    return train(check_hyperparameters(hyperparameters))


def run_torchrun(nproc_per_node: int, **hyperparameters) -> dict:
    """The same script under ``torchrun``: one process per CPU core group or GPU; returns the
    metrics rank 0 saved."""
    args = check_hyperparameters(hyperparameters)
    distributed.launch_torchrun(nproc_per_node, to_argv(hyperparameters))
    metrics_dir = Path(args.output_data_dir) if args.output_data_dir else artifacts.path(
        args.run_dir, artifacts.TRAIN, artifacts.METRICS_DIR)
    return artifacts.read_json(metrics_dir / artifacts.TRAINING_METRICS, what="training metrics")


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
    if distributed.is_main_process():
        print(json.dumps({k: v for k, v in metrics.items() if k != "validation"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
