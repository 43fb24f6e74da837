"""Integrated-gradients explanations: completeness, word merging, the sigmoid target, bad input,
and the three ways of showing them.

The tiny DistilBERT is fitted for a second on a made-up task first: a random model's output
hardly depends on its input, so F(text) - F(baseline) would be ~0 and completeness trivial.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from mlclf_utils import artifacts
from mlclf_utils.modeling import encoders
from mlclf_utils.explain.attribution_views import (attribution_html, explanations_table,
                                                    plot_attributions)
from mlclf_utils.explain.attributions import Explainer, Explanation
from mlclf_utils.errors import DataError, ParameterError, TruncationWarning

LABELS = ["alpha", "beta", "gamma"]
FILLER = "the a simple fast tool for program file data text user system library".split()
TEXT = "a zorblat library for unbelievably quick graphics"  # zorblat, unbelievably: word pieces


def _texts(n=160, seed=0):
    rng = np.random.default_rng(seed)
    texts, targets = [], []
    for _ in range(n):
        words = list(rng.choice(FILLER, size=int(rng.integers(3, 7))))
        alpha, beta = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        if alpha:
            words.insert(int(rng.integers(0, len(words) + 1)), "zorblat")
        if beta:
            words.insert(int(rng.integers(0, len(words) + 1)), "lantern")
        texts.append(" ".join(words))
        targets.append([float(alpha), float(beta), float(alpha and beta)])
    return texts, torch.tensor(targets)


@pytest.fixture(scope="module")
def fitted(tiny_model_dir):
    """Tiny DistilBERT after a few quick epochs: alpha <-> "zorblat", beta <-> "lantern".

    Fitted gently (probabilities well inside (0, 1)): a model that jumps from 0 to 1 within a
    short stretch of the integration path needs far more steps to pass the completeness check.
    """
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokenizer = encoders.load_tokenizer(encoders.TINY_MODEL)
    model = encoders.load_classifier(encoders.TINY_MODEL, LABELS)
    texts, y = _texts()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    model.train()
    for _ in range(6):
        for start in range(0, len(texts), 16):
            batch = tokenizer(texts[start:start + 16], padding=True, return_tensors="pt")
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(**batch).logits, y[start:start + 16])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def explainer(fitted):
    model, tokenizer = fitted
    return Explainer(model, tokenizer, n_steps=50)


def _check_completeness(e: Explanation, tolerance: float):
    change = e.probability - e.baseline_probability
    # Captum's delta is exactly this gap, so our probabilities and its forward agree ...
    assert e.token_attributions.sum() - change == pytest.approx(e.delta, abs=1e-5)
    # ... and the gap is small.
    assert abs(e.token_attributions.sum() - change) <= tolerance * max(abs(change), 1e-2)
    assert e.delta_ok


@pytest.mark.parametrize("text, label", [("lantern tool", "beta"), ("zorblat lantern data", 2)])
def test_completeness_tiny_distilbert(explainer, text, label):
    e = explainer.explain(text, label)
    assert e.probability - e.baseline_probability > 0.3  # a change worth explaining
    _check_completeness(e, 1e-2)
    # The baseline keeps [CLS]/[SEP], so the specials get exactly zero attribution.
    assert e.token_attributions[0] == 0 and e.token_attributions[-1] == 0


@pytest.mark.slow
def test_completeness_minilm(minilm_dir, untrained):
    torch.set_num_threads(1)
    model = untrained.classifier(encoders.DEFAULT_MODEL, LABELS)  # scores spread away from 0.5
    tokenizer = encoders.load_tokenizer(encoders.DEFAULT_MODEL)
    text = "A command line tool to edit text files"
    # 20 steps hold completeness to a few percent of the change (measured: 1.6 %) ...
    quick = Explainer(model, tokenizer, n_steps=20, delta_tolerance=5e-2).explain(text, 1)
    assert abs(quick.probability - quick.baseline_probability) > 1e-2
    _check_completeness(quick, 5e-2)
    # ... and the default 50 to about 1e-5 of it: Gauss-Legendre converges fast.
    default = Explainer(model, tokenizer).explain(text, 1)
    _check_completeness(default, 1e-3)
    assert default.probability == pytest.approx(quick.probability, abs=1e-6)


def test_word_merging(explainer):
    e = explainer.explain(TEXT + " lantern 🦜!", "beta")
    assert any(t.startswith("##") for t in e.tokens)
    assert e.tokens[0] == "[CLS]" and e.tokens[-1] == "[SEP]"
    assert len(e.tokens) == len(e.token_attributions)
    assert e.words == TEXT.split() + ["lantern", "🦜", "!"]  # [UNK] is a word; no specials
    assert len(e.words) == len(e.word_attributions)
    assert e.word_attributions.sum() == pytest.approx(e.token_attributions.sum(), abs=1e-9)
    pieces = [i for i, t in enumerate(e.tokens) if t in ("z", "##or", "##bla", "##t")]
    assert e.word_attributions[1] == pytest.approx(e.token_attributions[pieces].sum())
    assert e.top_words(1)[0][0] == "lantern"


def test_words_keep_the_texts_spelling(explainer):
    e = explainer.explain("Naïve ZORBLAT, C++", 0)
    assert e.words == ["Naïve", "ZORBLAT", ",", "C", "+", "+"]


def test_truncation_like_training(explainer):
    long_text = " ".join(["zorblat"] + ["library"] * 40)
    with pytest.warns(TruncationWarning, match="longer than max_length"):
        e = Explainer(explainer.model, explainer.tokenizer, n_steps=8, max_length=12,
                      delta_tolerance=1.0).explain(long_text, "alpha")
    assert len(e.tokens) == 12 and e.tokens[-1] == "[SEP]"
    assert e.words == ["zorblat"] + ["library"] * 6


def test_target_is_one_labels_sigmoid(explainer, fitted):
    model, tokenizer = fitted
    with torch.no_grad():
        logits = model(**tokenizer(TEXT, return_tensors="pt")).logits
    a, b = explainer.explain(TEXT, "alpha"), explainer.explain(TEXT, 1)
    assert a.probability == pytest.approx(float(torch.sigmoid(logits)[0, 0]), abs=1e-6)
    assert b.probability == pytest.approx(float(torch.sigmoid(logits)[0, 1]), abs=1e-6)
    assert (a.label, a.label_index, b.label, b.label_index) == ("alpha", 0, "beta", 1)
    assert not np.allclose(a.token_attributions, b.token_attributions)
    # Not a softmax: the labels' probabilities do not have to sum to one.
    assert float(torch.sigmoid(logits).sum()) != pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("label, match", [(3, r"0\.\.2"), (-1, r"0\.\.2"), ("delta", "alpha"),
                                          (True, "index"), (1.0, "index")])
def test_bad_labels(explainer, label, match):
    with pytest.raises(ParameterError, match=match):
        explainer.explain(TEXT, label)


@pytest.mark.parametrize("text", ["", "   \n", None])
def test_bad_texts(explainer, text):
    with pytest.raises(DataError):
        explainer.explain(text, 0)


class NoEmbeddings(torch.nn.Module):
    """Looks like a transformers model, but has no input embeddings to attribute to."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def get_input_embeddings(self):
        return None

    def forward(self, **kwargs):
        return self.inner(**kwargs)


