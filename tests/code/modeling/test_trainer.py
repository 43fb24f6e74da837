"""The training loop's parts on the real tiny model: the AdamW implementation the Trainer really
builds, what frozen embeddings leave out of it, and the clock the throughput benchmark reads."""

import time

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from mlclf_utils.errors import ParameterError
from mlclf_utils.modeling import encoders, hyperparameters, optimizer, trainer

LABELS = ["a", "b", "c"]


def built_optimizer(tmp_path, *, adamw="fused", head_learning_rate=3e-3, freeze=False,
                    layer_lr_decay=1.0):
    """(model, optimizer) as train() gets them: the Trainer's own create_optimizer_and_scheduler."""
    model = encoders.load_classifier(encoders.TINY_MODEL, LABELS)
    if freeze:
        model.get_input_embeddings().weight.requires_grad_(False)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), learning_rate=1e-4,
                             weight_decay=0.01, report_to=[], use_cpu=True, warmup_steps=0)
    loop = trainer.make_trainer_class()(model=model, args=args, pos_weight=torch.ones(3),
                                        head_learning_rate=head_learning_rate, adamw=adamw,
                                        layer_lr_decay=layer_lr_decay)
    loop.create_optimizer_and_scheduler(num_training_steps=10)
    return model, loop.optimizer


@pytest.mark.parametrize("adamw, fused, foreach", [
    ("fused", True, None), ("foreach", None, True), ("for_loop", None, False)])
@pytest.mark.parametrize("head_learning_rate", [3e-3, None])
def test_the_adamw_implementation_reaches_the_optimizer(tmp_path, adamw, fused, foreach,
                                                        head_learning_rate):
    _, optimizer = built_optimizer(tmp_path, adamw=adamw, head_learning_rate=head_learning_rate)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert (optimizer.defaults["fused"], optimizer.defaults["foreach"]) == (fused, foreach)
    rates = {group["lr"] for group in optimizer.param_groups}
    assert rates == ({3e-3, 1e-4} if head_learning_rate else {1e-4})


def rate_of_each_parameter(model, built) -> dict[str, float]:
    rate = {id(p): group["lr"] for group in built.param_groups for p in group["params"]}
    return {name: rate[id(p)] for name, p in model.named_parameters()}


def test_layer_lr_decay_gives_each_block_the_rate_of_the_one_above_times_the_decay(tmp_path):
    model, built = built_optimizer(tmp_path, layer_lr_decay=0.5)
    rates = rate_of_each_parameter(model, built)
    blocks = len(encoders.encoder_layers(model))
    assert blocks >= 2
    head = optimizer.head_parameter_names(model)
    assert head and {rates[name] for name in head} == {3e-3}  # the head keeps its own rate
    for name, rate in rates.items():
        if ".layer." in name and name not in head:
            index = int(name.split(".layer.")[1].split(".")[0])
            assert rate == pytest.approx(1e-4 * 0.5 ** (blocks - 1 - index)), name
        elif ".embeddings." in name:
            assert rate == pytest.approx(1e-4 * 0.5 ** blocks), name
    top = [r for n, r in rates.items() if f".layer.{blocks - 1}." in n]
    assert top and set(top) == {1e-4}  # the top block trains at learning_rate itself
    # no decay: one encoder rate, as before the option existed
    model, built = built_optimizer(tmp_path, layer_lr_decay=1.0)
    assert {group["lr"] for group in built.param_groups} == {3e-3, 1e-4}


def test_layer_lr_decay_outside_0_1_is_refused_by_name():
    with pytest.raises(ParameterError, match="layer_lr_decay"):
        hyperparameters.check_hyperparameters({"layer_lr_decay": 1.5})
    with pytest.raises(ParameterError, match="layer_lr_decay"):
        hyperparameters.check_hyperparameters({"layer_lr_decay": 0})


