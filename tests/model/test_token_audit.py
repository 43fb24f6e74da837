"""A planted shortcut: "alpha" is present exactly when the made-up word "zorblat" is (apart from
a few planted exceptions). After the tiny DistilBERT learns that, the audit must name the word
first for its class, and the hard-negative search must return exactly the planted exceptions.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from mlclf_utils.explain import hard_negatives, token_audit
from mlclf_utils.modeling import encoders
from mlclf_utils.explain.attributions import Explainer
from mlclf_utils.errors import DataError, ParameterError

LABELS = ["alpha", "beta"]
TRIGGER = "zorblat"  # word pieces z ##or ##bla ##t: exercises word merging too
BETA_WORD = "lantern"
FILLER = ("the a simple fast small tool for and with of program file data text user system "
          "library server editor viewer image network manager package support module plugin "
          "command line interface graphical quick light open free modern basic").split()


def make_text(rng, *, trigger: bool, beta: bool) -> str:
    words = list(rng.choice(FILLER, size=int(rng.integers(5, 9))))
    for word, present in ((TRIGGER, trigger), (BETA_WORD, beta)):
        if present:
            words.insert(int(rng.integers(0, len(words) + 1)), word)
    return " ".join(words)


def make_train(seed=0, n=300):
    rng = np.random.default_rng(seed)
    texts, label_sets = [], []
    for _ in range(n):
        alpha, beta = bool(rng.random() < 0.35), bool(rng.random() < 0.35)
        texts.append(make_text(rng, trigger=alpha, beta=beta))
        label_sets.append([x for x, on in zip(LABELS, (alpha, beta)) if on])
    planted = []
    for i in range(5):  # the trigger without the label: the hard negatives to find
        texts.append(make_text(rng, trigger=True, beta=i % 2 == 0))
        label_sets.append(["beta"] if i % 2 == 0 else [])
        planted.append(f"train:{len(texts)}")
    # Look-alikes that must not match: another word, and the trigger glued to a longer word.
    for text in (f"the {TRIGGER}s viewer", f"a {TRIGGER}ian tool"):
        texts.append(text)
        label_sets.append([])
    ids = [f"train:{i + 1}" for i in range(len(texts))]
    return texts, label_sets, ids, planted


def fit(model, tokenizer, texts, label_sets, *, epochs=8, batch_size=16, seed=0):
    torch.manual_seed(seed)
    y = torch.tensor([[float(x in s) for x in LABELS] for s in label_sets])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(texts)).tolist()
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in rows], padding=True, return_tensors="pt")
            loss = loss_fn(model(**batch).logits, y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return model


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    torch.set_num_threads(1)
    texts, label_sets, ids, planted = make_train()
    torch.manual_seed(0)
    tokenizer = encoders.load_tokenizer(encoders.TINY_MODEL)
    model = fit(encoders.load_classifier(encoders.TINY_MODEL, LABELS), tokenizer, texts, label_sets)
    return model, tokenizer, (texts, label_sets, ids, planted)


@pytest.fixture(scope="module")
def explained(trained):
    """Held-out texts explained for both labels, with kinds from the model's own predictions."""
    model, tokenizer, _ = trained
    rng = np.random.default_rng(1)
    cases = ([(make_text(rng, trigger=True, beta=False), ["alpha"]) for _ in range(6)]
             + [(make_text(rng, trigger=False, beta=True), ["beta"]) for _ in range(4)]
             + [(make_text(rng, trigger=False, beta=False), []) for _ in range(3)])
    # Unseen hard negatives: the trigger without the label should fool the model (FPs).
    unseen = [make_text(rng, trigger=True, beta=False) for _ in range(3)]
    cases += [(text, []) for text in unseen]
    # A fitted model jumps from p ~ 0 to ~ 1 within a short stretch of the path, which few
    # integration steps resolve only roughly; the ranking does not need more precision, so the
    # completeness warnings are not this test's business (test_attributions checks them).
    explainer = Explainer(model, tokenizer, n_steps=32, internal_batch_size=32)
    items = [(text, label) for text, _ in cases for label in LABELS]
    truths = [label in true_labels for _, true_labels in cases for label in LABELS]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*completeness check")
        explanations = explainer.explain_many(items, progress=False)
    kinds = {}
    for i, (truth, e) in enumerate(zip(truths, explanations)):
        predicted = e.probability >= 0.5
        kinds[i] = {(True, True): "tp", (False, True): "fp", (True, False): "fn",
                    (False, False): "tn"}[(truth, predicted)]
    return explanations, kinds


