"""Shortcut tokens: words a class leans on because they happen to co-occur with it in train.

A word is suspicious for a class when three things hold at once:

1. **high attribution**: across the explanations of that class, the word's mean positive
   attribution is at least ``min_attribution_share`` (default half) of the class's highest;
2. **high lift**: in train, texts containing the word carry the class at least ``min_lift``
   (default 2) times as often as texts in general (``lift = P(class | word) / P(class)``);
3. **drives false positives**: it was the top positive word of at least one explanation marked
   ``"fp"`` in ``kinds``. Without ``kinds`` this cannot be judged, so the rule falls back to
   (1) and (2) and ``audit.attrs["rule"]`` says so.

Attribution alone flags honest evidence ("python" for a Python tag), lift alone flags every
rare word; together with false positives they point at what the model learned too well.

Words: explanations come with words merged from word pieces by the tokenizer (BERT-style
pre-tokenization: whitespace splits, every punctuation character is a word of its own). Train
texts are split into words with a regex that reproduces that rule, ``[^\\W_]+|[^\\w\\s]|_``, and
both sides are lowercased, so a word counted in train is the same word the explanations name.
(Two rare mismatches: non-ASCII symbols such as € stay attached to their neighbours in
BERT but not here, and scripts BERT splits per character, such as CJK, stay whole here.)
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlclf_utils.explain.explanation import Explanation, check_explanations
from mlclf_utils.errors import DataError, ParameterError, check_positive_int, require_columns

log = logging.getLogger(__name__)

WORD_RE = re.compile(r"[^\W_]+|[^\w\s]|_")
KINDS = ("fp", "fn", "tp", "tn")
MAX_PANELS = 12
COLUMNS = ["class", "token", "n_explanations", "mean_positive_attribution", "mean_attribution",
           "train_occurrences", "class_occurrences", "exclusivity", "class_prior", "lift",
           "fp_driver", "suspicious"]


def words_of(text: str) -> list[str]:
    """Lowercased words, split the way a BERT pre-tokenizer splits them."""
    return WORD_RE.findall(text.lower())


def check_train(train_texts, train_label_sets, *, extra: Sequence | None = None,
                extra_name: str = "") -> tuple[list[str], list[list[str]]]:
    """Texts and label lists of equal length, or an error naming the bad rows."""
    if isinstance(train_texts, str | bytes):
        raise ParameterError("train_texts", train_texts[:60], "pass a list of texts")
    texts = list(train_texts)
    label_sets = list(train_label_sets)
    if len(texts) != len(label_sets):
        raise DataError(f"train_texts has {len(texts)} entries but train_label_sets has "
                        f"{len(label_sets)}")
    if extra is not None and len(extra) != len(texts):
        raise DataError(f"train_texts has {len(texts)} entries but {extra_name} has {len(extra)}")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise DataError("train texts must be strings (rows are 0-based positions)", rows=bad)
    bad = [i for i, s in enumerate(label_sets)
           if isinstance(s, str | bytes) or not hasattr(s, "__iter__")]
    if bad:
        raise DataError("each label set must be a list of label names, not a string "
                        "(rows are 0-based positions)", rows=bad)
    return texts, [list(s) for s in label_sets]


def _explanation_words(e: Explanation) -> dict[str, float]:
    """Attribution per distinct lowercased word of one explanation (repeats summed)."""
    out: dict[str, float] = defaultdict(float)
    for word, value in zip(e.words, e.word_attributions):
        out[word.lower()] += float(value)
    return out


def audit_tokens(explanations, train_texts, train_label_sets, *, min_occurrences: int = 3,
                 kinds: dict | None = None, min_lift: float = 2.0,
                 min_attribution_share: float = 0.5) -> pd.DataFrame:
    """One row per (class, word) seen in the explanations of that class; see the module doc.

    A word's attribution in one explanation is the sum over its occurrences there.
    ``mean_positive_attribution`` averages ``max(attribution, 0)`` over the explanations of the
    class that contain the word. Words found in fewer than ``min_occurrences`` train texts are
    left out (their lift is noise); ``audit.attrs["dropped_rare_tokens"]`` counts them.
    Rows are sorted by class, then by mean positive attribution, highest first.
    """
    explanations = check_explanations(explanations)
    check_positive_int("min_occurrences", min_occurrences)
    kinds = dict(kinds or {}) if kinds is not None else None
    if kinds is not None:
        wrong = {i: k for i, k in kinds.items() if k not in KINDS}
        outside = [i for i in kinds if not (isinstance(i, int | np.integer)
                                            and 0 <= i < len(explanations))]
        if wrong:
            raise ParameterError("kinds", dict(list(wrong.items())[:5]), f"values must be {KINDS}")
        if outside:
            raise ParameterError("kinds", outside[:10],
                                 f"keys must be explanation positions 0..{len(explanations) - 1}")
    texts, label_sets = check_train(train_texts, train_label_sets)
    if not texts:
        raise DataError("there are no train texts to count words in")

    # Train side: in how many texts each word occurs, and how many of those carry each class.
    classes = {e.label for e in explanations}
    doc_freq: Counter = Counter()
    with_class: dict[str, Counter] = {c: Counter() for c in classes}
    class_rows: Counter = Counter()
    for text, labels in zip(texts, label_sets):
        words = set(words_of(text))
        doc_freq.update(words)
        for c in classes.intersection(labels):
            with_class[c].update(words)
            class_rows[c] += 1

    # Explanation side.
    per_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
    fp_driver: Counter = Counter()
    for i, e in enumerate(explanations):
        attr = _explanation_words(e)
        for word, value in attr.items():
            per_pair[(e.label, word)].append(value)
        if kinds is not None and kinds.get(i) == "fp" and attr:
            top_word, top_value = max(attr.items(), key=lambda kv: kv[1])
            if top_value > 0:
                fp_driver[(e.label, top_word)] += 1

    rows, dropped = [], 0
    n = len(texts)
    for (c, word), values in per_pair.items():
        occurrences = doc_freq.get(word, 0)
        if occurrences < min_occurrences:
            dropped += 1
            continue
        values = np.asarray(values)
        exclusivity = with_class[c][word] / occurrences
        prior = class_rows[c] / n
        rows.append({
            "class": c, "token": word, "n_explanations": len(values),
            "mean_positive_attribution": float(np.maximum(values, 0).mean()),
            "mean_attribution": float(values.mean()),
            "train_occurrences": int(occurrences), "class_occurrences": int(with_class[c][word]),
            "exclusivity": exclusivity, "class_prior": prior,
            "lift": exclusivity / prior if prior > 0 else float("nan"),
            "fp_driver": int(fp_driver[(c, word)]),
        })
    audit = pd.DataFrame(rows, columns=COLUMNS[:-1])
    if dropped:
        log.info("audit_tokens: %d (class, word) pairs left out: the word occurs in fewer than "
                 "%d train texts", dropped, min_occurrences)
    audit = audit.sort_values(["class", "mean_positive_attribution", "token"],
                              ascending=[True, False, True], kind="stable").reset_index(drop=True)
    best = audit.groupby("class")["mean_positive_attribution"].transform("max")
    high_attr = (audit["mean_positive_attribution"] > 0) & \
        (audit["mean_positive_attribution"] >= min_attribution_share * best)
    suspicious = high_attr & (audit["lift"] >= min_lift)
    if kinds is not None:
        suspicious &= audit["fp_driver"] > 0
        rule = (f"mean_positive_attribution >= {min_attribution_share} x the class's highest, "
                f"lift >= {min_lift}, fp_driver >= 1")
    else:
        rule = (f"mean_positive_attribution >= {min_attribution_share} x the class's highest, "
                f"lift >= {min_lift} (no kinds given, so false positives were not checked)")
    audit["suspicious"] = suspicious.astype(bool)
    audit.attrs = {"dropped_rare_tokens": dropped, "min_occurrences": min_occurrences,
                   "rule": rule}
    return audit


def _check_audit(audit) -> None:
    require_columns(audit, COLUMNS, "audit", "the audit table (from audit_tokens)")


def top_tokens_per_class(audit: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The n words with the highest mean positive attribution in each class."""
    _check_audit(audit)
    check_positive_int("n", n)
    ordered = audit.sort_values(["class", "mean_positive_attribution", "token"],
                                ascending=[True, False, True], kind="stable")
    return ordered.groupby("class", sort=True).head(n).reset_index(drop=True)