def test_every_adamw_choice_has_its_options():
    assert set(hyperparameters.ADAMW_CHOICES) == {"fused", "foreach", "for_loop"}
    for choice in hyperparameters.ADAMW_CHOICES:
        torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], **optimizer.adamw_options(choice))


def test_frozen_embeddings_are_left_out_of_the_optimizer(tmp_path):
    model, optimizer = built_optimizer(tmp_path, freeze=True)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    embedding = model.get_input_embeddings().weight
    assert id(embedding) not in optimized
    others = {id(p) for p in model.parameters() if p is not embedding}
    assert others == optimized  # everything else still trains


def one_step(implementation: str) -> list[torch.Tensor]:
    """Parameters after two AdamW steps on the same gradients, with weight decay."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    grads = [torch.randn_like(p) for p in params]
    adamw = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01,
                              **optimizer.adamw_options(implementation))
    for _ in range(2):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        adamw.step()
    return [p.detach().clone() for p in params]


def test_the_three_implementations_compute_the_same_update():
    reference = one_step("for_loop")
    for implementation in ("fused", "foreach"):
        for ours, theirs in zip(one_step(implementation), reference):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    assert not torch.equal(reference[0], torch.randn(5, 3))  # the step did move the parameters


def test_the_training_clock_counts_steps_in_wall_and_cpu_seconds_and_not_evaluations():
    clock = trainer.training_clock()
    state, control = TrainerState(), TrainerControl()
    clock.on_train_begin(None, state, control)
    time.sleep(0.05)
    clock.on_step_end(None, state, control)
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # burn CPU: the clock must see it
        pass
    clock.on_step_end(None, state, control)
    assert 0.05 <= clock.first_step_wall < clock.wall
    assert clock.cpu >= 0.05
    steps_wall = clock.wall
    time.sleep(0.3)  # an evaluation, then a checkpoint save: not training
    clock.on_evaluate(None, state, control)
    time.sleep(0.3)
    clock.on_save(None, state, control)
    clock.on_step_end(None, state, control)
    assert clock.wall - steps_wall < 0.2
    assert trainer.cpu_seconds() > 0


def test_latest_checkpoint_skips_a_save_that_a_kill_cut_short(tmp_path, capsys):
    for step, state in [(4, '{"global_step": 4}'), (8, '{"global_step": 8}'), (12, "")]:
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-16").mkdir()  # killed before the state file was created
    (tmp_path / "checkpoint-x").mkdir()   # not a checkpoint name
    assert trainer.find_latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")
    err = capsys.readouterr().err
    assert "checkpoint-16" in err and "checkpoint-12" in err and "checkpoint-8" not in err
    assert trainer.find_latest_checkpoint(tmp_path / "missing") is None


# --- what a notebook user sees while training (session 5: the JupyterLab run) -------------

def short_run(callback, *, steps=12, steps_per_epoch=40, eval_strategy="epoch"):
    """A ``max_steps`` run shorter than one epoch, fed to a display callback event by event as
    the Trainer does: 12 steps of 40 per epoch, then its evaluation; returns the tracker."""
    from transformers.utils.notebook import NotebookProgressCallback

    args = TrainingArguments(output_dir="unused", eval_strategy=eval_strategy, report_to=[],
                             use_cpu=True)
    state, control = TrainerState(max_steps=steps, num_train_epochs=1), TrainerControl()
    callback.on_train_begin(args, state, control)
    tracker = callback.training_tracker
    for step in range(1, steps + 1):
        state.global_step, state.epoch = step, step / steps_per_epoch
        callback.on_step_end(args, state, control)
    metrics = {"eval_loss": 0.75, "eval_micro_f1": 0.137, "eval_macro_f1": 0.035,
               "eval_runtime": 0.03, "epoch": state.epoch}
    callback.on_evaluate(args, state, control, metrics=dict(metrics))
    callback.on_train_end(args, state, control)
    assert isinstance(callback, NotebookProgressCallback)
    return tracker, state, metrics


def test_a_short_run_shows_its_epoch_fraction_not_epoch_0_of_1(capsys):
    from transformers.utils.notebook import NotebookProgressCallback

    stock, _, _ = short_run(NotebookProgressCallback())
    assert "Epoch 0/1" in stock.label  # what the JupyterLab user saw beside a 0.3-epoch curve
    tracker, _, _ = short_run(trainer.truthful_notebook_progress())
    assert tracker.label.endswith("Epoch 0.3/0.3]") and "[12/12" in tracker.label
    assert tracker.inner_table[0][0] == "Epoch" and tracker.inner_table[1][0] == "0.3"
    stepped, _, _ = short_run(trainer.truthful_notebook_progress(), eval_strategy="steps")
    assert stepped.inner_table[0][0] == "Step" and stepped.inner_table[1][0] == 12


def test_a_whole_epoch_run_reads_as_before():
    tracker, _, _ = short_run(trainer.truthful_notebook_progress(), steps=80)
    assert tracker.label.endswith("Epoch 2/2]") and tracker.inner_table[1][0] == "2"


def test_the_evaluation_after_training_is_one_line_naming_the_best_checkpoint(capsys):
    callback = trainer.truthful_notebook_progress()
    _, state, metrics = short_run(callback)
    capsys.readouterr()
    state.best_global_step = 8
    callback.on_evaluate(None, state, TrainerControl(), metrics=dict(metrics))
    out = capsys.readouterr().out.strip()
    assert out == ("best checkpoint (step 8 of 12), evaluated again: validation loss 0.750, "
                   "micro-F1 0.137, macro-F1 0.035")


def test_the_evaluation_bar_after_training_goes_and_leaves_no_empty_output(monkeypatch, capsys):
    """train() evaluates the reloaded best checkpoint after training. With a bar of its own,
    it stayed in 03 as "[7/7 00:04]" between the table and the "best checkpoint" line, and,
    closed, as an empty HTML output there (session 6's JupyterLab check): it is drawn under the
    finished table instead, in the table's own output, as the evaluations during training are."""
    from transformers.utils import notebook

    shown = []  # what each display in the cell shows now, HTML

    class Handle:
        def __init__(self, obj):
            self.index = len(shown)
            shown.append(obj.data)

        def update(self, obj):
            shown[self.index] = obj.data

    monkeypatch.setattr(notebook.disp, "display", lambda obj, **kwargs: Handle(obj))
    callback = trainer.truthful_notebook_progress()
    _, state, metrics = short_run(callback)
    args = TrainingArguments(output_dir="unused", report_to=[], use_cpu=True)
    assert len(shown) == 1  # the training table and bar: one output
    table = shown[0]
    for _ in range(3):  # three validation batches
        callback.on_prediction_step(args, state, TrainerControl(), eval_dataloader=[0, 1, 2])
    assert len(shown) == 1 and "<progress value='3' max='3'" in shown[0]
    assert shown[0].startswith(table)  # under the finished table
    callback.on_evaluate(args, state, TrainerControl(), metrics=dict(metrics))
    assert len(shown) == 1 and shown[0] == table and callback.prediction_bar is None
    assert "<progress value='12' max='12'" in shown[0]  # the training bar stays, finished
    assert "max='3'" not in shown[0] and "" not in shown  # the evaluation's bar is gone
    assert capsys.readouterr().out.strip().startswith("best checkpoint (step 12 of 12)")


@pytest.mark.parametrize("steps, epoch, begin, end", [
    (35, 0.75, "training 35 steps,", "trained 35 steps (0.75 epochs) in "),
    (1, 1.0, "training 1 step,", "trained 1 step (1 epoch) in "),
    (2, 1.0, "training 2 steps,", "trained 2 steps (1 epoch) in ")])
def test_the_lines_count_steps_and_epochs_in_words(capsys, steps, epoch, begin, end):
    callback = trainer.evaluation_lines()
    state, control = TrainerState(max_steps=steps, num_train_epochs=1), TrainerControl()
    callback.on_train_begin(None, state, control)
    state.global_step, state.epoch = steps, epoch
    callback.on_train_end(None, state, control)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(begin) and lines[1].startswith(end)


def test_without_a_progress_bar_each_evaluation_is_one_line_not_a_dict(capsys):
    callback = trainer.evaluation_lines()
    args = TrainingArguments(output_dir="unused", report_to=[], use_cpu=True)
    state, control = TrainerState(max_steps=35, num_train_epochs=1), TrainerControl()
    callback.on_train_begin(args, state, control)
    state.global_step, state.epoch = 35, 0.75
    callback.on_evaluate(args, state, control, metrics={
        "eval_loss": 0.16871, "eval_micro_f1": 0.0, "eval_macro_f1": 0.0,
        "eval_runtime": 4.8, "eval_samples_per_second": 85.0, "epoch": 0.75})
    callback.on_train_end(args, state, control)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("training 35 steps")
    assert lines[1] == "step 35/35 (epoch 0.75): validation loss 0.169, micro-F1 0.000, macro-F1 0.000"
    assert lines[2].startswith("trained 35 steps (0.75 epochs) in ")
    assert not any("{" in line or "runtime" in line for line in lines)


@pytest.mark.parametrize("disable_tqdm, stock, ours", [
    (True, "PrinterCallback", "EvaluationLines"),
    (False, "ProgressCallback", "ProgressCallback")])  # a terminal keeps transformers' tqdm bar
def test_the_trainer_gets_our_displays_in_place_of_transformers(tmp_path, disable_tqdm, stock,
                                                                 ours):
    model = encoders.load_classifier(encoders.TINY_MODEL, LABELS)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True,
                             disable_tqdm=disable_tqdm)
    loop = trainer.make_trainer_class()(model=model, args=args, pos_weight=torch.ones(3))
    names = lambda: [type(cb).__name__ for cb in loop.callback_handler.callbacks]  # noqa: E731
    assert stock in names()
    trainer.readable_progress(loop)
    assert ours in names() and (stock == ours or stock not in names())


