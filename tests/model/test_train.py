"""The training entry point with real models, real Trainer, real torchrun processes."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import f1_score

from mlclf_utils import artifacts
from mlclf_utils.modeling import hyperparameters, optimizer, train, trainer
from mlclf_utils.errors import MlclfError, ParameterError

FAST = dict(model_name="mlclf/tiny-random-distilbert", epochs=1, batch_size=16,
            eval_batch_size=64, learning_rate=1e-3, max_length=64, progress=False,
            logging_steps=5)


def args_for(run_dir, **overrides):
    values = {**FAST, "run_dir": str(run_dir), **overrides}
    return hyperparameters.to_argv(values)


@pytest.mark.parametrize("bad, name", [
    ({"learning_rate": -1e-5}, "learning_rate"),
    ({"pos_weight_strategy": "inverse"}, "pos_weight_strategy"),
    ({"max_length": 4096}, "max_length"),
    ({"epochs": 0}, "epochs"),
    ({"pos_weight_floor": 0}, "pos_weight_floor"),
    ({"pos_weight_floor": 2, "pos_weight_cap": 1}, "pos_weight_cap"),
    ({"max_steps": -5}, "max_steps"),
    ({"max_steps": 0}, "max_steps"),
])
def test_bad_hyperparameters_fail_before_any_work(bad, name):
    with pytest.raises(ParameterError, match=name):
        hyperparameters.check_hyperparameters({**FAST, **bad})


def test_max_steps_is_minus_one_or_positive():
    assert hyperparameters.check_hyperparameters({**FAST, "max_steps": -1}).max_steps == -1
    assert hyperparameters.check_hyperparameters({**FAST, "max_steps": 3}).max_steps == 3
    with pytest.raises(ParameterError, match=r"max_steps=-5.*-1 \(no limit\) or > 0"):
        hyperparameters.check_hyperparameters({**FAST, "max_steps": -5})


def test_unknown_hyperparameter_and_mode():
    with pytest.raises(ParameterError, match="epoch=3: the trainer takes no such hyperparameter"):
        hyperparameters.check_hyperparameters({"epoch": 3})
    with pytest.raises(ParameterError, match=r"hyperparameters=\['epoch', 'lr'\]"):
        hyperparameters.check_hyperparameters({"epoch": 3, "lr": 1e-4})
    with pytest.raises(ParameterError, match="mode"):
        hyperparameters.check_hyperparameters({}, mode="cloud")


def test_sagemaker_hyperparameters_arrive_as_strings():
    args = hyperparameters.build_parser().parse_args(["--bf16", "False", "--pos_weight_cap", "None",
                                            "--group_by_length", "true", "--epochs", "2"])
    assert args.bf16 is False and args.pos_weight_cap is None and args.group_by_length is True
    assert args.epochs == 2.0


@pytest.mark.slow
def test_entry_point_runs_exactly_as_sagemaker_would(smoke_run, tmp_path, monkeypatch):
    data = Path(smoke_run) / "02_save_data" / "dataset"
    opt = tmp_path / "opt" / "ml"
    env = {"SM_CHANNEL_TRAIN": data / "train", "SM_CHANNEL_VALIDATION": data / "validation",
           "SM_MODEL_DIR": opt / "model", "SM_OUTPUT_DATA_DIR": opt / "output" / "data"}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    argv = hyperparameters.to_argv({k: v for k, v in FAST.items() if k != "progress"})
    # fp32, so that the recomputation below is the same arithmetic (bf16 "auto" is on here).
    assert train.main(argv + ["--pos_weight_strategy", "ratio", "--bf16", "False"]) == 0

    model_dir = opt / "model"
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "label_map.json",
            "pos_weight.json", "hyperparameters.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    metrics = json.loads((opt / "output" / "data" / "metrics.json").read_text())
    assert (opt / "output" / "data" / "checkpoints").is_dir()

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    labels = json.loads((model_dir / "label_map.json").read_text())["labels"]
    assert [model.config.id2label[i] for i in range(len(labels))] == labels
    assert model.config.problem_type == "multi_label_classification"
    with torch.inference_mode():
        logits = model(**tokenizer(["a qt front end for the shell"], return_tensors="pt")).logits
    assert logits.shape == (1, len(labels)) and torch.isfinite(logits).all()
    # The reported macro-F1 is the saved model's on validation at 0.5, recomputed here from
    # scratch (a metric at the wrong threshold or average, or another model saved, fails).
    validation = datasets.load_from_disk(str(data / "validation"))
    with torch.inference_mode():
        predicted = np.concatenate([
            (model(**tokenizer.pad({"input_ids": validation["input_ids"][i:i + 64]},
                                   return_tensors="pt")).logits > 0).numpy()
            for i in range(0, len(validation), 64)])
    truth = np.asarray(validation["labels"]) > 0.5
    expected = f1_score(truth, predicted, average="macro", zero_division=0)
    assert metrics["best_validation_macro_f1"] == pytest.approx(expected, abs=1e-6)
    from mlclf_utils.modeling.class_weights import load_pos_weight

    weights = load_pos_weight(model_dir / "pos_weight.json")
    assert list(weights) == labels and all(w >= 0.5 for w in weights.values())
    assert json.loads((model_dir / "pos_weight.json").read_text())["strategy"] == "ratio"


@pytest.mark.slow
def test_a_run_never_overwrites_an_earlier_model(smoke_run):
    assert train.main(args_for(smoke_run, max_steps=2, early_stopping_patience=0)) == 0
    with pytest.raises(MlclfError, match="already holds a model"):
        train.run_training(**{**FAST, "run_dir": str(smoke_run), "max_steps": 2})


def final_weights(model_dir):
    return load_file(str(Path(model_dir) / "model.safetensors"))


@pytest.mark.slow
def test_killed_mid_epoch_and_resumed_equals_an_uninterrupted_run(smoke_run_template, tmp_path):
    import shutil

    common = dict(epochs=2, eval_steps=4, early_stopping_patience=0, seed=7, threads=1)
    straight = shutil.copytree(smoke_run_template, tmp_path / "straight")
    assert train.main(args_for(straight, **common)) == 0

    resumed = shutil.copytree(smoke_run_template, tmp_path / "resumed")
    command = [sys.executable, "-m", "mlclf_utils.modeling.train", *args_for(resumed, **common)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = resumed / "03_train" / "checkpoints" / "checkpoint-8" / "trainer_state.json"
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "the run never reached its second checkpoint"
    assert not (resumed / "03_train" / "model").exists(), "killed too late: the run had finished"
    epoch_steps = int(np.ceil(321 / 16))
    assert 8 < epoch_steps, "the kill must land mid-epoch"

    assert train.main(args_for(resumed, **common, resume_from_checkpoint="latest")) == 0
    # Compare the last checkpoint (trained past the kill), not only the best model, which
    # could predate the kill and prove nothing.
    last = max((p for p in (straight / "03_train" / "checkpoints").glob("checkpoint-*")),
               key=lambda p: int(p.name.split("-")[1])).name
    assert int(last.split("-")[1]) > 8
    for folder in ("model", f"checkpoints/{last}"):
        a = final_weights(straight / "03_train" / folder)
        b = final_weights(resumed / "03_train" / folder)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{folder}: resumed weights differ"


@pytest.mark.slow
def test_torchrun_with_two_cpu_processes(smoke_run):
    hyper = {**FAST, "max_steps": 6, "early_stopping_patience": 0, "eval_steps": 3}
    metrics = train.run_torchrun(2, run_dir=str(smoke_run), **hyper)
    assert metrics["world_size"] == 2
    assert (Path(smoke_run) / "03_train" / "model" / "model.safetensors").exists()
    history = json.loads((Path(smoke_run) / "03_train" / "metrics" / "log_history.json").read_text())
    assert any("eval_macro_f1" in row for row in history)


def test_none_reaches_the_trainer_as_none_not_as_its_default():
    """A notebook's pos_weight_floor = None means no floor; dropping it would mean 0.5."""
    args = hyperparameters.check_hyperparameters({"head_learning_rate": None, "pos_weight_floor": None,
                                        "pos_weight_cap": None, "epochs": 1})
    assert args.head_learning_rate is None and args.pos_weight_floor is None
    assert args.pos_weight_cap is None
    assert hyperparameters.to_argv({"pos_weight_floor": None, "run_dir": None}) == ["--pos_weight_floor", "none"]
    # the encoder's own attention dropout, not the trainer's default of 0
    assert hyperparameters.to_argv({"attention_dropout": None}) == ["--attention_dropout", "none"]
    assert hyperparameters.check_hyperparameters({"attention_dropout": None}).attention_dropout is None


