"""mlclf: multi-label text classification, one numbered notebook per stage.

The package is grouped by concern (README, "Architecture"): ``data``, ``modeling``,
``evaluation``, ``explain``, ``serving``, ``cloud``, ``runner``, ``stages`` and ``teaching``.

``from mlclf_utils import Classifier`` is the documented way in; the class lives in
``mlclf_utils.serving.predict`` and is imported only when first asked for, so that
``import mlclf_utils`` (the CLI, a SageMaker container, the runner) stays cheap and loads
neither torch nor numpy.
"""

from __future__ import annotations

# Public name -> the module that defines it, imported on first access.
_LAZY = {"Classifier": "mlclf_utils.serving.predict"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'mlclf_utils' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