def test_model_without_input_embeddings(fitted):
    model, tokenizer = fitted
    with pytest.raises(ParameterError, match="NoEmbeddings.*get_input_embeddings"):
        Explainer(NoEmbeddings(model), tokenizer)
    with pytest.raises(ParameterError, match="Linear"):
        Explainer(torch.nn.Linear(2, 2), tokenizer)


def test_bad_parameters(fitted):
    model, tokenizer = fitted
    for kw in ({"n_steps": 0}, {"internal_batch_size": 0}, {"max_length": 0},
               {"delta_tolerance": 0}, {"max_length": 10**5}):
        with pytest.raises(ParameterError, match=next(iter(kw))):
            Explainer(model, tokenizer, **kw)


def test_unconverged_explanations_are_flagged(fitted):
    model, tokenizer = fitted
    rough = Explainer(model, tokenizer, n_steps=1, delta_tolerance=1e-6)
    with pytest.warns(UserWarning, match="1 of 1 explanations fail the completeness check"):
        e = rough.explain(TEXT, "alpha")
    assert not e.delta_ok


def test_explain_many_and_model_dir(fitted, tmp_path):
    model, tokenizer = fitted
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "hyperparameters.json").write_text(json.dumps({"max_length": 24}))
    explainer = Explainer.from_model_dir(tmp_path, n_steps=32)
    assert explainer.labels == LABELS and explainer.max_length == 24
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing truncated, everything converged
        many = explainer.explain_many([(TEXT, "alpha"), ("lantern tool", "beta")], progress=False)
    assert [e.label for e in many] == ["alpha", "beta"]
    with pytest.warns(TruncationWarning, match="1 of 2 texts were longer"):
        explainer.explain_many([(TEXT, 0), (" ".join(["text"] * 40), 0)], progress=False)
    with pytest.raises(ParameterError, match="items"):
        explainer.explain_many([TEXT], progress=False)
    with pytest.raises(DataError, match="config.json"):
        Explainer.from_model_dir(tmp_path / "nowhere")


