"""Why did the model give this text this label? Integrated gradients, one label at a time.

The model is multi-label: every label is its own yes/no question answered by a sigmoid, so the
explained quantity is ``sigmoid(logits)[label]`` for one label, never a softmax over labels
(which would make labels compete and explain the wrong number). Because the forward function
already returns one number per text, Captum never needs a ``target``.

Attributions are taken on the output of ``model.get_input_embeddings()``, which every
``Auto*`` model has; nothing here knows about BERT or DistilBERT internals. The baseline is the
same sequence with every real token replaced by ``[PAD]`` (``[CLS]``/``[SEP]`` and the
positions stay), so an attribution answers "how much did this token, rather than nothing in
its place, move the probability?".

Each text is explained at its own length, without padding to ``max_length``: integrated
gradients runs the model ``n_steps`` times, and on short texts padding would be most of that
work (``benchmarks/explain_speed.py`` measures it).

Completeness check: integrated gradients promises that the token attributions add up to
``F(text) - F(baseline)``; Captum returns the gap as the convergence ``delta``. ``delta_ok`` is
``|delta| <= delta_tolerance * max(|F(text) - F(baseline)|, 0.01)``: relative to the change
being explained, except that changes under 0.01 in probability are judged on that fixed scale,
since a relative test on a near-zero change fails on rounding noise. A failed check is warned
about; raise ``n_steps`` to fix it.
"""

from __future__ import annotations

import html as html_lib
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils.errors import DataError, ParameterError

# Changes in probability smaller than this are judged on an absolute scale (see module doc).
DELTA_FLOOR = 1e-2


@dataclass
class Explanation:
    """One (text, label): token and word attributions plus the numbers to trust them by."""

    text: str
    label: str
    label_index: int
    tokens: list[str]
    token_attributions: np.ndarray
    words: list[str]
    word_attributions: np.ndarray
    probability: float
    baseline_probability: float
    delta: float
    delta_ok: bool

    def top_words(self, n: int = 5) -> list[tuple[str, float]]:
        """The n words that pushed the probability up the most."""
        order = np.argsort(-self.word_attributions, kind="stable")[:n]
        return [(self.words[i], float(self.word_attributions[i])) for i in order]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(name, value, "must be a positive integer")
    return value


def _embedding_layer(model):
    """The input embedding module, or a ParameterError naming the model class."""
    getter = getattr(model, "get_input_embeddings", None)
    layer = None
    if callable(getter):
        try:
            layer = getter()
        except NotImplementedError:
            layer = None
    if layer is None:
        raise ParameterError(
            "model", type(model).__name__,
            "get_input_embeddings() is missing or returns None, so there is no embedding layer "
            "to attribute to; pass a transformers model (AutoModelForSequenceClassification)")
    return layer


def _model_labels(model) -> list[str]:
    config = getattr(model, "config", None)
    n = getattr(config, "num_labels", None)
    id2label = getattr(config, "id2label", None) or {}
    if not n:
        raise ParameterError("model", type(model).__name__, "its config has no num_labels")
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]


