"""The pieces the training loop is built from: the Trainer subclass (its optimizer groups are
in ``modeling.optimizer``), its metric and the callback that reports progress to the runner.

transformers' own multi-label mode uses plain BCE with no ``pos_weight``, hence the subclass.
Everything heavy (torch, transformers) is imported inside the functions, so that the entry
point can parse and validate its arguments, and the runner can check them, in a fraction of
a second.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path


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


def make_trainer_class():
    """Built lazily so that importing this module (for argparse) stays cheap."""
    import torch
    from transformers import Trainer

    from mlclf_utils.modeling.loss import WeightedBCEWithLogits
    from mlclf_utils.modeling.optimizer import adamw_options, optimizer_groups

    class WeightedBCETrainer(Trainer):
        """Trainer whose loss is BCE-with-logits with per-class positive weights."""

        def __init__(self, *args, pos_weight, head_learning_rate=None, adamw="fused",
                     layer_lr_decay=1.0, **kwargs):
            self.head_learning_rate = head_learning_rate
            self.layer_lr_decay = layer_lr_decay
            self.adamw = adamw
            super().__init__(*args, **kwargs)
            self.loss_fn = WeightedBCEWithLogits(pos_weight)
            # Tokens fed to the model in training steps: real ones and all (with padding);
            # their ratio is the padding efficiency the throughput benchmark reports.
            self.real_tokens = 0
            self.padded_tokens = 0
            self.last_loss = None

        def create_optimizer(self, model=None):
            """AdamW with a separate learning rate for the freshly initialised head (None: the
            encoder's), computed by the implementation ``adamw`` names."""
            if self.optimizer is not None:
                return self.optimizer
            model = model if model is not None else self.model
            groups = optimizer_groups(model, learning_rate=self.args.learning_rate,
                                      head_learning_rate=(self.head_learning_rate
                                                          or self.args.learning_rate),
                                      weight_decay=self.args.weight_decay,
                                      layer_lr_decay=self.layer_lr_decay)
            self.optimizer = torch.optim.AdamW(
                groups, lr=self.args.learning_rate,
                betas=(self.args.adam_beta1, self.args.adam_beta2), eps=self.args.adam_epsilon,
                **adamw_options(self.adamw),
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

        def _save_checkpoint(self, model, trial):
            with quiet_mtime_fallback():
                return super()._save_checkpoint(model, trial)

    return WeightedBCETrainer


# After each save, transformers rotates checkpoints sorted by mtime; when the oldest and newest
# are less than 1 s apart (a smoke run saving every few steps) it logs "mtime may not be
# reliable on this filesystem, falling back to numerical ordering" and sorts them by step
# (trainer_utils.sort_checkpoints). For ours that order is the right one: checkpoint-N is named
# by global step and one training writes one folder, so the note (a red box in 03) is held back,
# in our Trainer's saves only (transformers' warning_once then counts it as said, for this
# process). Every other message of that logger passes.
MTIME_FALLBACK = "mtime may not be reliable"


@contextlib.contextmanager
def quiet_mtime_fallback():
    """transformers' mtime-fallback note held back inside the block (see above)."""
    import logging

    def keep(record) -> bool:
        return MTIME_FALLBACK not in record.getMessage()

    logger = logging.getLogger("transformers.trainer_utils")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def progress_file_callback(label: str, target: str | Path | None):
    """A TrainerCallback that appends ``{"label", "step", "total", "loss"}`` lines to
    ``target``, which the runner tails to draw its progress bar; None when no target is given."""
    if not target:
        return None
    from transformers import TrainerCallback

    class ProgressFile(TrainerCallback):
        trainer = None  # set once the trainer exists: its last training step's loss

        def write(self, state, **record):
            if not state.is_world_process_zero:
                return
            record = {"label": label, "step": state.global_step, "total": state.max_steps, **record}
            with open(target, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")

        def on_train_begin(self, args, state, control, **kwargs):
            self.write(state, event="begin")

        def on_step_end(self, args, state, control, **kwargs):
            self.write(state, loss=getattr(self.trainer, "last_loss", None))

        def on_train_end(self, args, state, control, **kwargs):
            self.write(state, event="end")

    return ProgressFile()


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (torch.compile's C++
    compiler runs), so that compilation is counted in the CPU cost too."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def training_clock():
    """A TrainerCallback timing the training steps (data loading included; evaluations and
    checkpoint saves left out) in wall and CPU seconds, and the first step apart, where
    torch.compile compiles. CPU seconds stay comparable on a machine others share."""
    from transformers import TrainerCallback

    class TrainingClock(TrainerCallback):
        wall = cpu = 0.0
        first_step_wall = None

        def restart(self):
            self.last = (time.perf_counter(), cpu_seconds())

        def on_train_begin(self, args, state, control, **kwargs):
            self.wall, self.cpu, self.first_step_wall = 0.0, 0.0, None
            self.restart()

        def on_step_end(self, args, state, control, **kwargs):
            wall, cpu = time.perf_counter(), cpu_seconds()
            self.wall += wall - self.last[0]
            self.cpu += cpu - self.last[1]
            if self.first_step_wall is None:
                self.first_step_wall = self.wall
            self.last = (wall, cpu)

        def on_evaluate(self, args, state, control, **kwargs):
            self.restart()  # the evaluation just done is no training step

        def on_save(self, args, state, control, **kwargs):
            self.restart()

    return TrainingClock()


def find_latest_checkpoint(folder: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder, for ``resume_from_checkpoint="latest"``.

    A process killed while the Trainer was saving leaves a newest folder with a missing or
    half-written ``trainer_state.json``; resuming from it would crash, so it is skipped (and
    named on stderr) in favour of the one before."""
    import re
    import sys

    from mlclf_utils import artifacts
    from mlclf_utils.errors import DataError

    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))
    for _, path in reversed(found):
        try:
            artifacts.read_json(path / "trainer_state.json", what="the Trainer's state")
        except DataError:
            print(f"skipping {path}: its save did not finish (no readable trainer_state.json)",
                  file=sys.stderr)
            continue
        return str(path)
    return None


# --------------------------------------------------------------------------- what a person sees


def epoch_text(epoch) -> str:
    """An epoch count as a person reads it: 3 after whole epochs, 0.3 part-way."""
    return f"{round(float(epoch or 0), 2):g}"


def counted(number, unit: str) -> str:
    """A count and its unit, singular for one: "1 step", "12 steps", "0.75 epochs"."""
    return f"{number} {unit}{'' if str(number) == '1' else 's'}"


def planned_epochs(state) -> float:
    """The epochs the run reaches at its last step. ``state.num_train_epochs`` rounds a
    ``max_steps`` run up to whole epochs (a 12-step smoke run "of 1 epoch"); the steps done and
    the epochs they made give the true fraction."""
    if state.global_step and state.epoch:
        return state.max_steps * state.epoch / state.global_step
    return state.num_train_epochs


# The Trainer's bookkeeping in an evaluation's metrics, which says nothing about the model.
TIMING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second",
                   "_model_preparation_time")
METRIC_NAMES = {"loss": "validation loss", "micro_f1": "micro-F1", "macro_f1": "macro-F1"}


def evaluation_text(metrics: dict | None) -> str:
    """``eval_*`` metrics as one phrase: "validation loss 0.169, micro-F1 0.359, macro-F1 0.138"."""
    parts = []
    for key, value in (metrics or {}).items():
        if not key.startswith("eval_") or key.endswith(TIMING_SUFFIXES) or not isinstance(
                value, (int, float)):
            continue
        name = key[len("eval_"):]
        parts.append(f"{METRIC_NAMES.get(name, name.replace('_', ' '))} {value:.3f}")
    return ", ".join(parts)


def best_model_line(state, metrics: dict | None) -> str:
    """The evaluation train() runs after training: the best checkpoint, reloaded."""
    step = getattr(state, "best_global_step", None) or state.global_step  # older transformers: none
    return f"best checkpoint (step {step} of {state.global_step}), evaluated again: " \
           f"{evaluation_text(metrics)}"


def readable_progress(loop) -> None:
    """Replace the Trainer's displays with truthful, quiet ones.

    With ``progress`` on in a notebook, transformers' table says "Epoch 0/1" for a short
    ``max_steps`` run (it rounds the plan up to whole epochs) and lists the final evaluation
    of the best checkpoint under the last step: ``truthful_notebook_progress`` says the epoch
    fraction. With ``progress`` off (04's and 05's budget trainings, sweeps), transformers
    prints every log as a raw dict; ``evaluation_lines`` prints one line per evaluation."""
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils.notebook import NotebookProgressCallback

    if loop.pop_callback(NotebookProgressCallback) is not None:
        loop.add_callback(truthful_notebook_progress())
    if loop.pop_callback(PrinterCallback) is not None:
        loop.add_callback(evaluation_lines())


def truthful_notebook_progress():
    """transformers' notebook table and bar, with the epoch as a fraction of the planned ones."""
    from transformers.utils.notebook import NotebookProgressCallback

    class TruthfulNotebookProgress(NotebookProgressCallback):
        @staticmethod
        def comment(state) -> str:
            return f"Epoch {epoch_text(state.epoch)}/{epoch_text(planned_epochs(state))}"

        def on_step_end(self, args, state, control, **kwargs):
            self.training_tracker.update(state.global_step, comment=self.comment(state),
                                         force_update=self._force_next_update)
            self._force_next_update = False

        trained = False  # True after on_train_end: the next evaluation is the best model's

        def on_train_begin(self, args, state, control, **kwargs):
            self.trained = False
            super().on_train_begin(args, state, control, **kwargs)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if self.trained or self.training_tracker is None:  # the best model, reloaded
                # Its bar was drawn under the finished table, in the table's output, and goes
                # from there; a bar of its own would stay as "[7/7 00:04]", or, closed, as an
                # empty HTML output between the table and the line below.
                if self.training_tracker is not None and self.training_tracker.child_bar:
                    self.training_tracker.remove_child()
                elif self.prediction_bar is not None:  # evaluate() without training
                    self.prediction_bar.close()
                self.prediction_bar = None
                if state.is_world_process_zero:
                    print(best_model_line(state, metrics))
                return
            super().on_evaluate(args, state, control, metrics=metrics, **kwargs)
            if self.first_column == "Epoch":  # transformers writes int(epoch): 0 at 0.3
                self.training_tracker.inner_table[-1][0] = epoch_text(state.epoch)
                self.training_tracker.display()

        def on_train_end(self, args, state, control, **kwargs):
            self.training_tracker.update(state.global_step, comment=self.comment(state),
                                         force_update=True)
            self.trained = True  # the tracker stays, to hold the bar of the evaluation after

    return TruthfulNotebookProgress()


def evaluation_lines():
    """Without a progress bar: a line when training starts, one per evaluation, one at the end."""
    from transformers import TrainerCallback

    class EvaluationLines(TrainerCallback):
        started = None  # perf_counter() while training runs

        def say(self, state, line: str) -> None:
            if state.is_world_process_zero:
                print(line, flush=True)

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()
            self.say(state, f"training {counted(state.max_steps, 'step')}, a line per "
                            "evaluation (progress bar off)")

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if self.started is None:
                self.say(state, best_model_line(state, metrics))
                return
            self.say(state, f"step {state.global_step}/{state.max_steps} (epoch "
                            f"{epoch_text(state.epoch)}): {evaluation_text(metrics)}")

        def on_train_end(self, args, state, control, **kwargs):
            seconds = time.perf_counter() - (self.started or time.perf_counter())
            self.say(state, f"trained {counted(state.global_step, 'step')} "
                            f"({counted(epoch_text(state.epoch), 'epoch')}) in {seconds:.0f} s")
            self.started = None

    return EvaluationLines()
