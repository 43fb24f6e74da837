"""Stage 03: fine-tuning, locally, under torchrun or as a SageMaker job.

The notebook's parameters are ``Config``'s fields; the training hyperparameters among them
take their defaults from the entry point's parser (``modeling.hyperparameters``), so a
default is written once for the notebook, the runner, the CLI and SageMaker alike. 03's
files are named in ``mlclf_utils.artifacts`` and read back through the functions here.

``run()`` is what a batch run or a sweep combination needs: pos_weight, fine-tuning and the
training curves. The loss walkthrough of the notebook's sections 1-3 is narrative, made of the
notebook's own cells, and ``teaching=False`` skips it there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlclf_utils import artifacts
from mlclf_utils.errors import ParameterError, check_positive_int
from mlclf_utils.modeling import hyperparameters

STAGE = artifacts.TRAIN
TRAINING_DEFAULTS = hyperparameters.defaults()


@dataclass(frozen=True)
class Config:
    """03's parameters, as the notebook's parameters cell lists them (without ``run_dir``)."""

    mode: str = "local"
    epochs: int = TRAINING_DEFAULTS["epochs"]
    learning_rate: float = TRAINING_DEFAULTS["learning_rate"]
    head_learning_rate: float | None = TRAINING_DEFAULTS["head_learning_rate"]
    batch_size: int = TRAINING_DEFAULTS["batch_size"]
    pos_weight_strategy: str = TRAINING_DEFAULTS["pos_weight_strategy"]
    pos_weight_floor: float | None = TRAINING_DEFAULTS["pos_weight_floor"]
    pos_weight_cap: float | None = TRAINING_DEFAULTS["pos_weight_cap"]
    seed: int = TRAINING_DEFAULTS["seed"]
    early_stopping_patience: int = TRAINING_DEFAULTS["early_stopping_patience"]
    eval_steps: int = TRAINING_DEFAULTS["eval_steps"]
    max_steps: int = TRAINING_DEFAULTS["max_steps"]
    bf16: str | bool = TRAINING_DEFAULTS["bf16"]
    freeze_layers: int = TRAINING_DEFAULTS["freeze_layers"]
    attention_dropout: float | None = TRAINING_DEFAULTS["attention_dropout"]
    nproc_per_node: int = 1
    probe_label: str | None = None
    teaching: bool = True
    # SageMaker (mode = "sagemaker")
    role: str | None = None
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    transformers_version: str | None = None
    pytorch_version: str | None = None
    distribution: str | None = None
    default_bucket: str | None = None
    job_name: str | None = None
    wait: bool = True
    attach_job: str | None = None

    @classmethod
    def from_params(cls, params: Mapping) -> "Config":
        """The stage's values among ``params``: the runner's effective parameters, or a
        notebook's ``globals()``, where they sit among every other name (``run_dir`` too)."""
        from mlclf_utils.stages import config_values

        return cls(**config_values(cls, params))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hyperparameters(self) -> dict:
        """What the notebook hands the trainer; the trainer's other options keep its defaults."""
        return {name: getattr(self, name) for name in hyperparameters.NOTEBOOK_HYPERPARAMETERS}


def check(params: dict) -> None:
    """The hyperparameters as the training entry point would refuse them, and for SageMaker a
    role and bucket (outside Studio, where the SDK finds them over the network)."""
    for name in ("nproc_per_node", "instance_count"):
        if name in params:
            check_positive_int(name, params[name])
    if "teaching" in params and not isinstance(params["teaching"], bool):
        raise ParameterError("teaching", params["teaching"], "must be True or False")
    hyper = {k: params[k] for k in hyperparameters.NOTEBOOK_HYPERPARAMETERS if k in params}
    hyperparameters.check_hyperparameters(hyper, mode=params.get("mode", "local"))
    if params.get("mode") == "sagemaker":
        from mlclf_utils.cloud.sagemaker_training import in_studio, resolve_role_and_bucket

        if not in_studio():
            resolve_role_and_bucket(params.get("role"), params.get("default_bucket"),
                                    need_role=not params.get("attach_job"))


# --------------------------------------------------------------------------- 03's files


def model_dir(run_dir) -> Path:
    """What 04, 05 and the bundle load: weights, tokenizer, label map, pos_weight, recipe."""
    return artifacts.path(run_dir, STAGE, artifacts.MODEL_DIR)


def metrics_dir(run_dir) -> Path:
    return artifacts.path(run_dir, STAGE, artifacts.METRICS_DIR)


def figures_dir(run_dir) -> Path:
    return artifacts.path(run_dir, STAGE, artifacts.FIGURES_DIR)


def read_hyperparameters(run_dir) -> dict:
    """The recipe the model was trained with (``modeling.hyperparameters.recipe`` trims it)."""
    return artifacts.read_json(model_dir(run_dir) / artifacts.HYPERPARAMETERS,
                               what="the trained model's hyperparameters",
                               hint="03_train writes it with the model")


def read_training_metrics(run_dir) -> dict:
    return artifacts.read_json(metrics_dir(run_dir) / artifacts.TRAINING_METRICS,
                               what="03's training metrics",
                               hint="03_train writes it when training ends")