class Explainer:
    """Layer integrated gradients for one model, reused across texts and labels."""

    def __init__(self, model, tokenizer, *, n_steps: int = 50, internal_batch_size: int | None = 16,
                 max_length: int = 128, delta_tolerance: float = 1e-2):
        from captum.attr import LayerIntegratedGradients

        self.layer = _embedding_layer(model)
        if not getattr(tokenizer, "is_fast", False):
            raise ParameterError("tokenizer", type(tokenizer).__name__,
                                 "need a fast tokenizer (tokenizer.json): word merging uses its "
                                 "word ids and offsets")
        if tokenizer.pad_token_id is None:
            raise ParameterError("tokenizer", type(tokenizer).__name__,
                                 "has no pad token, and the baseline is made of pad tokens")
        self.n_steps = _check_positive_int("n_steps", n_steps)
        if internal_batch_size is not None:
            _check_positive_int("internal_batch_size", internal_batch_size)
        self.internal_batch_size = internal_batch_size
        self.max_length = _check_positive_int("max_length", max_length)
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if isinstance(limit, int) and max_length > limit:
            raise ParameterError("max_length", max_length, f"the model accepts at most {limit} "
                                 "tokens")
        if isinstance(delta_tolerance, bool) or not isinstance(delta_tolerance, int | float) \
                or not delta_tolerance > 0:
            raise ParameterError("delta_tolerance", delta_tolerance, "must be a number > 0")
        self.delta_tolerance = float(delta_tolerance)
        self.model = model.eval()  # dropout off: an explanation must be repeatable
        self.tokenizer = tokenizer
        self.labels = _model_labels(model)
        self._specials = set(tokenizer.all_special_tokens)
        self._lig = LayerIntegratedGradients(self._forward, self.layer)

    def __repr__(self) -> str:
        return (f"Explainer({type(self.model).__name__}, {len(self.labels)} labels, "
                f"n_steps={self.n_steps}, max_length={self.max_length})")

    @classmethod
    def from_model_dir(cls, model_dir, **kw) -> "Explainer":
        """03's model folder. ``max_length`` defaults to the one it was trained with
        (``models.trained_max_length``, shared with ``Classifier.from_model_dir``)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise DataError("not a model folder: config.json is missing",
                            file=str(path / "config.json"),
                            hint="pass runs/<run-id>/03_train/model (what train.py saves)")
        model = AutoModelForSequenceClassification.from_pretrained(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        if "max_length" not in kw:
            from mlclf_utils.modeling.encoders import trained_max_length

            kw["max_length"] = trained_max_length(path, model.config)  # the same rule as predict
        return cls(model, tokenizer, **kw)

    # --- the pieces --------------------------------------------------------------------------

    def _forward(self, input_ids, attention_mask, label_index: int):
        """One label's sigmoid probability per row: a 1-d output, so no Captum target."""
        import torch

        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return torch.sigmoid(logits.float())[:, label_index]

    def label_index(self, label) -> int:
        """A label name or index as the column index, or an error listing the valid ones."""
        k = len(self.labels)
        if isinstance(label, str):
            if label in self.labels:
                return self.labels.index(label)
            shown = ", ".join(repr(x) for x in self.labels[:10])
            more = f" and {k - 10} more" if k > 10 else ""
            raise ParameterError("label", label, f"unknown label name; the model has {k} labels "
                                 f"(indices 0..{k - 1}): {shown}{more}")
        if isinstance(label, bool) or not isinstance(label, int | np.integer):
            raise ParameterError("label", label, f"must be a label name or an index in 0..{k - 1}")
        if not 0 <= int(label) < k:
            raise ParameterError("label", label,
                                 f"index out of range: valid indices are 0..{k - 1}")
        return int(label)

    def _encode(self, text: str):
        """Token ids cut to max_length as in training, plus each kept token's word span."""
        encoding = self.tokenizer(text, add_special_tokens=True, truncation=False,
                                  return_offsets_mapping=True, verbose=False)
        ids = list(encoding["input_ids"])
        word_ids = encoding.word_ids()
        truncated = len(ids) > self.max_length
        if truncated:
            sep = self.tokenizer.sep_token_id
            keep = self.max_length - 1 if sep is not None else self.max_length
            ids = ids[:keep] + ([sep] if sep is not None else [])
            word_ids = word_ids[:keep] + ([None] if sep is not None else [])
        # A word's span in the text, even where truncation cut its last pieces off.
        spans = {w: encoding.word_to_chars(w) for w in set(word_ids) if w is not None}
        return ids, word_ids, spans, truncated

    def _merge_words(self, text, tokens, word_ids, spans, token_attr):
        """Sum word pieces into words; specials dropped. Pieces without a word id that start
        with "##" join the previous word (the WordPiece convention)."""
        words, values, last_key = [], [], None
        for i, (token, w) in enumerate(zip(tokens, word_ids)):
            if w is None and token in self._specials:
                last_key = None
                continue
            if w is not None:
                key = ("word", w)
                piece = text[spans[w].start:spans[w].end]
            else:
                key = ("piece", i) if not token.startswith("##") or last_key is None else last_key
                piece = token[2:] if token.startswith("##") else token
            if key == last_key:
                values[-1] += token_attr[i]
                if w is None:
                    words[-1] += piece
            else:
                words.append(piece)
                values.append(float(token_attr[i]))
            last_key = key
        return words, np.asarray(values, dtype=np.float64)

    def explain(self, text: str, label) -> Explanation:
        """Attributions of one label's probability to the words of one text."""
        explanation, truncated = self._explain(text, label)
        if truncated:
            warnings.warn(f"the text is longer than max_length={self.max_length} tokens; only "
                          "its first tokens are explained (as the model saw them in training)",
                          stacklevel=2)
        _warn_unconverged([explanation], self.n_steps)
        return explanation

    def explain_many(self, items: Iterable[tuple], progress: bool = True) -> list[Explanation]:
        """Explain (text, label) pairs in order; one warning each counts the truncated and the
        unconverged ones, instead of one warning per text."""
        from tqdm.auto import tqdm

        items = list(items)
        for i, item in enumerate(items):
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise ParameterError("items", f"item {i}: {item!r}"[:80],
                                     "each item must be a (text, label) pair")
        out, truncated = [], 0
        for text, label in tqdm(items, desc="explaining", unit="text", disable=not progress):
            explanation, cut = self._explain(text, label)
            out.append(explanation)
            truncated += cut
        if truncated:
            warnings.warn(f"{truncated} of {len(items)} texts were longer than max_length="
                          f"{self.max_length} tokens; only their first tokens are explained",
                          stacklevel=2)
        _warn_unconverged(out, self.n_steps)
        return out

    def _explain(self, text: str, label) -> tuple[Explanation, bool]:
        import torch

        if not isinstance(text, str):
            raise DataError(f"the text must be a string, got {type(text).__name__}",
                            hint="missing values (None, NaN) are not texts")
        if not text.strip():
            raise DataError("the text is empty or only whitespace: there is nothing to explain")
        k = self.label_index(label)
        ids, word_ids, spans, truncated = self._encode(text)
        pad = self.tokenizer.pad_token_id
        baseline_ids = [t if w is None else pad for t, w in zip(ids, word_ids)]
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        inputs = torch.tensor([ids], dtype=torch.long, device=device)
        baseline = torch.tensor([baseline_ids], dtype=torch.long, device=device)
        mask = torch.ones_like(inputs)
        with torch.no_grad():
            pair = self._forward(torch.cat([inputs, baseline]), torch.cat([mask, mask]), k)
        probability, baseline_probability = (float(x) for x in pair.cpu())
        # Captum differentiates with respect to the embedding output only, and autograd skips
        # the weight gradients by itself (switching requires_grad off measured no faster).
        attributions, delta = self._lig.attribute(
            inputs, baselines=baseline, additional_forward_args=(mask, k), n_steps=self.n_steps,
            internal_batch_size=self.internal_batch_size, return_convergence_delta=True)
        token_attr = attributions.sum(dim=-1)[0].detach().cpu().double().numpy()
        delta = float(delta.reshape(-1)[0])
        change = abs(probability - baseline_probability)
        delta_ok = bool(math.isfinite(delta)
                        and abs(delta) <= self.delta_tolerance * max(change, DELTA_FLOOR))
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        words, word_attr = self._merge_words(text, tokens, word_ids, spans, token_attr)
        explanation = Explanation(
            text=text, label=self.labels[k], label_index=k, tokens=tokens,
            token_attributions=token_attr, words=words, word_attributions=word_attr,
            probability=probability, baseline_probability=baseline_probability, delta=delta,
            delta_ok=delta_ok)
        return explanation, truncated


