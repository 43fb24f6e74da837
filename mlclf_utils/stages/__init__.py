"""One module per numbered notebook: its defaults, its checks, its files, and ``run()``.

Each stage module has ``STAGE`` (its folder in a run directory), ``check(params)`` (the
validation the runner's preflight and the notebook's first cells share: cheap, before any work)
and ``run(run_dir, ...)`` (the whole stage headless, for tests and scripts). The notebook calls
the same functions in readable steps. Stages talk only through the files in
``mlclf_utils.artifacts``.
"""

from __future__ import annotations

import importlib

from mlclf_utils import artifacts

MODULES = {
    artifacts.PREPROCESS: "mlclf_utils.stages.preprocess",
    artifacts.SAVE_DATA: "mlclf_utils.stages.save_data",
    artifacts.TRAIN: "mlclf_utils.stages.train",
    artifacts.EVALUATE: "mlclf_utils.stages.evaluate",
    artifacts.EXPLAIN: "mlclf_utils.stages.explain",
}


def module(stage: str):
    """The stage module of ``stage`` (e.g. "04_evaluate"), imported on first use."""
    if stage not in MODULES:
        raise ValueError(f"unknown stage {stage!r}; the stages are {tuple(MODULES)}")
    return importlib.import_module(MODULES[stage])


def config_values(config_class, params, *, strict: bool = False) -> dict:
    """The values in ``params`` (a mapping) of the fields of the dataclass ``config_class``.

    Every stage's ``Config`` is built through here. ``strict``: any other name is refused (01 and
    02 take their parameters as keywords); otherwise other names are skipped (``run_dir``, the
    runner's effective parameters, a notebook's ``globals()``).
    """
    import dataclasses

    from mlclf_utils.errors import ParameterError

    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(params) - known)
    if strict and unknown:
        raise ParameterError("parameters", unknown, f"unknown; known are {sorted(known)}")
    return {name: params[name] for name in known if name in params}


def check(stage: str, params: dict) -> None:
    """``stage``'s own validation of its parameter values (notebook defaults plus overrides)."""
    module(stage).check(params)


def notice(stage: str, run_dir) -> str | None:
    """One line a finished stage wants a batch user to see (e.g. 01's dropped rows), or None.

    A stage module says so with an optional ``notice(run_dir)``; the runner prints the line
    without knowing which stage has one.
    """
    hook = getattr(module(stage), "notice", None)
    return hook(run_dir) if hook is not None else None