def read_log_history(run_dir) -> list[dict]:
    """The Trainer's log: one record per logging step and per evaluation."""
    return artifacts.read_json(metrics_dir(run_dir) / artifacts.LOG_HISTORY,
                               what="03's training log history",
                               hint="03_train writes it when training ends (a SageMaker job: "
                                    "in its output.tar.gz)")


# --------------------------------------------------------------------------- the steps


def load_splits(run_dir):
    """02's train and validation splits and their label map, one row per text (with 01's
    chunks, 02 has a row per window; the trainer reads those, the walkthrough texts)."""
    from mlclf_utils.data import dataset, windows

    folder = artifacts.path(run_dir, artifacts.SAVE_DATA, artifacts.DATASET_DIR)
    train_split, label_map = dataset.load_split(folder / "train")
    validation_split, _ = dataset.load_split(folder / "validation")
    return windows.text_rows(train_split), windows.text_rows(validation_split), label_map


def class_statistics(run_dir):
    """Positives per label in each split, most frequent first (02's class_stats.json)."""
    from mlclf_utils.data import dataset

    path = artifacts.path(run_dir, artifacts.SAVE_DATA, artifacts.DATASET_DIR, "train",
                          artifacts.CLASS_STATS)
    return dataset.class_statistics_table(artifacts.read_json(path, what="02's class statistics"))


def train_targets(train_split):
    """The train split's multi-hot label matrix (N, C), the only input the weights may see:
    one row per text, also when 01 read long texts as windows (pos_weight counts texts)."""
    from mlclf_utils.data import windows

    return windows.text_targets(train_split)


def pos_weights(train_split, label_map, config: Config, strategy: str | None = None):
    """The per-label weights the trainer will compute from the same split (``strategy``
    defaults to the config's; another one is for comparing)."""
    from mlclf_utils.modeling import class_weights

    return class_weights.compute_pos_weight(
        train_targets(train_split), label_map.labels,
        strategy=strategy or config.pos_weight_strategy,
        floor=config.pos_weight_floor, cap=config.pos_weight_cap)


def strategy_comparison(train_split, label_map, config: Config):
    """Every strategy's weights side by side, one column per strategy, same floor and cap."""
    import pandas as pd

    from mlclf_utils.modeling.class_weights import STRATEGIES

    return pd.DataFrame({s: pos_weights(train_split, label_map, config, s)["weight"]
                         for s in STRATEGIES})


def fine_tune(run_dir, config: Config) -> dict:
    """Train in this process, under torchrun (``nproc_per_node`` > 1) or as a SageMaker job
    (a new one, or ``attach_job``'s); the model lands in 03's model folder either way."""
    from mlclf_utils.modeling import train

    run_dir = Path(run_dir)
    hyper = config.hyperparameters()
    if config.mode == "local" and config.nproc_per_node == 1:
        return train.run_training(run_dir=str(run_dir), **hyper)
    if config.mode == "local":
        return train.run_torchrun(config.nproc_per_node, run_dir=str(run_dir), **hyper)
    from mlclf_utils.cloud import sagemaker_training

    if config.attach_job:
        return sagemaker_training.attach(run_dir, config.attach_job,
                                         default_bucket=config.default_bucket)
    return sagemaker_training.submit(
        run_dir, hyper, role=config.role, instance_type=config.instance_type,
        instance_count=config.instance_count, transformers_version=config.transformers_version,
        pytorch_version=config.pytorch_version, distribution=config.distribution,
        default_bucket=config.default_bucket, job_name=config.job_name, wait=config.wait)


def plot_pos_weights(weights, run_dir):
    from mlclf_utils.modeling import plots

    return plots.plot_pos_weights(weights, figures_dir(run_dir) / "pos_weights.png")


def plot_training_curves(run_dir):
    """The curves, saved with 03's figures; None while there is no log (a job not waited for,
    or one whose output.tar.gz was missing)."""
    from mlclf_utils.evaluation import training_curves

    if not (metrics_dir(run_dir) / artifacts.LOG_HISTORY).is_file():
        return None
    return training_curves.plot_training_curves(read_log_history(run_dir),
                                                figures_dir(run_dir) / "training_curves.png")


def run(run_dir, config: Config) -> dict:
    """The whole stage headless: weights and their figure, fine-tuning, the training curves.

    Figures are saved and closed, never shown. Returns a summary; the full metrics are in
    ``read_training_metrics(run_dir)``.
    """
    from mlclf_utils.runner import runs

    run_dir = Path(run_dir)
    check(config.as_dict())
    runs.stage_dir(run_dir, STAGE)  # refuses a 03 folder that already holds a model
    train_split, _, label_map = load_splits(run_dir)
    figures = [plot_pos_weights(pos_weights(train_split, label_map, config), run_dir)]
    metrics = fine_tune(run_dir, config)
    figures.append(plot_training_curves(run_dir))
    drawn = [figure for figure in figures if figure is not None]
    if drawn:
        from mlclf_utils.figures import pyplot

        plt, _ = pyplot()
        for figure in drawn:
            plt.close(figure)
    return {"stage": STAGE, "mode": config.mode, "model_dir": str(model_dir(run_dir)),
            "global_step": metrics.get("global_step"),
            "best_validation_macro_f1": metrics.get("best_validation_macro_f1")}