def _warn_unconverged(explanations: list[Explanation], n_steps: int) -> None:
    bad = [i for i, e in enumerate(explanations) if not e.delta_ok]
    if bad:
        warnings.warn(f"{len(bad)} of {len(explanations)} explanations fail the completeness "
                      f"check (attributions do not add up to F(text) - F(baseline)); positions "
                      f"{bad[:10]}. Raise n_steps (now {n_steps}).", stacklevel=3)


def _check_explanations(explanations) -> list[Explanation]:
    if isinstance(explanations, Explanation):
        return [explanations]
    try:
        out = list(explanations)
    except TypeError:
        raise ParameterError("explanations", type(explanations).__name__,
                             "must be a list of Explanation") from None
    if not out:
        raise ParameterError("explanations", out, "need at least one explanation")
    bad = [i for i, e in enumerate(out) if not isinstance(e, Explanation)]
    if bad:
        raise ParameterError("explanations", f"positions {bad[:10]}", "are not Explanation objects")
    return out


# --- showing them ------------------------------------------------------------------------------

# Layout of the static figure, in character cells of a monospace font: fixed cells make the
# line wrapping exact without asking a renderer for text widths.
_CHARS_PER_LINE = 112  # DejaVu Sans Mono: 0.6 em per character, 10 in wide
_LINE_HEIGHT_IN = 0.28
_FONT_SIZE = 10