VIEW_COLUMNS = ["class", "token", "n_explanations", "mean_positive_attribution", "lift",
                "train_occurrences", "class_occurrences", "fp_driver", "suspicious"]
# The view's short names: the long ones made the table wider than a notebook's output, and the
# rule's columns (fp_driver, suspicious) sat behind a scrollbar. 05's narrative spells them out.
VIEW_NAMES = {"token": "word", "n_explanations": "n_expl", "mean_positive_attribution": "pos_attr",
              "train_occurrences": "n_train", "class_occurrences": "n_class"}


def top_tokens_view(audit: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """``top_tokens_per_class`` for reading: the columns the suspicion rule uses (``exclusivity``
    and ``class_prior`` are the two halves of ``lift``; token_audit.csv has them), rounded, under
    the short names of ``VIEW_NAMES``, indexed by (class, word) so that a class is named once."""
    top = top_tokens_per_class(audit, n)[VIEW_COLUMNS]
    top = top.round({"mean_positive_attribution": 3, "lift": 2}).rename(columns=VIEW_NAMES)
    return top.set_index(["class", VIEW_NAMES["token"]])


def suspicious_note(audit: pd.DataFrame) -> str:
    """How many (class, word) pairs are suspicious, by which rule, and how many rare words the
    audit left out (``audit_tokens`` only logs that count)."""
    _check_audit(audit)
    rule = audit.attrs.get("rule", "see token_audit.audit_tokens")
    note = (f"{int(audit['suspicious'].sum())} of {len(audit)} (class, word) pairs are "
            f"suspicious: {rule}")
    dropped = audit.attrs.get("dropped_rare_tokens")
    if dropped:
        note += (f"; {dropped} more pairs left out, their word being in fewer than "
                 f"{audit.attrs.get('min_occurrences')} train texts")
    return note


def plot_top_tokens(audit: pd.DataFrame, path=None, n: int = 5, classes=None):
    """One bar panel per class: mean positive attribution of its top words, lift written on
    the bar, suspicious words in red, so shortcut candidates stand out at a glance."""
    from mlclf_utils.figures import pyplot, save_figure

    plt, _ = pyplot()

    top = top_tokens_per_class(audit, n)
    available = list(dict.fromkeys(top["class"]))
    title = "Top words per class (red: suspicious shortcut)"
    if classes is None:
        # With hundreds of labels one figure cannot show them all: classes with a suspicious
        # word first, then the strongest attributions.
        rank = top.groupby("class").agg(s=("suspicious", "any"),
                                        a=("mean_positive_attribution", "max"))
        classes = rank.sort_values(["s", "a"], ascending=False, kind="stable").index.tolist()
        if len(classes) > MAX_PANELS:
            title += f"; {MAX_PANELS} of {len(classes)} classes, pass classes= for others"
            classes = classes[:MAX_PANELS]
    else:
        classes = [classes] if isinstance(classes, str) else list(classes)
        unknown = [c for c in classes if c not in available]
        if unknown:
            raise ParameterError("classes", unknown[:10],
                                 f"not in the audit; it has {available[:10]}")
    if not classes:
        raise DataError("the audit is empty: no words to plot",
                        hint="lower min_occurrences or explain more texts")
    cols = min(3, len(classes))
    rows = -(-len(classes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 0.45 * n * rows + 1.2 * rows),
                             squeeze=False)
    for ax, c in zip(axes.flat, classes):
        part = top[top["class"] == c].iloc[::-1]
        colours = ["tab:red" if s else "tab:gray" for s in part["suspicious"]]
        ax.barh(part["token"], part["mean_positive_attribution"], color=colours)
        for y, (value, lift) in enumerate(zip(part["mean_positive_attribution"], part["lift"])):
            ax.text(value, y, f" lift {lift:.1f}", va="center", fontsize=8)
        ax.set_title(c, fontsize=10)
        ax.set_xlabel("mean positive attribution")
        ax.margins(x=0.3)
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
