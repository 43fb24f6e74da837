"""The model-based label audit (issue 12, item 4) on cleanlab itself and real files: planted
label errors in the smoke CSV come out at the top, the degenerate label sets cleanlab refuses
are handled, and 04's held-out audit writes its files."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlclf_utils import artifacts
from mlclf_utils.data import label_audit, out_of_fold
from mlclf_utils.errors import DataError, ParameterError

MISSING, WRONG = label_audit.MISSING, label_audit.WRONG


def _smoke(smoke_csv):
    table = pd.read_csv(smoke_csv)
    lists = [tags.split(",") for tags in table["tags"]]
    names = sorted({label for labels in lists for label in labels})
    y = np.array([[int(n in labels) for n in names] for labels in lists], dtype=np.int8)
    ids = [f"{smoke_csv.name}:{i + 1}" for i in range(len(table))]  # as 01's sources name rows
    return table["description"].tolist(), y, names, ids


def _plant(y, names, ids, seed=1):
    """Remove six positives whose phrase stays in the text and add three labels without one."""
    y = y.copy()
    rng = np.random.default_rng(seed)
    planted = []
    for label in ("audio", "network", "database", "web", "video", "security"):
        j = names.index(label)
        i = int(rng.choice(np.flatnonzero(y[:, j] == 1)))
        y[i, j] = 0
        planted.append((ids[i], label, MISSING))
    for label in ("audio", "database", "video"):
        j = names.index(label)
        i = int(rng.choice(np.flatnonzero(y[:, j] == 0)))
        y[i, j] = 1
        planted.append((ids[i], label, WRONG))
    return y, planted


def _audit(texts, y, names, ids):
    oof = out_of_fold.out_of_fold_probabilities(texts, y, names, folds=5, seed=42)
    return label_audit.find_issues(y[:, oof.columns], oof.probabilities, oof.labels,
                                   source_ids=ids, texts=texts), oof


@pytest.fixture(scope="module")
def planted_audit(smoke_csv):
    texts, y, names, ids = _smoke(smoke_csv)
    noisy, planted = _plant(y, names, ids)
    issues, oof = _audit(texts, noisy, names, ids)
    return issues, oof, planted, (texts, y, names, ids), noisy


def test_planted_label_errors_are_ranked_at_the_top(planted_audit):
    issues, _, planted, _, _ = planted_audit
    assert list(issues.columns) == label_audit.COLUMNS
    found = {(s, label): (kind, rank) for s, label, kind, rank
             in zip(issues["source_id"], issues["label"], issues["issue"], issues["rank"])}
    for source_id, label, kind in planted:
        assert (source_id, label) in found, f"planted {kind} {label!r} of {source_id} not flagged"
        assert found[source_id, label][0] == kind
    # The fixture's own conflicting duplicate (row 401 repeats row 21 with other labels) is the
    # only unplanted text allowed among them.
    top = issues.head(len(planted) + 2)
    assert {(s, label) for s, label, _ in planted} <= set(zip(top["source_id"], top["label"]))
    assert set(top["source_id"]) - {s for s, _, _ in planted} <= {"smoke_packages.csv:401"}
    assert issues["rank"].tolist() == list(range(1, len(issues) + 1))
    assert issues["score"].is_monotonic_increasing
    missing = issues[issues["issue"] == MISSING]
    assert (missing["given"] == label_audit.ABSENT).all() and (missing["probability"] > 0.5).all()


def test_without_the_planting_those_pairs_are_not_flagged(planted_audit):
    _, _, planted, (texts, y, names, ids), _ = planted_audit
    clean, _ = _audit(texts, y, names, ids)
    flagged = set(zip(clean["source_id"], clean["label"]))
    assert not {(s, label) for s, label, _ in planted} & flagged


def test_a_label_with_fewer_positives_than_folds_is_named_not_audited(planted_audit):
    _, oof, _, _, _ = planted_audit
    assert "accessibility" not in oof.labels  # three positives, five folds
    assert oof.excluded == {"accessibility": out_of_fold.TOO_FEW_POSITIVES}
    summary = oof.summary()
    assert summary["labels_not_audited"] == 1
    assert summary["not_audited_by_reason"][out_of_fold.TOO_FEW_POSITIVES]["labels"] == \
        ["accessibility"]


def _two_groups(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.int8)
    probs = np.where(y == 1, 0.9, 0.1) + rng.normal(0, 0.03, n)
    return y, np.clip(probs, 0.001, 0.999)


def test_a_single_label_is_audited_although_cleanlab_refuses_one_class():
    y, probs = _two_groups()
    y[3], probs[3] = 0, 0.99  # absent, the model sure it applies
    y[7], probs[7] = 1, 0.01  # given, the model sure it does not
    issues = label_audit.find_issues(y[:, None], probs[:, None], ["only"],
                                     source_ids=[f"r{i}" for i in range(len(y))],
                                     texts=["t"] * len(y))
    assert set(issues["label"]) == {"only"}
    kinds = dict(zip(issues["source_id"], issues["issue"]))
    assert kinds["r3"] == MISSING and kinds["r7"] == WRONG


def test_one_label_per_text_works_like_any_label_set():
    y1, p1 = _two_groups(seed=1)
    y = np.column_stack([y1, 1 - y1]).astype(np.int8)  # every text carries exactly one label
    probs = np.column_stack([p1, 1 - p1])
    probs[5] = [0.98, 0.02] if y[5, 0] else [0.02, 0.98]  # the model is sure of the label...
    y[5] = [0, 1] if y[5, 0] else [1, 0]  # ...that was swapped
    issues = label_audit.find_issues(y, probs, ["a", "b"], source_ids=list(map(str, range(120))),
                                     texts=["t"] * 120)
    assert set(issues.loc[issues["source_id"] == "5", "issue"]) == {MISSING, WRONG}


def test_no_label_or_no_positive_gives_an_empty_table():
    empty = label_audit.find_issues(np.zeros((4, 0)), np.zeros((4, 0)), [], source_ids=list("abcd"),
                                    texts=list("abcd"))
    assert empty.empty and list(empty.columns) == label_audit.COLUMNS
    none = label_audit.find_issues(np.zeros((4, 2)), np.full((4, 2), 0.5), ["x", "y"],
                                   source_ids=list("abcd"), texts=list("abcd"))
    assert none.empty


@pytest.mark.parametrize("probs, message", [
    (np.full((3, 2), 1.5), "within"), (np.full((3, 3), 0.5), "must both be"),
    (np.array([[0.5, np.nan]] * 3), "finite"),
])
def test_bad_inputs_are_refused_with_what_is_wrong(probs, message):
    with pytest.raises(DataError, match=message):
        label_audit.find_issues(np.zeros((3, 2)), probs, ["x", "y"], source_ids=list("abc"),
                                texts=list("abc"))


@pytest.mark.parametrize("switch, folds, name", [
    ("yes", 5, "label_audit"), (True, 1, "label_audit_folds"), (True, 2.0, "label_audit_folds"),
    (True, True, "label_audit_folds"),
])
def test_parameters_are_checked_by_name(switch, folds, name):
    with pytest.raises(ParameterError, match=f"parameter {name}="):
        label_audit.check_parameters(switch, folds)


def test_the_table_and_figure_are_written_and_read_back(tmp_path, planted_audit):
    issues = planted_audit[0]
    path = label_audit.save_issues(issues, tmp_path / "quality" / "label_audit.csv")
    back = label_audit.read_issues(path)
    pd.testing.assert_frame_equal(back, issues, check_dtype=False)
    figure = tmp_path / "label_audit.png"
    label_audit.plot_issues_per_label(issues, (), figure, title="t")
    assert figure.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(DataError, match="label_audit.csv"):
        label_audit.read_issues(tmp_path / "label_audit.csv")


def test_issues_per_label_counts_each_kind():
    issues = pd.DataFrame({"label": ["a", "a", "b"], "issue": [MISSING, WRONG, MISSING]})
    counts = label_audit.issues_per_label(issues, ["a", "b", "c"])
    assert counts.to_dict("index") == {"a": {MISSING: 1, WRONG: 1}, "b": {MISSING: 1, WRONG: 0},
                                       "c": {MISSING: 0, WRONG: 0}}


def test_04s_audit_of_validation_and_test_writes_its_files(tmp_path, planted_audit):
    """04 has held-out probabilities already; here the out-of-fold ones stand in for them."""
    _, oof, planted, (texts, _, names, ids), noisy = planted_audit
    probs = np.zeros(noisy.shape)
    probs[:, oof.columns] = oof.probabilities
    probs[:, [j for j in range(noisy.shape[1]) if j not in oof.columns]] = 0.01
    half = len(texts) // 2
    parts = {"validation": slice(0, half), "test": slice(half, None)}
    out = tmp_path / artifacts.EVALUATE
    inputs = SimpleNamespace(
        y={k: noisy[s] for k, s in parts.items()}, labels=names, out_dir=out,
        splits={k: {"text": texts[s], "source_id": ids[s]} for k, s in parts.items()},
        figure=lambda name: out / artifacts.FIGURES_DIR / name)
    out.mkdir()
    issues, summary = label_audit.run_04(inputs, {k: probs[s] for k, s in parts.items()},
                                         min_support=5, show=False)
    assert set(issues["split"]) <= {"validation", "test"}
    assert {(s, label) for s, label, _ in planted} <= set(zip(issues["source_id"], issues["label"]))
    assert summary["not_audited"] == {"accessibility": "fewer than 5 positives"}
    assert (out / artifacts.HELD_OUT_LABEL_AUDIT).is_file()
    assert artifacts.read_json(out / artifacts.HELD_OUT_LABEL_AUDIT_SUMMARY)["issues"] == len(issues)
    assert (out / artifacts.FIGURES_DIR / label_audit.FIGURE).is_file()


def test_50000_labels_are_audited_sparsely_and_the_rare_ones_named(smoke_csv):
    """Issue 12, item 7's scale with min_label_count=1: the audit runs (on a sparse label
    matrix), and the labels the folds cannot support are counted, ten of them named."""
    from mlclf_utils.data.label_map import LabelMap

    texts, y, names, ids = _smoke(smoke_csv)
    rare = [[f"rare{i * 125 + k:05d}" for k in range(125)] for i in range(len(texts))]
    rare = rare[:400]  # 400 texts x 125 = 50,000 labels with one positive each
    table = pd.DataFrame({
        "source_id": ids[:400], "text": texts[:400], "split": "train",
        "labels": [[n for n, v in zip(names, row) if v] + extra for row, extra in zip(y, rare)]})
    label_map = LabelMap(sorted({label for labels in table["labels"] for label in labels}))
    assert len(label_map) > 50_000
    issues, summary = label_audit.audit_processed_table(table, label_map, folds=3, seed=0)
    assert summary["labels_audited"] == len(names) == 11  # the smoke data's own labels
    reason = summary["not_audited_by_reason"][out_of_fold.TOO_FEW_POSITIVES]
    assert reason["count"] == 50_000 and len(reason["labels"]) == 10
    assert set(issues["label"]) <= set(names)