def test_03_trains_with_01s_model_and_max_length_and_refuses_another_naming_both(smoke_run, minilm_dir):
    """Issue 11: 01 tokenized for the tiny model at 64 tokens; 03 takes both from 01's
    preprocess_config.json. MiniLM shares the tiny model's vocabulary, which once let it pass."""
    recipe = {k: v for k, v in FAST.items() if k not in ("model_name", "max_length")}
    with pytest.raises(ParameterError, match=r"model_name=.*01_preprocess chose "
                                             r"model_name='mlclf/tiny-random-distilbert'"):
        train.run_training(run_dir=str(smoke_run), model_name=minilm_dir, max_steps=2, **recipe)
    with pytest.raises(ParameterError, match=r"max_length=128.*01_preprocess chose max_length=64"):
        train.run_training(run_dir=str(smoke_run), max_length=128, max_steps=2, **recipe)
    assert not (smoke_run / "03_train" / "model").exists()
    train.run_training(run_dir=str(smoke_run), max_steps=2, eval_steps=2, **recipe)
    saved = json.loads((smoke_run / "03_train" / "model" / "hyperparameters.json").read_text())
    assert (saved["model_name"], saved["max_length"]) == ("mlclf/tiny-random-distilbert", 64)


# --- issue 18: the head's learning rate must reach the head's parameters -----------------

