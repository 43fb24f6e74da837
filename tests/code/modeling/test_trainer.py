"""The training loop's parts on the real tiny model: the AdamW implementation the Trainer really
builds, what frozen embeddings leave out of it, and the clock the throughput benchmark reads."""

import time

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from mlclf_utils.modeling import encoders, hyperparameters, trainer

LABELS = ["a", "b", "c"]


def built_optimizer(tmp_path, *, adamw="fused", head_learning_rate=3e-3, freeze=False):
    """(model, optimizer) as train() gets them: the Trainer's own create_optimizer_and_scheduler."""
    model = encoders.load_classifier(encoders.TINY_MODEL, LABELS)
    if freeze:
        model.get_input_embeddings().weight.requires_grad_(False)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), learning_rate=1e-4,
                             weight_decay=0.01, report_to=[], use_cpu=True, warmup_steps=0)
    loop = trainer.make_trainer_class()(model=model, args=args, pos_weight=torch.ones(3),
                                        head_learning_rate=head_learning_rate, adamw=adamw)
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


def test_every_adamw_choice_has_its_options():
    assert set(hyperparameters.ADAMW_CHOICES) == {"fused", "foreach", "for_loop"}
    for choice in hyperparameters.ADAMW_CHOICES:
        torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], **trainer.adamw_options(choice))


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
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01,
                                  **trainer.adamw_options(implementation))
    for _ in range(2):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()
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