def test_figure_html_and_table(explainer, tmp_path):
    explanations = [explainer.explain(TEXT, "alpha"), explainer.explain("lantern & <b>tool</b>", 1)]
    fig = plot_attributions(explanations, tmp_path / "fig" / "attributions.png", max_words=5)
    png = tmp_path / "fig" / "attributions.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "zorblat" in texts and any("+2 words" in t for t in texts)
    assert any(t.startswith("alpha:") and "delta" in t for t in texts)

    html = attribution_html(explanations, kinds={0: "fp", 1: "fn"},
                            true_labels=[["beta"], ["beta"]]).data
    for word in ("zorblat", "unbelievably", "lantern"):
        assert word in html
    assert "&lt;" in html and "<b>tool" not in html  # words are escaped
    assert "false positive" in html and "false negative" in html and "beta" in html

    table = explanations_table(explanations)
    assert len(table) == len(explanations[0].words) + len(explanations[1].words)
    assert {"text_id", "label", "word", "attribution", "probability", "delta",
            "delta_ok"} <= set(table.columns)
    first = table[table["text_id"] == 0]
    assert first["word"].tolist() == explanations[0].words
    assert first["attribution"].to_numpy() == pytest.approx(explanations[0].word_attributions)
    with pytest.raises(ParameterError):
        plot_attributions([])


def test_04_and_05_read_the_same_max_length_from_a_model_folder(fitted, tmp_path):
    """One rule for inference in 04 (Classifier) and 05 (Explainer): hyperparameters.json, else
    the model's limit (05 once fell back to 128 and 04 to the model's limit)."""
    from mlclf_utils.serving.predict import Classifier

    model, tokenizer = fitted
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (Explainer.from_model_dir(tmp_path).max_length
            == Classifier.from_model_dir(tmp_path).max_length == model.config.max_position_embeddings)
    # A model passed in memory has no folder to read a cut from: the model's own limit, not 128.
    assert Explainer(model, tokenizer).max_length == model.config.max_position_embeddings
    (tmp_path / "hyperparameters.json").write_text(json.dumps({"max_length": 40}))
    assert Explainer.from_model_dir(tmp_path).max_length == Classifier.from_model_dir(tmp_path).max_length == 40


# --- the batched path (default) against Captum one pair at a time -------------------------------

ATTRIBUTION_TOLERANCE = 1e-5  # float32 sums taken in another order; the values are ~1e-2..1


def _assert_same(batched: list[Explanation], reference: list[Explanation]):
    assert [(e.text, e.label) for e in batched] == [(e.text, e.label) for e in reference]
    for b, r in zip(batched, reference):
        assert b.tokens == r.tokens and b.words == r.words
        np.testing.assert_allclose(b.token_attributions, r.token_attributions, rtol=0,
                                   atol=ATTRIBUTION_TOLERANCE)
        assert b.delta == pytest.approx(r.delta, abs=ATTRIBUTION_TOLERANCE)
        assert b.probability == pytest.approx(r.probability, abs=1e-6)
        assert b.baseline_probability == pytest.approx(r.baseline_probability, abs=1e-6)
        assert b.delta_ok == r.delta_ok


