"""The mean-pooling classifier (opt-in: ``--pooling mean``, ``--head_init probe``).

Both architectures round-trip as safetensors through the Auto classes (no trust_remote_code),
accept embeddings for integrated gradients, ignore padding; LP-FT's probe fits and is seeded;
a bundle of a mean-pooling model predicts what the model does, and its SageMaker export
carries the module that registers the class.
"""

import json

import numpy as np
import pytest
import torch

from mlclf_utils.errors import ParameterError
from mlclf_utils.modeling import class_weights, encoders, hyperparameters, pooling, train
from mlclf_utils.data.cleaning import CleaningConfig, clean_text
from mlclf_utils.data.label_map import LabelMap
from mlclf_utils.serving import bundle, hosting
from mlclf_utils.serving.predict import Classifier

LABELS = ["audio", "network", "web"]
TEXTS = ["a web server", "plays music from the network", "x"]


@pytest.fixture(scope="module", params=["minilm", "tiny-distilbert"])
def model_name(request, minilm_dir, tiny_model_dir):
    return {"minilm": encoders.DEFAULT_MODEL, "tiny-distilbert": tiny_model_dir}[request.param]


def batch_of(model_name, texts=TEXTS[:2]):
    tokenizer = encoders.load_tokenizer(model_name)
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    return {k: batch[k] for k in ("input_ids", "attention_mask")}


def test_saves_and_loads_through_the_auto_classes(model_name, tmp_path):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = encoders.load_classifier(model_name, LABELS, pooling="mean").eval()
    assert model.backbone.get_input_embeddings() is model.get_input_embeddings()
    batch = batch_of(model_name)
    with torch.inference_mode():
        before = model(**batch).logits
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == pooling.MODEL_TYPE
    assert config["architectures"] == ["MeanPoolingClassifier"]
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.py")) and not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, pooling.MeanPoolingClassifier)
    assert loaded.config.id2label == {0: "audio", 1: "network", 2: "web"}
    with torch.inference_mode():
        after = loaded(**batch).logits
        embedded = loaded(inputs_embeds=loaded.get_input_embeddings()(batch["input_ids"]),
                          attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(before, after)
    torch.testing.assert_close(after, embedded, atol=1e-4, rtol=1e-4)


def test_encoder_weights_are_the_pretrained_ones(minilm_dir):
    from transformers import AutoModel

    model = encoders.load_classifier(encoders.DEFAULT_MODEL, LABELS, pooling="mean")
    pretrained = AutoModel.from_pretrained(minilm_dir).state_dict()
    for name, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, pretrained[name])
    assert getattr(model.backbone, "pooler", None) is None


def test_the_trainer_finds_the_tokenizers_special_tokens_in_the_config(model_name,
                                                                       transformers_log):
    # Without the encoder's pad_token_id in the top-level config, transformers' Trainer
    # "aligns" it with the tokenizer's and logs a warning that reads like a fault in 03 to 05.
    from transformers.trainer_utils import align_special_tokens

    model = encoders.load_classifier(model_name, LABELS, pooling="mean")
    tokenizer = encoders.load_tokenizer(model_name)
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None
    align_special_tokens(model, tokenizer)
    assert not [m for m in transformers_log if "PAD/BOS/EOS" in m]


def test_default_pooling_is_still_transformers_cls_head(tiny_model_dir):
    assert not isinstance(encoders.load_classifier(tiny_model_dir, LABELS),
                          pooling.MeanPoolingClassifier)
    with pytest.raises(ParameterError, match="pooling"):
        encoders.load_classifier(tiny_model_dir, LABELS, pooling="max")


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pooling.mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_padding_does_not_change_a_texts_logits(tiny_model_dir):
    model = encoders.load_classifier(tiny_model_dir, LABELS, pooling="mean").eval()
    alone, padded = batch_of(tiny_model_dir, ["x"]), batch_of(tiny_model_dir, ["x", TEXTS[1]])
    with torch.inference_mode():
        torch.testing.assert_close(model(**alone).logits[0], model(**padded).logits[0],
                                   atol=1e-5, rtol=1e-5)