HEAD_LR, ENCODER_LR = 3e-3, 1e-4


def optimizer_rates(tmp_path, head_learning_rate=HEAD_LR):
    """(head rates, encoder rates): the set of learning rates each kind of parameter gets from
    the optimizer the Trainer really builds (create_optimizer_and_scheduler, as train() does)."""
    from transformers import TrainingArguments

    from mlclf_utils.modeling import encoders

    model = encoders.load_classifier(encoders.TINY_MODEL, ["a", "b", "c"])
    args = TrainingArguments(output_dir=str(tmp_path / "out"), learning_rate=ENCODER_LR,
                             weight_decay=0.01, report_to=[], use_cpu=True, warmup_steps=0)
    loop = trainer.make_trainer_class()(model=model, args=args, pos_weight=torch.ones(3),
                                        head_learning_rate=head_learning_rate)
    loop.create_optimizer_and_scheduler(num_training_steps=10)
    rate = {}
    for group in loop.optimizer.param_groups:
        for param in group["params"]:
            assert id(param) not in rate, "a parameter sits in two groups"
            rate[id(param)] = group.get("initial_lr", group["lr"])
    named = dict(model.named_parameters())
    trainable = {name for name, p in named.items() if p.requires_grad}
    assert {id(named[n]) for n in trainable} == set(rate), "every trainable parameter, once"
    # Independent of optimizer.head_parameter_names: the head is what is not in the base model.
    base = {id(p) for p in model.base_model.parameters()}
    head = {n for n in trainable if id(named[n]) not in base}
    assert {"classifier.weight", "classifier.bias"} <= head
    head_rates = {rate[id(named[n])] for n in head}
    encoder_rates = {rate[id(named[n])] for n in trainable - head
                     if not n.startswith(f"{model.base_model_prefix}.pooler")}
    return head_rates, encoder_rates


def test_head_learning_rate_reaches_the_head_and_the_encoder_rate_the_rest(tmp_path):
    assert optimizer_rates(tmp_path) == ({HEAD_LR}, {ENCODER_LR})
    # Without a head rate everything trains at the encoder's.
    assert optimizer_rates(tmp_path, head_learning_rate=None) == ({ENCODER_LR}, {ENCODER_LR})