def _pair_of_explainers(model, tokenizer, **kw):
    """The batched path on Captum's rule, and Captum itself: equal node for node."""
    return (Explainer(model, tokenizer, quadrature="gausslegendre", **kw),
            Explainer(model, tokenizer, batched=False, **kw))


def test_the_default_rule_is_transplanted_and_captum_has_only_its_own(fitted):
    model, tokenizer = fitted
    assert Explainer(model, tokenizer).quadrature == "transplanted"
    assert Explainer(model, tokenizer, batched=False).quadrature == "gausslegendre"
    with pytest.raises(ParameterError, match="quadrature.*only 'gausslegendre'"):
        Explainer(model, tokenizer, batched=False, quadrature="transplanted")
    with pytest.raises(ParameterError, match="quadrature.*must be one of"):
        Explainer(model, tokenizer, quadrature="riemann")


def test_both_rules_converge_to_the_same_attributions(fitted):
    """The transplanted nodes and weights are a rule for the same integral: with many steps
    both land on Gauss-Legendre's 256-step attributions, far closer than one step lands."""
    model, tokenizer = fitted
    items = [(TEXT, "alpha"), (TEXT, "beta"), ("lantern tool data", 2)]

    def attributions(quadrature, n):
        explainer = Explainer(model, tokenizer, n_steps=n, quadrature=quadrature,
                              delta_tolerance=1.0)
        return [e.token_attributions for e in explainer.explain_many(items, progress=False)]

    reference = attributions("gausslegendre", 256)
    fine = [attributions(rule, 64) for rule in ("transplanted", "gausslegendre")]
    coarse = attributions("transplanted", 1)  # the tolerance below can tell rules apart
    for r, t, g, c in zip(reference, *fine, coarse):
        errors = [np.abs(x - r).max() for x in (t, g)]
        assert max(errors) < 1e-4  # both settle within ~4e-5 of it on this tiny model
        assert np.abs(c - r).max() > 10 * max(errors)


def test_the_transplanted_rule_packs_as_it_explains_one_pair(fitted):
    model, tokenizer = fitted
    explainer = Explainer(model, tokenizer, n_steps=12, max_length=24, internal_batch_size=1,
                          delta_tolerance=1.0)
    items = [(TEXT, "alpha"), ("lantern", "beta"), ("a zorblat library for text", 2),
             (TEXT, "beta")]
    _assert_same(explainer.explain_many(items, progress=False),
                 [explainer.explain(text, label) for text, label in items])


def test_batched_equals_per_pair_for_every_label_of_one_text(fitted):
    model, tokenizer = fitted
    batched, per_pair = _pair_of_explainers(model, tokenizer, n_steps=8, delta_tolerance=1.0)
    assert batched.batched and not per_pair.batched
    items = [(TEXT, "alpha"), (TEXT, "beta"), (TEXT, 2)]
    explained = batched.explain_many(items, progress=False)
    _assert_same(explained, per_pair.explain_many(items, progress=False))
    # three different answers, not one label's attributions copied three times
    assert not np.allclose(explained[0].token_attributions, explained[1].token_attributions)


def test_batched_equals_per_pair_for_packed_texts_of_different_lengths(fitted):
    """Texts of 6 to 9 tokens share a pack (padded to 9, pads masked); 7 steps over 2 rows per
    pass (internal_batch_size=1 row of max_length=24 tokens) cut passes across texts."""
    from mlclf_utils.explain import batched_ig

    model, tokenizer = fitted
    texts = ["lantern tool data", "zorblat lantern the simple", "a zorblat library for text",
             "lantern", "the fast zorblat tool for user system library program file data"]
    batched, per_pair = _pair_of_explainers(model, tokenizer, n_steps=7, max_length=24,
                                            internal_batch_size=1, delta_tolerance=1.0)
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    jobs = [batched_ig.Job(ids=(0,) * n, baseline_ids=(0,) * n, labels=(0,)) for n in lengths]
    packs = batched_ig.pack_jobs(jobs)
    assert any(len({lengths[i] for i in pack}) > 1 for pack in packs)  # lengths really mixed
    assert sorted(i for pack in packs for i in pack) == list(range(len(texts)))
    items = [(t, i % 3) for i, t in enumerate(texts)] + [(texts[1], "alpha")]
    _assert_same(batched.explain_many(items, progress=False),
                 per_pair.explain_many(items, progress=False))
    # and every row of a pass in one go gives the same numbers as 2 rows per pass
    one_pass = Explainer(model, tokenizer, n_steps=7, max_length=24, internal_batch_size=None,
                         delta_tolerance=1.0, quadrature="gausslegendre")
    _assert_same(one_pass.explain_many(items, progress=False),
                 per_pair.explain_many(items, progress=False))