def test_fit_head_learns_separable_labels_and_is_seeded(tiny_model_dir):
    torch.manual_seed(0)
    model = encoders.load_classifier(tiny_model_dir, LABELS, pooling="mean")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, model.classifier.in_features)).astype(np.float32)
    targets = (features[:, :3] > 0).astype(np.float32)
    pooling.fit_head(model, features, targets, torch.ones(3), seed=0)
    logits = model.classifier(torch.as_tensor(features)).detach().numpy()
    assert ((logits > 0) == (targets > 0.5)).mean() > 0.95
    torch.manual_seed(1)  # another global state: the probe has its own generator
    again = encoders.load_classifier(tiny_model_dir, LABELS, pooling="mean")
    pooling.fit_head(again, features, targets, torch.ones(3), seed=0)
    torch.testing.assert_close(again.classifier.weight, model.classifier.weight)


def test_embed_dataset_keeps_the_dataset_order(tiny_model_dir):
    from datasets import Dataset
    from transformers import DataCollatorWithPadding

    tokenizer = encoders.load_tokenizer(tiny_model_dir)
    texts = ["a long text about web servers and network audio", "short", "plays music"]
    ds = Dataset.from_dict(dict(tokenizer(texts)))
    model = encoders.load_classifier(tiny_model_dir, LABELS, pooling="mean").eval()
    features = pooling.embed_dataset(model, ds, DataCollatorWithPadding(tokenizer), batch_size=2)
    for i, text in enumerate(texts):
        one = tokenizer([text], return_tensors="pt")
        with torch.inference_mode():
            expected = model.embed(one["input_ids"], one["attention_mask"]).numpy()[0]
        np.testing.assert_allclose(features[i], expected, atol=1e-5)


def test_the_probe_needs_mean_pooling_and_the_options_are_recipe_keys():
    with pytest.raises(ParameterError, match="head_init"):
        hyperparameters.check_hyperparameters({"pooling": "cls"})  # the default head_init: probe
    cls = hyperparameters.check_hyperparameters({"pooling": "cls", "head_init": "random"})
    assert (cls.pooling, cls.head_init) == ("cls", "random")
    args = hyperparameters.check_hyperparameters({"pooling": "mean", "head_init": "probe",
                                                  "freeze_embeddings": "true",
                                                  "lr_scheduler_type": "cosine"})
    assert (args.pooling, args.head_init, args.freeze_embeddings) == ("mean", "probe", True)
    defaults = hyperparameters.build_parser().parse_args([])
    # 03's recipe: LP-FT on mean-pooled vectors, one learning rate (docs/benchmarks.md, Recipes)
    assert (defaults.pooling, defaults.head_init, defaults.head_learning_rate,
            defaults.freeze_embeddings, defaults.lr_scheduler_type) == (
        "mean", "probe", None, False, "linear")
    for name in ("pooling", "head_init", "freeze_embeddings", "lr_scheduler_type"):
        assert name in hyperparameters.RECIPE_KEYS  # 04's and 05's retrains keep them
    with pytest.raises(ParameterError, match="lr_scheduler_type"):
        hyperparameters.check_hyperparameters({"lr_scheduler_type": "sawtooth"})


def test_lpft_training_saves_a_mean_pooling_model(smoke_run):
    from transformers import AutoConfig

    train.run_training(run_dir=str(smoke_run), model_name=encoders.TINY_MODEL, epochs=1,
                       batch_size=16, max_length=64, progress=False, max_steps=2,
                       pooling="mean", head_init="probe", head_learning_rate=None,
                       freeze_embeddings=True)
    model_dir = smoke_run / "03_train" / "model"
    assert AutoConfig.from_pretrained(model_dir).model_type == pooling.MODEL_TYPE
    saved = json.loads((model_dir / "hyperparameters.json").read_text())
    assert (saved["pooling"], saved["head_init"], saved["freeze_embeddings"]) == ("mean", "probe", True)
    assert len(Classifier.from_model_dir(model_dir).predict_proba(TEXTS)) == len(TEXTS)