def test_the_rate_check_catches_a_silently_ignored_head_rate(tmp_path, monkeypatch):
    # The breakage the check exists for: no parameter is recognised as the head's, so the head
    # trains at the encoder's rate and nothing errors.
    monkeypatch.setattr(optimizer, "head_parameter_names", lambda model: set())
    assert optimizer_rates(tmp_path) == ({ENCODER_LR}, {ENCODER_LR})


# --- issue 15: stage 03 headless, and the notebook without its walkthrough -----------------

SMOKE_03 = dict(epochs=1, batch_size=16, max_steps=4, eval_steps=4, learning_rate=1e-3, bf16=False)


@pytest.mark.slow
def test_the_stage_runs_headless_and_saves_its_figures(smoke_run):
    from mlclf_utils.stages import train as stage

    summary = stage.run(smoke_run, stage.Config(**SMOKE_03))
    assert summary["global_step"] == 4 and summary["stage"] == "03_train"
    assert 0 <= summary["best_validation_macro_f1"] <= 1
    assert (stage.model_dir(smoke_run) / "model.safetensors").is_file()
    assert stage.read_hyperparameters(smoke_run)["max_steps"] == 4
    assert stage.read_training_metrics(smoke_run)["global_step"] == 4
    figures = {p.name for p in stage.figures_dir(smoke_run).iterdir()}
    assert figures == {"pos_weights.png", "training_curves.png"}
    with pytest.raises(MlclfError, match="already holds"):
        stage.run(smoke_run, stage.Config(**SMOKE_03))