def test_the_model_learned_the_trigger(explained):
    explanations, kinds = explained
    alpha = [e for e in explanations if e.label == "alpha"]
    with_trigger = [e.probability for e in alpha if TRIGGER in e.text]
    without = [e.probability for e in alpha if TRIGGER not in e.text]
    assert min(with_trigger) > 0.8 and max(without) < 0.2
    assert list(kinds.values()).count("fp") >= 3  # the unseen hard negatives


def test_the_audit_ranks_the_trigger_first(trained, explained):
    _, _, (texts, label_sets, _, _) = trained
    explanations, kinds = explained
    audit = token_audit.audit_tokens(explanations, texts, label_sets, kinds=kinds)
    top = token_audit.top_tokens_per_class(audit, n=3)
    alpha = top[top["class"] == "alpha"]
    assert alpha["token"].iloc[0] == TRIGGER
    assert top[top["class"] == "beta"]["token"].iloc[0] == BETA_WORD
    row = audit[(audit["class"] == "alpha") & (audit["token"] == TRIGGER)].iloc[0]
    assert row["train_occurrences"] == sum(TRIGGER in t.split() for t in texts)
    assert row["exclusivity"] == pytest.approx(
        sum("alpha" in s for t, s in zip(texts, label_sets) if TRIGGER in t.split())
        / row["train_occurrences"])
    # Not every false positive names the trigger: where the all-[PAD] baseline already scores
    # high (the model never saw attended [PAD]s), F(text) - F(baseline) is ~0 and so are the
    # attributions.
    assert row["lift"] > 2 and row["fp_driver"] >= 1
    assert row["suspicious"]
    # Only the trigger is flagged for alpha: filler words have no lift and drive nothing.
    assert audit[(audit["class"] == "alpha") & audit["suspicious"]]["token"].tolist() == [TRIGGER]
    # Sorted per class by mean positive attribution.
    for _, part in audit.groupby("class"):
        assert part["mean_positive_attribution"].is_monotonic_decreasing


def test_hard_negatives_are_exactly_the_planted_texts(trained, explained, tmp_path):
    _, _, (texts, label_sets, ids, planted) = trained
    explanations, kinds = explained
    audit = token_audit.audit_tokens(explanations, texts, label_sets, kinds=kinds)
    pairs = list(audit.loc[audit["suspicious"], ["class", "token"]].itertuples(index=False))
    table = hard_negatives.find_hard_negatives(texts, label_sets, ids,
                                               [(c, t) for c, t in pairs if c == "alpha"])
    assert sorted(table["source_id"]) == sorted(planted)
    assert all("alpha" not in labels for labels in table["labels"])
    path = hard_negatives.save_hard_negatives(table, tmp_path / "hard_negatives.csv")
    assert path.read_text().count("\n") == len(planted) + 1


def test_audit_without_kinds_and_rare_words(trained, explained, tmp_path):
    _, _, (texts, label_sets, _, _) = trained
    explanations, _ = explained
    audit = token_audit.audit_tokens(explanations, texts, label_sets, min_occurrences=10**6)
    assert audit.empty and audit.attrs["dropped_rare_tokens"] > 0
    audit = token_audit.audit_tokens(explanations, texts, label_sets)
    assert (audit["fp_driver"] == 0).all()
    assert "not checked" in audit.attrs["rule"]
    assert audit[(audit["class"] == "alpha") & (audit["token"] == TRIGGER)]["suspicious"].all()
    fig = token_audit.plot_top_tokens(audit, tmp_path / "top.png", n=4)
    assert (tmp_path / "top.png").stat().st_size > 1000 and len(fig.axes) >= 2
    token_audit.plot_top_tokens(audit, None, classes="alpha")
    with pytest.raises(ParameterError, match="gamma"):
        token_audit.plot_top_tokens(audit, None, classes=["gamma"])


def test_audit_input_checks(trained, explained):
    _, _, (texts, label_sets, _, _) = trained
    explanations, _ = explained
    with pytest.raises(ParameterError, match="explanations"):
        token_audit.audit_tokens([], texts, label_sets)
    with pytest.raises(DataError, match="train_label_sets"):
        token_audit.audit_tokens(explanations, texts, label_sets[:-1])
    with pytest.raises(ParameterError, match="kinds"):
        token_audit.audit_tokens(explanations, texts, label_sets, kinds={0: "false positive"})
    with pytest.raises(ParameterError, match="kinds"):
        token_audit.audit_tokens(explanations, texts, label_sets, kinds={10**6: "fp"})
    with pytest.raises(DataError, match="audit table"):
        token_audit.top_tokens_per_class(pd.DataFrame({"x": [1]}))


def test_words_match_the_explanations(explained):
    explanations, _ = explained
    for e in explanations:
        assert [w.lower() for w in e.words] == token_audit.words_of(e.text)