def _colour(value: float, scale: float) -> tuple[float, float, float, float]:
    strength = min(1.0, abs(value) / scale) if scale > 0 else 0.0
    base = (0.84, 0.15, 0.16) if value > 0 else (0.13, 0.40, 0.85)
    return (*base, 0.85 * strength)


def _wrap(words: list[str], width: int) -> list[list[int]]:
    lines, current, used = [], [], 0
    for i, word in enumerate(words):
        need = len(word) + (1 if current else 0)
        if current and used + need > width:
            lines.append(current)
            current, used = [], 0
            need = len(word)
        current.append(i)
        used += need
    if current:
        lines.append(current)
    return lines


def plot_attributions(explanations, path=None, *, max_words: int = 60):
    """A PNG-friendly "coloured text" figure: red pushes the label's probability up, blue down.

    Static on purpose: GitHub strips the HTML/JS of notebook outputs but shows images. Colours
    are scaled per block to its largest |attribution|; at most ``max_words`` words are drawn.
    """
    from mlclf_utils.figures import pyplot, save_figure

    plt, _ = pyplot()

    explanations = _check_explanations(explanations)
    _check_positive_int("max_words", max_words)
    blocks = []
    for e in explanations:
        words = list(e.words[:max_words])
        if len(e.words) > max_words:
            words.append(f"… (+{len(e.words) - max_words} words)")
        blocks.append((e, words, _wrap(words, _CHARS_PER_LINE)))
    n_lines = sum(len(lines) + 2 for _, _, lines in blocks) + 1  # title + gap per block, key
    fig = plt.figure(figsize=(10, max(1.0, n_lines * _LINE_HEIGHT_IN + 0.3)))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_xlim(0, _CHARS_PER_LINE)
    ax.set_ylim(n_lines, 0)
    ax.axis("off")
    y = 0.5
    for e, words, lines in blocks:
        flag = "" if e.delta_ok else "  NOT CONVERGED (raise n_steps)"
        ax.text(0, y, f"{e.label}:  p = {e.probability:.3f}  "
                      f"(baseline {e.baseline_probability:.3f}),  delta = {e.delta:.1e}{flag}",
                fontsize=_FONT_SIZE, fontweight="bold", va="center", parse_math=False,
                color="black" if e.delta_ok else "darkred")
        y += 1
        shown = e.word_attributions[:max_words]
        scale = float(np.max(np.abs(shown))) if len(shown) else 0.0
        for line in lines:
            x = 0
            for i in line:
                value = float(e.word_attributions[i]) if i < len(shown) else 0.0
                ax.text(x, y, words[i], family="monospace", fontsize=_FONT_SIZE, va="center",
                        parse_math=False,
                        bbox={"boxstyle": "square,pad=0.15", "facecolor": _colour(value, scale),
                              "edgecolor": "none"})
                x += len(words[i]) + 1
            y += 1
        y += 1
    ax.text(0, y, "red: the word raises the label's probability; blue: lowers it "
                  "(colour scaled to each text's strongest word)",
            fontsize=_FONT_SIZE - 1, color="dimgray", va="center")
    return save_figure(fig, path)