def test_explain_many_keeps_the_order_asked(explainer):
    """Pairs grouped by text and packed by length internally come back as asked, duplicates
    included; 05's explain_mistakes relies on it (its kinds are keyed by position)."""
    items = [("lantern tool", "beta"), (TEXT, "alpha"), ("lantern tool", "alpha"),
             (TEXT + " lantern", 2), (TEXT, "alpha"), ("lantern tool", "beta")]
    many = explainer.explain_many(items, progress=False)
    assert [(e.text, e.label_index) for e in many] == [(t, explainer.label_index(k))
                                                         for t, k in items]
    single = [explainer.explain(t, k) for t, k in items[:2]]
    for e, s in zip(many, single):
        np.testing.assert_allclose(e.token_attributions, s.token_attributions, rtol=0,
                                   atol=ATTRIBUTION_TOLERANCE)
    np.testing.assert_array_equal(many[1].token_attributions, many[4].token_attributions)


def test_05_explains_its_pairs_in_order(explainer, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mlclf_utils.data import windows
    from mlclf_utils.stages import explain as explain_stage

    monkeypatch.setattr(windows, "read_settings", lambda folder: None)  # texts read whole
    items = [(TEXT, "beta"), ("lantern tool", "beta"), (TEXT, "alpha")]
    explained = explain_stage.explain_mistakes(SimpleNamespace(out_dir=tmp_path, data_dir=tmp_path),
                                               explainer,
                                               items, progress=False)
    assert [(e.text, e.label) for e in explained] == items
    table = pd.read_parquet(tmp_path / artifacts.ATTRIBUTIONS)
    assert table.groupby("text_id")["label"].first().tolist() == ["beta", "beta", "alpha"]


def test_explicit_token_ids(explainer):
    """A token window given as ids is explained like the text it encodes."""
    e = explainer.explain("zorblat lantern data", "gamma")
    ids = explainer.tokenizer("zorblat lantern data")["input_ids"]
    (beta, gamma) = explainer.attribute_token_ids(ids, ["beta", "gamma"])
    np.testing.assert_allclose(gamma.token_attributions, e.token_attributions, rtol=0,
                               atol=ATTRIBUTION_TOLERANCE)
    assert gamma.delta == pytest.approx(e.delta, abs=ATTRIBUTION_TOLERANCE)
    assert not np.allclose(beta.token_attributions, gamma.token_attributions)
    with pytest.raises(ParameterError, match="ids"):
        explainer.attribute_token_ids([], [0])
    with pytest.raises(ParameterError, match="batched"):
        Explainer(explainer.model, explainer.tokenizer, batched="yes")


@pytest.mark.slow
def test_batched_equals_per_pair_minilm(minilm_dir, untrained):
    torch.set_num_threads(1)
    model = untrained.classifier(encoders.DEFAULT_MODEL, LABELS)
    tokenizer = encoders.load_tokenizer(encoders.DEFAULT_MODEL)
    batched, per_pair = _pair_of_explainers(model, tokenizer, n_steps=6, delta_tolerance=1.0)
    items = [("A command line tool to edit text files", 0), ("A command line tool to edit text "
             "files", 2), ("Graphical viewer for images", 1), ("Graphical image viewer", 1)]
    _assert_same(batched.explain_many(items, progress=False),
                 per_pair.explain_many(items, progress=False))