@pytest.mark.slow
@pytest.mark.notebooks
def test_03_with_teaching_false_skips_the_walkthrough_and_still_trains(smoke_run, tmp_path):
    """What a batch run or a sweep combination executes: the walkthrough says once that it was
    skipped, makes none of its figures, and sections 4-6 need nothing it would have made."""
    import nbformat
    import papermill

    from mlclf_utils.runner import parameters
    from mlclf_utils.runner.execute import KERNEL_NAME
    from mlclf_utils.stages import train as stage

    notebook = next(p for p in parameters.stage_notebooks() if p.stem == "03_train")
    output = tmp_path / "03_train.ipynb"
    papermill.execute_notebook(str(notebook), str(output), kernel_name=KERNEL_NAME,
                               cwd=str(notebook.parent), progress_bar=False,
                               parameters={**SMOKE_03, "run_dir": str(smoke_run),
                                           "teaching": False})
    executed = nbformat.read(str(output), as_version=4)
    printed = "".join(out.get("text", "") for cell in executed.cells if cell.cell_type == "code"
                      for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    assert printed.count("teaching=False") == 1
    assert "every variant agrees with PyTorch" not in printed  # section 1 did not run
    assert "best validation macro-F1 at threshold 0.5" in printed  # section 6 did
    assert (stage.model_dir(smoke_run) / "model.safetensors").is_file()
    figures = {p.name for p in stage.figures_dir(smoke_run).iterdir()}
    assert figures == {"pos_weights.png", "training_curves.png"}


# --- issue 14: the speed options train the same model, and frozen embeddings stay frozen ----

def encoder_weights(model_dir) -> dict[str, torch.Tensor]:
    """The encoder's weights as saved, under transformers' names (head left out)."""
    from transformers import AutoModel

    return {name: p.detach().clone() for name, p in AutoModel.from_pretrained(model_dir).named_parameters()}


@pytest.mark.slow
def test_frozen_embeddings_stay_as_pretrained_while_the_rest_trains(smoke_run, tiny_model_dir):
    metrics = train.run_training(**FAST, run_dir=str(smoke_run), max_steps=3, bf16=False,
                                 freeze_embeddings=True, adamw="fused",
                                 pooling="cls", head_init="random")  # distilbert's own names
    assert metrics["global_step"] == 3
    before = encoder_weights(tiny_model_dir)
    after = encoder_weights(smoke_run / "03_train" / "model")
    embedding = "embeddings.word_embeddings.weight"
    assert torch.equal(before[embedding], after[embedding])
    moved = [name for name in before if name != embedding
             and not torch.equal(before[name], after[name])]
    assert "transformer.layer.0.attention.q_lin.weight" in moved  # the encoder did train
    saved = json.loads((smoke_run / "03_train" / "model" / "hyperparameters.json").read_text())
    assert (saved["freeze_embeddings"], saved["adamw"], saved["torch_compile"]) == (True, "fused", False)
    assert metrics["train_cpu_seconds"] > 0 and metrics["train_real_tokens"] > 0


@pytest.mark.slow
def test_a_compiled_lpft_run_trains_and_saves_a_model_that_loads(smoke_run, tiny_model_dir):
    """torch.compile with every other new option, LP-FT included: the saved weights carry no
    compiled-module prefix, and the model loads and predicts as 04 and the bundle load it."""
    from safetensors import safe_open

    from mlclf_utils.serving.predict import Classifier

    metrics = train.run_training(**FAST, run_dir=str(smoke_run), max_steps=2, bf16=False,
                                 pooling="mean", head_init="probe", head_learning_rate=None,
                                 freeze_embeddings=True, adamw="fused", torch_compile=True)
    assert metrics["global_step"] == 2
    model_dir = smoke_run / "03_train" / "model"
    with safe_open(str(model_dir / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and not any("_orig_mod" in key for key in keys)
    saved = json.loads((model_dir / "hyperparameters.json").read_text())
    assert (saved["torch_compile"], saved["head_init"]) == (True, "probe")
    probabilities = Classifier.from_model_dir(model_dir).predict_proba(["a web server", "x"])
    assert len(probabilities) == 2
    assert np.all((np.asarray(probabilities) >= 0) & (np.asarray(probabilities) <= 1))


# --- session 5: what a notebook user sees, and a fine-tuned model that loads whole ----------


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_budget_style_run_prints_lines_and_its_model_loads_with_every_weight(
        smoke_run, pooling, capsys, transformers_log):
    """progress=False (04's plain baseline, 05's retrain): a head line and one line per
    evaluation instead of the LOAD REPORT and raw log dicts. Then the fine-tuned folder loads
    as 04, Classifier and 05's explainer load it: a missing key there would be a real bug."""
    from transformers import AutoModelForSequenceClassification

    from mlclf_utils.modeling import pooling as mean_pooling  # noqa: F401 (registers the type)
    from mlclf_utils.serving.predict import Classifier

    capsys.readouterr()
    train.run_training(**FAST, run_dir=str(smoke_run), max_steps=2, eval_steps=2, bf16=False,
                       pooling=pooling, head_init="probe" if pooling == "mean" else "random",
                       early_stopping_patience=0)
    out = capsys.readouterr().out
    assert not [m for m in transformers_log if "LOAD REPORT" in m]
    assert "new classification head for " in out
    assert "step 2/2 (epoch " in out and "macro-F1 " in out
    assert "best checkpoint (step 2 of 2), evaluated again: validation loss" in out
    assert "{'" not in out and "'loss'" not in out  # no raw Trainer dicts
    model_dir = smoke_run / "03_train" / "model"
    _, info = AutoModelForSequenceClassification.from_pretrained(model_dir,
                                                                 output_loading_info=True)
    assert {k: list(v) for k, v in info.items()} == {
        "missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    Classifier.from_model_dir(model_dir).predict_proba(["a web server"])
    assert not [m for m in transformers_log if "LOAD REPORT" in m]


# --- session 7: the probe's line names the loss the run really trains with ------------------


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["none", "sqrt"])
def test_the_probe_line_says_weighted_bce_only_for_a_weighted_run(smoke_run, strategy, capsys):
    """04's plain recipe (pos_weight_strategy none) printed "weighted BCE" after its probe."""
    capsys.readouterr()
    train.run_training(**FAST, run_dir=str(smoke_run), max_steps=1, eval_steps=1, bf16=False,
                       pooling="mean", head_init="probe", pos_weight_strategy=strategy,
                       early_stopping_patience=0)
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("linear probe (LP-FT)")]
    assert len(lines) == 1
    saved = json.loads((smoke_run / "03_train" / "model" / artifacts.POS_WEIGHT).read_text())
    assert (set(saved["pos_weight"].values()) == {1.0}) == (strategy == "none")
    if strategy == "none":
        assert ", BCE " in lines[0] and "weighted" not in lines[0]
    else:
        assert ", weighted BCE " in lines[0]