def captum_html(explanations, *, true_labels=None):
    """Captum's own HTML table (interactive notebooks only: GitHub does not render it).

    Attributions are scaled per text to [-1, 1], the range Captum's colours expect; words are
    HTML-escaped because Captum pastes them into the markup as they are.
    """
    from captum.attr import visualization as viz
    from IPython.utils.capture import capture_output

    explanations = _check_explanations(explanations)
    if true_labels is not None and len(true_labels) != len(explanations):
        raise ParameterError("true_labels", f"{len(true_labels)} entries",
                             f"need one per explanation ({len(explanations)})")
    records = []
    for i, e in enumerate(explanations):
        scale = float(np.max(np.abs(e.word_attributions))) if len(e.word_attributions) else 0.0
        scaled = e.word_attributions / scale if scale > 0 else e.word_attributions
        truth = "" if true_labels is None else true_labels[i]
        records.append(viz.VisualizationDataRecord(
            scaled, e.probability, e.label, html_lib.escape(str(truth)), e.label,
            float(np.sum(e.word_attributions)), [html_lib.escape(w) for w in e.words], e.delta))
    # visualize_text also calls display(); swallow that so a notebook shows the table once.
    with capture_output(display=True):
        return viz.visualize_text(records)


def explanations_table(explanations) -> pd.DataFrame:
    """One row per (explanation, word), for sorting, filtering and saving."""
    explanations = _check_explanations(explanations)
    rows = []
    for text_id, e in enumerate(explanations):
        for position, (word, value) in enumerate(zip(e.words, e.word_attributions)):
            rows.append({"text_id": text_id, "label": e.label, "position": position, "word": word,
                         "attribution": float(value), "probability": e.probability,
                         "baseline_probability": e.baseline_probability, "delta": e.delta,
                         "delta_ok": e.delta_ok})
    columns = ["text_id", "label", "position", "word", "attribution", "probability",
               "baseline_probability", "delta", "delta_ok"]
    return pd.DataFrame(rows, columns=columns)


def explanation_summary(explanations, kinds, *, delta_tolerance: float = 1e-2) -> str:
    """What 05 explained, as names, counts and booleans only (for the nbval check).

    ``kinds`` maps an explanation's position to "fp" or "fn". Completeness (the attributions sum
    to F(text) - F(baseline)) is re-checked from the numbers rather than read from ``delta_ok``,
    so a wrong flag cannot hide a failed integration.
    """
    explanations = _check_explanations(explanations)
    per_class: dict[str, dict[str, int]] = {}
    for i, e in enumerate(explanations):
        counts = per_class.setdefault(e.label, {"fp": 0, "fn": 0})
        counts[kinds[i]] += 1
    within = all(
        math.isfinite(e.delta) and abs(float(np.sum(e.token_attributions))
                                       - (e.probability - e.baseline_probability))
        <= delta_tolerance * max(abs(e.probability - e.baseline_probability), DELTA_FLOOR)
        for e in explanations)
    lines = [f"explained pairs: {len(explanations)} over {len(per_class)} classes"]
    lines += [f"  {label}: fp {c['fp']}, fn {c['fn']}" for label, c in per_class.items()]
    lines.append(f"every convergence delta within tolerance ({delta_tolerance:g}): {within}")
    return "\n".join(lines)
