"""A small run directory with real 01 and 02 artifacts (smoke CSV, MiniLM tokenizer)."""

import pytest

from mlclf_utils.modeling import encoders
from mlclf_utils.stages import preprocess, save_data


def build_smoke_run(run_dir, smoke_csv, *, max_length=64):
    """01 and 02 as a batch run does them, through the stage modules' ``run``.

    The split stays at 80/10/10, where the model tests' floors were measured: the demo's
    larger validation share (20%) serves 04's thresholds, which these tests do not tune."""
    config = preprocess.Config(source=str(smoke_csv), text_column="description",
                               labels_column="tags", sample_size=None, min_label_count=5,
                               model_name=encoders.TINY_MODEL, max_length=max_length,
                               split_proportions=(0.8, 0.1, 0.1))
    preprocess.run(run_dir, config)
    save_data.run(run_dir, save_data.Config())
    return run_dir


@pytest.fixture(scope="session")
def smoke_run_template(tmp_path_factory, smoke_csv, tiny_model_dir):
    return build_smoke_run(tmp_path_factory.mktemp("smoke-run"), smoke_csv)


@pytest.fixture()
def smoke_run(smoke_run_template, tmp_path):
    """A private copy, so each test writes its own 03_train."""
    import shutil

    return shutil.copytree(smoke_run_template, tmp_path / "run")


# --- A keyword data set whose labels follow from words in the text, for the learnability and
# --- behaviour tests. Generated here (never Debian data); one label is rare and has a weak cue.

KEYWORDS = {
    "audio": ["sound", "music", "speakers"],
    "video": ["movie", "camera", "subtitles"],
    "network": ["socket", "router", "proxy"],
    "database": ["query", "sqlite", "index"],
}
RARE = "braille"
RARE_SHARE = 0.08
# The rare label's cues: "braille" marks a positive; "tactile" is on some positives and on a
# few negatives too, so only a higher pos_weight turns it into a (noisy) positive prediction.
RARE_STRONG, RARE_WEAK = "braille", "tactile"
NEUTRAL = ("small fast simple portable modern stable tiny handy light quick plain solid helper "
           "tool utility program library package module plugin daemon service frontend backend "
           "console script files settings options manual docs theme colour layout menu").split()
KEYWORD_LABELS = [*KEYWORDS, RARE]