@pytest.fixture(scope="module")
def mean_model_dir(tmp_path_factory, tiny_model_dir):
    """What 03 leaves behind with ``--pooling mean``, minus the training (a bold head)."""
    path = tmp_path_factory.mktemp("mean") / "model"
    torch.manual_seed(0)
    model = encoders.load_classifier(encoders.TINY_MODEL, LABELS, pooling="mean")
    torch.nn.init.normal_(model.classifier.weight, std=0.5)
    model.save_pretrained(path)
    encoders.load_tokenizer(encoders.TINY_MODEL).save_pretrained(path)
    LabelMap(LABELS).to_json(path / "label_map.json")
    class_weights.save_pos_weight({label: 1.0 for label in LABELS}, path / "pos_weight.json")
    return path


@pytest.fixture(scope="module")
def mean_bundle(mean_model_dir, tmp_path_factory):
    return bundle.export_bundle(
        mean_model_dir, tmp_path_factory.mktemp("mb") / "bundle",
        thresholds={label: 0.5 for label in LABELS},
        preprocess_config={"source": "smoke.csv", "cleaning": CleaningConfig().to_dict(),
                           "max_length": 32})


def test_a_mean_pooling_bundle_predicts_what_the_model_does(mean_model_dir, mean_bundle):
    from transformers import AutoModelForSequenceClassification

    classifier = Classifier.load(mean_bundle)
    assert isinstance(classifier.model, pooling.MeanPoolingClassifier)
    model = AutoModelForSequenceClassification.from_pretrained(mean_model_dir).eval()
    tokenizer = encoders.load_tokenizer(str(mean_model_dir))
    expected = []
    for text in TEXTS:  # one at a time, no padding: the reference
        encoded = tokenizer([clean_text(text, CleaningConfig())], truncation=True,
                            max_length=32, return_tensors="pt")
        with torch.inference_mode():
            expected.append(torch.sigmoid(model(**encoded).logits)[0].numpy())
    np.testing.assert_allclose(classifier.predict_proba(TEXTS, batch_size=2), np.stack(expected),
                               atol=1e-5)


def test_a_mean_pooling_bundle_runs_quantized(mean_bundle):
    # 03's default head: quantize=True (predict --quantize, MLCLF_QUANTIZE on an endpoint)
    # used to stop on "'function' object has no attribute 'dtype'".
    quantized = Classifier.load(mean_bundle, quantize=True)
    assert "DynamicQuantizedLinear" in {m._get_name() for m in quantized.model.modules()}
    diff = np.abs(quantized.predict_proba(TEXTS) - Classifier.load(mean_bundle).predict_proba(TEXTS))
    assert diff.max() < 0.05


def test_the_sagemaker_export_carries_pooling(mean_bundle, tmp_path):
    assert "modeling/pooling.py" in hosting.INFERENCE_MODULES
    out = hosting.export_sagemaker_model(mean_bundle, tmp_path / "sm")
    code = out / "code" / "mlclf_utils"
    assert (code / "modeling" / "pooling.py").is_file()
    assert (code / "modeling" / "__init__.py").is_file()
    assert not (code / "modeling" / "train.py").exists()


def test_05s_explainer_loads_and_attributes_a_mean_pooling_model(mean_model_dir):
    from mlclf_utils.explain.attributions import Explainer

    explainer = Explainer.from_model_dir(mean_model_dir, n_steps=16)
    assert isinstance(explainer.model, pooling.MeanPoolingClassifier)
    explanation = explainer.explain(TEXTS[1], "network")
    assert len(explanation.token_attributions) == len(explanation.tokens)
    assert np.isfinite(explanation.token_attributions).all()
    assert 0.0 <= explanation.probability <= 1.0


def test_the_explanation_benchmark_loads_03s_default_model(mean_model_dir):
    # make bench explains 03's model; in a fresh interpreter nothing had registered the
    # mean-pooling class, and the benchmark stopped on "does not recognize this architecture".
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import explain_speed; "
            f"model, _, _ = explain_speed.load_model({str(mean_model_dir)!r}, 0); "
            "print(type(model).__name__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("MeanPoolingClassifier")
