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
work. By default (``batched=True``) ``explain_many`` also groups the pairs by text, so that all
the labels asked of one text share its forward passes, and packs texts of similar length into
the same passes (``mlclf_utils.explain.batched_ig``); ``batched=False`` is Captum's
``LayerIntegratedGradients`` one pair at a time, the reference the fast path is tested against
(``benchmarks/explain_speed.py`` measures both).

Completeness check: integrated gradients promises that the token attributions add up to
``F(text) - F(baseline)``; Captum returns the gap as the convergence ``delta``. ``delta_ok`` is
``|delta| <= delta_tolerance * max(|F(text) - F(baseline)|, 0.01)``: relative to the change
being explained, except that changes under 0.01 in probability are judged on that fixed scale,
since a relative test on a near-zero change fails on rounding noise. A failed check is warned
about; raise ``n_steps`` to fix it.

Showing explanations (the coloured-text figure, Captum's HTML, the table, the nbval summary)
lives in ``mlclf_utils.explain.attribution_views``: computing them needs no plotting library.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mlclf_utils.errors import DataError, ParameterError, TruncationWarning, check_positive_int
from mlclf_utils.explain.explanation import DELTA_FLOOR, Explanation
from mlclf_utils.explain.quadrature import check_rule


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


# Integration nodes and rows per forward pass when nobody says: 05's defaults too.
N_STEPS = 40
INTERNAL_BATCH_SIZE = 16


class Explainer:
    """Layer integrated gradients for one model, reused across texts and labels."""

    def __init__(self, model, tokenizer, *, n_steps: int = N_STEPS,
                 internal_batch_size: int | None = INTERNAL_BATCH_SIZE,
                 max_length: int | None = None, delta_tolerance: float = 1e-2,
                 batched: bool = True, quadrature: str | None = None):
        """``max_length=None``: the model's own limit. A model folder's trained cut comes
        from ``from_model_dir``, which reads it the way ``Classifier`` does. ``batched``: the
        shared-pass path (see the module doc), else Captum one pair at a time. ``quadrature``
        (``mlclf_utils.explain.quadrature``): None is the transplanted rule when batched, and
        Captum's Gauss-Legendre, its only one, when not."""
        if not isinstance(batched, bool):
            raise ParameterError("batched", batched, "must be True or False")
        if quadrature is None:
            quadrature = "transplanted" if batched else "gausslegendre"
        self.quadrature = check_rule(quadrature)
        if not batched and quadrature != "gausslegendre":
            raise ParameterError("quadrature", quadrature, "Captum's per-pair path "
                                 "(batched=False) has only 'gausslegendre'")
        self.layer = _embedding_layer(model)
        if not getattr(tokenizer, "is_fast", False):
            raise ParameterError("tokenizer", type(tokenizer).__name__,
                                 "need a fast tokenizer (tokenizer.json): word merging uses its "
                                 "word ids and offsets")
        if tokenizer.pad_token_id is None:
            raise ParameterError("tokenizer", type(tokenizer).__name__,
                                 "has no pad token, and the baseline is made of pad tokens")
        self.n_steps = check_positive_int("n_steps", n_steps)
        if internal_batch_size is not None:
            check_positive_int("internal_batch_size", internal_batch_size)
        self.internal_batch_size = internal_batch_size
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if max_length is None:
            max_length = limit if isinstance(limit, int) else 512
        self.max_length = max_length = check_positive_int("max_length", max_length)
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
        self.batched = batched
        if not batched:
            from captum.attr import LayerIntegratedGradients

            self._lig = LayerIntegratedGradients(self._forward, self.layer)

    def __repr__(self) -> str:
        return (f"Explainer({type(self.model).__name__}, {len(self.labels)} labels, "
                f"n_steps={self.n_steps}, quadrature={self.quadrature!r}, "
                f"max_length={self.max_length})")

    @classmethod
    def from_model_dir(cls, model_dir, **kw) -> "Explainer":
        """03's model folder. ``max_length`` defaults to the one it was trained with
        (``encoders.trained_max_length``, shared with ``Classifier.from_model_dir``), so that
        05 explains exactly the tokens 04 scored."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise DataError("not a model folder: config.json is missing",
                            file=str(path / "config.json"),
                            hint="pass runs/<run-id>/03_train/model (what train.py saves)")
        from mlclf_utils.modeling import pooling  # noqa: F401 - registers the mean-pooling classifier

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
        if self.batched:
            prepared = self._prepare(text, label)
            explanation, truncated = self._explain_prepared([prepared])[0], prepared[-1]
        else:
            explanation, truncated = self._explain(text, label)
        if truncated:
            warnings.warn(TruncationWarning(
                f"the text is longer than max_length={self.max_length} tokens; only its first "
                "tokens are explained (as the model saw them in training)", cut=1, total=1,
                max_length=self.max_length, explained=True), stacklevel=2)
        _warn_unconverged([explanation], self.n_steps)
        return explanation

    def attribute_token_ids(self, ids, labels) -> list:
        """``batched_ig.Attribution`` per label for explicit token ids (specials included, no
        cut applied): for explaining a chosen token window rather than a text's beginning."""
        from mlclf_utils.explain import batched_ig

        ids = [int(t) for t in ids]
        if not ids or len(ids) > self.max_length:
            raise ParameterError("ids", f"{len(ids)} tokens", f"need 1..{self.max_length} tokens")
        labels = tuple(self.label_index(label) for label in labels)
        specials = set(self.tokenizer.all_special_ids)
        baseline = tuple(t if t in specials else self.tokenizer.pad_token_id for t in ids)
        job = batched_ig.Job(ids=tuple(ids), baseline_ids=baseline, labels=labels)
        return self._attribute_jobs([job])[0]

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
        if self.batched:  # every pair checked before any work is spent
            prepared = [self._prepare(text, label) for text, label in items]
            with tqdm(total=len({p[0] for p in prepared}), desc="explaining", unit="text",
                      disable=not progress) as bar:
                out = self._explain_prepared(prepared, bar.update)
            truncated = sum(p[-1] for p in prepared)
        else:
            for text, label in tqdm(items, desc="explaining", unit="pair", disable=not progress):
                explanation, cut = self._explain(text, label)
                out.append(explanation)
                truncated += cut
        if truncated:
            warnings.warn(TruncationWarning(
                f"{truncated} of {len(items)} texts were longer than max_length="
                f"{self.max_length} tokens; only their first tokens are explained",
                cut=truncated, total=len(items), max_length=self.max_length, explained=True),
                stacklevel=2)
        _warn_unconverged(out, self.n_steps)
        return out

    def _prepare(self, text: str, label) -> tuple:
        """(text, label index, ids, word ids, spans, baseline ids, truncated), or the error."""
        if not isinstance(text, str):
            raise DataError(f"the text must be a string, got {type(text).__name__}",
                            hint="missing values (None, NaN) are not texts")
        if not text.strip():
            raise DataError("the text is empty or only whitespace: there is nothing to explain")
        k = self.label_index(label)
        ids, word_ids, spans, truncated = self._encode(text)
        pad = self.tokenizer.pad_token_id
        baseline_ids = [t if w is None else pad for t, w in zip(ids, word_ids)]
        return text, k, ids, word_ids, spans, baseline_ids, truncated

    def _attribute_jobs(self, jobs, progress=None) -> list:
        from mlclf_utils.explain import batched_ig

        return batched_ig.attribute(self.model, self.layer, jobs, n_steps=self.n_steps,
                                    rows_per_pass=self.internal_batch_size,
                                    max_length=self.max_length,
                                    pad_id=self.tokenizer.pad_token_id, progress=progress,
                                    quadrature=self.quadrature)

    def _explain_prepared(self, prepared: list[tuple], progress=None) -> list[Explanation]:
        """The batched path: one job per distinct text holding every label asked of it; the
        explanations come back in the order of ``prepared``."""
        from mlclf_utils.explain import batched_ig

        by_text: dict[str, list[int]] = {}  # text -> its distinct label indices, first-asked order
        for text, k, *_ in prepared:
            labels = by_text.setdefault(text, [])
            if k not in labels:
                labels.append(k)
        first = {p[0]: p for p in reversed(prepared)}  # the first encoding of each text
        jobs = [batched_ig.Job(ids=tuple(first[t][2]), baseline_ids=tuple(first[t][5]),
                               labels=tuple(labels)) for t, labels in by_text.items()]
        results = dict(zip(by_text, self._attribute_jobs(jobs, progress)))
        out = []
        for text, k, ids, word_ids, spans, _, _ in prepared:
            a = results[text][by_text[text].index(k)]
            out.append(self._explanation(text, k, ids, word_ids, spans, a.token_attributions,
                                         a.probability, a.baseline_probability, a.delta))
        return out

    def _explanation(self, text, k, ids, word_ids, spans, token_attr, probability,
                     baseline_probability, delta) -> Explanation:
        change = abs(probability - baseline_probability)
        delta_ok = bool(math.isfinite(delta)
                        and abs(delta) <= self.delta_tolerance * max(change, DELTA_FLOOR))
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        words, word_attr = self._merge_words(text, tokens, word_ids, spans, token_attr)
        return Explanation(
            text=text, label=self.labels[k], label_index=k, tokens=tokens,
            token_attributions=token_attr, words=words, word_attributions=word_attr,
            probability=probability, baseline_probability=baseline_probability, delta=delta,
            delta_ok=delta_ok)

    def _explain(self, text: str, label) -> tuple[Explanation, bool]:
        """Captum, one pair: the reference the batched path is held equal to."""
        import torch

        text, k, ids, word_ids, spans, baseline_ids, truncated = self._prepare(text, label)
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
        return self._explanation(text, k, ids, word_ids, spans, token_attr, probability,
                                 baseline_probability, delta), truncated


def _warn_unconverged(explanations: list[Explanation], n_steps: int) -> None:
    bad = [i for i, e in enumerate(explanations) if not e.delta_ok]
    if bad:
        warnings.warn(f"{len(bad)} of {len(explanations)} explanations fail the completeness "
                      f"check (attributions do not add up to F(text) - F(baseline)); positions "
                      f"{bad[:10]}. Raise n_steps (now {n_steps}).", stacklevel=3)
