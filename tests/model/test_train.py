"""The training entry point with real models, real Trainer, real torchrun processes."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mlclf_utils import train
from mlclf_utils.errors import MlclfError, ParameterError

FAST = dict(model_name="mlclf/tiny-random-distilbert", epochs=1, batch_size=16,
            eval_batch_size=64, learning_rate=1e-3, max_length=64, progress=False,
            logging_steps=5)


def args_for(run_dir, **overrides):
    values = {**FAST, "run_dir": str(run_dir), **overrides}
    return train.to_argv(values)


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
        train.check_hyperparameters({**FAST, **bad})


def test_max_steps_is_minus_one_or_positive():
    assert train.check_hyperparameters({**FAST, "max_steps": -1}).max_steps == -1
    assert train.check_hyperparameters({**FAST, "max_steps": 3}).max_steps == 3
    with pytest.raises(ParameterError, match=r"max_steps=-5.*-1 \(no limit\) or > 0"):
        train.check_hyperparameters({**FAST, "max_steps": -5})


def test_unknown_hyperparameter_and_mode():
    with pytest.raises(ParameterError, match="hyperparameters"):
        train.check_hyperparameters({"epoch": 3})
    with pytest.raises(ParameterError, match="mode"):
        train.check_hyperparameters({}, mode="cloud")


def test_sagemaker_hyperparameters_arrive_as_strings():
    args = train.build_parser().parse_args(["--bf16", "False", "--pos_weight_cap", "None",
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
    argv = train.to_argv({k: v for k, v in FAST.items() if k != "progress"})
    assert train.main(argv + ["--pos_weight_strategy", "ratio"]) == 0

    model_dir = opt / "model"
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "label_map.json",
            "pos_weight.json", "hyperparameters.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    metrics = json.loads((opt / "output" / "data" / "metrics.json").read_text())
    assert 0 <= metrics["best_validation_macro_f1"] <= 1
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
    from mlclf_utils.class_weights import load_pos_weight

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
    command = [sys.executable, "-m", "mlclf_utils.train", *args_for(resumed, **common)]
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
    args = train.check_hyperparameters({"head_learning_rate": None, "pos_weight_floor": None,
                                        "pos_weight_cap": None, "epochs": 1})
    assert args.head_learning_rate is None and args.pos_weight_floor is None
    assert args.pos_weight_cap is None
    assert train.to_argv({"pos_weight_floor": None, "run_dir": None}) == ["--pos_weight_floor", "none"]


def test_a_model_with_another_vocabulary_than_01_used_is_refused(tmp_path, tiny_model_dir, minilm_dir):
    from transformers import BertConfig, BertTokenizerFast

    from mlclf_utils.errors import ParameterError

    other = tmp_path / "other-vocab"
    other.mkdir()
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "gtk", "qt"]))
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(str(other))
    BertConfig(vocab_size=7, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
               intermediate_size=8).save_pretrained(str(other))
    data = tmp_path / "train"
    data.mkdir()
    (data / "preprocess_config.json").write_text(json.dumps({"model_name": minilm_dir}))
    train.check_tokenizer_matches(data, minilm_dir)       # the same model
    train.check_tokenizer_matches(data, tiny_model_dir)   # another model, the same vocabulary
    with pytest.raises(ParameterError, match="model_name.*tokenized with"):
        train.check_tokenizer_matches(data, str(other))
    train.check_tokenizer_matches(tmp_path / "elsewhere", str(other))  # no record: nothing to check