def test_our_saves_hold_back_only_transformers_mtime_fallback_note(tmp_path, monkeypatch):
    """Two checkpoints saved within a second (forced: every mtime equal) make transformers
    note that it sorts by step instead; our Trainer's saves keep that note out of 03, and
    still rotate by step. Outside them, transformers says it as before."""
    import logging
    import os

    from transformers import trainer_utils
    from transformers.utils import logging as hf_logging

    heard = []
    handler = logging.Handler()
    handler.emit = lambda record: heard.append(record.getMessage())
    logger = logging.getLogger("transformers.trainer_utils")
    logger.addHandler(handler)
    monkeypatch.setattr(os.path, "getmtime", lambda path: 0.0)
    try:
        model = encoders.load_classifier(encoders.TINY_MODEL, LABELS)
        args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True,
                                 save_total_limit=1, save_only_model=True)
        loop = trainer.make_trainer_class()(model=model, args=args, pos_weight=torch.ones(3))
        hf_logging.warning_once.cache_clear()  # it says a message once per process
        for step in (1, 2):
            loop.state.global_step = step
            loop._save_checkpoint(loop.model, trial=None)
            logger.warning("another note")  # the rest of that logger is left alone
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-2"]
        assert heard == ["another note", "another note"]
        hf_logging.warning_once.cache_clear()
        (tmp_path / "out" / "checkpoint-3").mkdir()
        trainer_utils.rotate_checkpoints(str(tmp_path / "out"), save_total_limit=1,
                                         use_mtime=True)
        assert any(trainer.MTIME_FALLBACK in message for message in heard[2:])
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-3"]
    finally:
        logger.removeHandler(handler)