def keyword_rows(n: int, seed: int) -> list[tuple[str, list[str]]]:
    """(text, labels): each common label in about 30% of texts, the rare one in 8%."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = [name for name in KEYWORDS if rng.random() < 0.3]
        words = rng.sample(NEUTRAL, rng.randint(2, 4))
        words += [rng.choice(KEYWORDS[name]) for name in labels]
        if rng.random() < RARE_SHARE:
            labels.append(RARE)
            words.append(RARE_STRONG if rng.random() < 0.5 else RARE_WEAK)
        elif rng.random() < 0.06:
            words.append(RARE_WEAK)
        if not labels:
            labels = ["audio"]
            words.append(rng.choice(KEYWORDS["audio"]))
        rng.shuffle(words)
        rows.append((" ".join(words), labels))
    return rows


def write_keyword_csv(path, rows) -> str:
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["description", "tags"])
        writer.writerows((text, ",".join(labels)) for text, labels in rows)
    return str(path)


# The recipe every keyword model is trained with, through the real train.py. The tiny encoder
# is random, so (unlike MiniLM) it is the encoder that must learn fast: its rate is 10x the
# head's. A head rate that lands on the wrong parameters then leaves the encoder at 2e-4, where
# it learns nothing in 100 steps (measured: macro-F1 0.14 against 0.90). A random head on the CLS
# pooler, so that the encoder has to do the learning; 03's LP-FT default would fit the head on
# the random encoder's mean-pooled vectors first, which test_learnability checks on its own.
KEYWORD_RECIPE = dict(model_name=encoders.TINY_MODEL, max_steps=100, eval_steps=100, batch_size=16,
                      learning_rate=2e-3, head_learning_rate=2e-4, seed=0, threads=1,
                      early_stopping_patience=0, progress=False, bf16=False, max_length=64,
                      logging_steps=50, pooling="cls", head_init="random")
# 03's default recipe on the same data: LP-FT on mean-pooled vectors, one learning rate.
KEYWORD_LPFT = dict(pooling="mean", head_init="probe", head_learning_rate=None)


@pytest.fixture(scope="session")
def keyword_run_template(tmp_path_factory, tiny_model_dir):
    """01 and 02 run for real on 600 keyword texts (the smoke recipe, another CSV)."""
    folder = tmp_path_factory.mktemp("keyword-run")
    csv_path = write_keyword_csv(folder / "keywords.csv", keyword_rows(600, seed=1))
    return build_smoke_run(folder / "run", csv_path)


def train_keyword_model(template, dest, **overrides):
    """Train a copy of the template with KEYWORD_RECIPE; a Classifier with the default cleaning."""
    import shutil

    from mlclf_utils.modeling import train
    from mlclf_utils.data.cleaning import CleaningConfig
    from mlclf_utils.serving.predict import Classifier

    run_dir = shutil.copytree(template, dest)
    train.run_training(run_dir=str(run_dir), **{**KEYWORD_RECIPE, **overrides})
    return Classifier.from_model_dir(run_dir / "03_train" / "model", cleaning=CleaningConfig())


def keyword_scores(classifier, rows) -> tuple[dict, "pd.DataFrame"]:
    """Report and per-label table at 0.5 on ``rows``, matching labels by name."""
    import numpy as np

    from mlclf_utils.evaluation import metrics

    probs = classifier.predict_proba([text for text, _ in rows])
    truth = np.array([[name in labels for name in classifier.labels] for _, labels in rows])
    return (metrics.multilabel_report(truth, probs, classifier.labels, 0.5),
            metrics.per_class_table(truth, probs, classifier.labels, 0.5))


@pytest.fixture(scope="session")
def keyword_heldout():
    """Fresh texts from the same generator, another seed: never seen in training."""
    return keyword_rows(400, seed=99)


@pytest.fixture(scope="session")
def keyword_classifier(keyword_run_template, tmp_path_factory):
    """The keyword model trained once with the unbroken code (default sqrt pos_weight)."""
    return train_keyword_model(keyword_run_template, tmp_path_factory.mktemp("keyword") / "run")


@pytest.fixture(scope="session")
def keyword_kit():
    """The helpers above for test modules (conftest cannot be imported under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(rare=RARE, keywords=KEYWORDS, rare_strong=RARE_STRONG,
                           scores=keyword_scores, train=train_keyword_model, lpft=KEYWORD_LPFT)


def bold_classifier(model_name, labels, pooling="cls"):
    """An untrained classifier with a bold random head (std 0.5). A fresh head is near zero, so
    every text would score about 0.5 and order, cleaning or backend mistakes would hide under a
    tolerance; the bolder head spreads the scores. The head is the model's last Linear."""
    import torch

    torch.manual_seed(0)
    model = encoders.load_classifier(model_name, labels, pooling=pooling)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.normal_(head.weight, std=0.5)
    return model


def untrained_model_dir(path, model_name, labels, pooling="cls"):
    """What 03 leaves behind, minus the training: weights, config, tokenizer, label map and
    pos_weight, with ``bold_classifier``'s head."""
    from mlclf_utils.data.label_map import LabelMap
    from mlclf_utils.modeling import class_weights

    bold_classifier(model_name, labels, pooling).save_pretrained(path)
    encoders.load_tokenizer(model_name).save_pretrained(path)
    LabelMap(labels).to_json(path / "label_map.json")
    class_weights.save_pos_weight({label: 1.0 for label in labels}, path / "pos_weight.json")
    return path


@pytest.fixture(scope="session")
def untrained():
    """``bold_classifier`` and ``untrained_model_dir`` for test modules."""
    from types import SimpleNamespace

    return SimpleNamespace(classifier=bold_classifier, model_dir=untrained_model_dir)


@pytest.fixture()
def transformers_log():
    """Every message transformers logs during a test (its LOAD REPORT included), in order."""
    import logging

    from transformers.utils import logging as hf_logging

    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    keep = Keep()
    hf_logging.add_handler(keep)
    yield messages
    hf_logging.remove_handler(keep)
