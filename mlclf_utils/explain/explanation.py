"""What one explanation is, apart from how it was computed: its fields, and the one check every
consumer (the views, the token audit) applies to a list of them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlclf_utils.errors import ParameterError

# Changes in probability smaller than this are judged on an absolute scale (see the doc of
# mlclf_utils.explain.attributions, which sets delta_ok).
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


def check_explanations(explanations) -> list[Explanation]:
    """A non-empty list of Explanation (one is wrapped), or an error naming the bad positions:
    every consumer of explanations (views, token audit) refuses the same input the same way."""
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
