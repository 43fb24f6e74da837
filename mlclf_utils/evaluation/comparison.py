"""04's comparison: the fine-tuned model beside its baselines, all scored on the same test split.

Every row but the plain recipe's is read at per-label thresholds tuned on validation by the same
rule (``scoring.tuned_threshold_values``), so that no model wins by a better cut. The stage
(``stages/evaluate``) calls ``compare_with_baselines`` with its ``Inputs`` and ``Config``.
"""

from __future__ import annotations

import pandas as pd

from mlclf_utils import artifacts
from mlclf_utils.errors import ParameterError

# The comparison's columns: the model under test first, then the baselines. The plain recipe's
# column carries where its model came from (``plain_name``), unless it is a full training.
REFERENCE = "fine-tuned, tuned thresholds"
TFIDF = "TF-IDF + LR, tuned thresholds"
FROZEN = "frozen encoder + LR, tuned thresholds"
PLAIN = "plain BCE @ 0.5"


def check(params: dict) -> None:
    """The comparison's parameters among 04's (called by ``stages.evaluate.check``)."""
    for name in ("plain_baseline", "frozen_baseline"):
        if name in params and not isinstance(params[name], bool):
            raise ParameterError(name, params[name], "must be True or False")
    if "plain_budget" in params:
        from mlclf_utils.evaluation.baselines import check_budget

        check_budget("plain_budget", params["plain_budget"])
    sweep_dir = params.get("sweep_dir")
    if sweep_dir is True or not (sweep_dir is None or sweep_dir is False
                                 or isinstance(sweep_dir, str)):
        raise ParameterError("sweep_dir", sweep_dir, "must be a sweep folder, None (the newest "
                             "on this data) or False (none)")


def plain_name(budget: float = 1.0, sweep: str | None = None) -> str:
    """The plain recipe's column: says whether it was reused from a sweep or cut short."""
    if sweep is not None:
        return f"{PLAIN} (from sweep {sweep})"
    return PLAIN if budget == 1.0 else f"{PLAIN} (budget: {budget:.0%} of 03's training)"


def tuned_report(inputs, config, probs: dict) -> dict:
    """A baseline's test report at thresholds tuned on its own validation outputs, by the rule
    every tuned row follows."""
    from mlclf_utils.evaluation import metrics, scoring

    values = scoring.tuned_threshold_values(
        inputs.y["validation"], probs["validation"], inputs.labels,
        min_support=config.min_support, fallback=config.threshold_fallback)
    return metrics.multilabel_report(inputs.y["test"], probs["test"], inputs.labels, values)


def frozen_encoder_probabilities(inputs, config, *, progress: bool = True) -> dict:
    """The base encoder 03 started from (its ``model_name``), frozen, on the very token ids
    03 trained on (with 01's chunks, each text's first window): one forward pass per text,
    then per-label logistic regression."""
    from mlclf_utils.evaluation import baselines
    from mlclf_utils.stages import train as train_stage

    trained = train_stage.read_hyperparameters(inputs.run_dir)
    ids = {name: inputs.splits[name]["input_ids"] for name in artifacts.SPLITS}
    return baselines.frozen_encoder_logistic(
        trained["model_name"], ids["train"], inputs.y["train"],
        {"validation": ids["validation"], "test": ids["test"]},
        seed=int(trained.get("seed", 42)), batch_size=config.batch_size, progress=progress)


def sweep_plain_report(inputs, config, trained: dict) -> tuple[str, dict] | None:
    """``(sweep id/combination, its 04 report)`` of a finished sweep combination on this run's
    data whose recipe is exactly 03's with the class weights off, or None."""
    from mlclf_utils.evaluation import baselines
    from mlclf_utils.modeling.hyperparameters import recipe
    from mlclf_utils.runner import sweep
    from mlclf_utils.runner.runs import STATUS_OK
    from mlclf_utils.stages import train as train_stage

    found = sweep.find_sweep(inputs.run_dir, config.sweep_dir)
    if found is None or not (found / sweep.SWEEP_FILE).is_file():
        return None
    info = artifacts.read_json(found / sweep.SWEEP_FILE, what="sweep record")
    if info.get("data_fingerprint") != sweep.data_fingerprint(inputs.run_dir):
        return None
    wanted = baselines.plain_bce_hyperparameters(trained)
    for entry in info.get("combinations", []):
        report = artifacts.path(found / entry["name"], artifacts.EVALUATE, artifacts.REPORT)
        if entry.get("status") != STATUS_OK or not report.is_file():
            continue
        if recipe(train_stage.read_hyperparameters(found / entry["name"])) == wanted:
            return f"{found.name}/{entry['name']}", artifacts.read_json(report, what="04 report")
    return None


def plain_report(inputs, config, *, progress: bool = True) -> tuple[str, dict]:
    """``(column name, test report at 0.5)`` of the plain recipe: a sweep's matching ``none``
    combination when there is one, else fine-tuned here on ``plain_budget`` of 03's epochs."""
    from mlclf_utils.evaluation import baselines, metrics
    from mlclf_utils.serving.predict import Classifier
    from mlclf_utils.stages import train as train_stage

    trained = train_stage.read_hyperparameters(inputs.run_dir)
    reused = sweep_plain_report(inputs, config, trained)
    if reused is not None:
        return plain_name(sweep=reused[0]), reused[1]["test_at_0.5"]
    plain_dir = baselines.train_plain_bce(inputs.run_dir, trained,
                                          inputs.out_dir / artifacts.PLAIN_BCE_DIR,
                                          budget=config.plain_budget)
    classifier = Classifier.from_model_dir(plain_dir, windows=getattr(inputs, "windows", None))
    probs = classifier.predict_proba(
        inputs.splits["test"]["text"], batch_size=config.batch_size, progress=progress)
    return (plain_name(config.plain_budget),
            metrics.multilabel_report(inputs.y["test"], probs, inputs.labels, 0.5))


def compare_with_baselines(inputs, config, reports: dict, *, progress: bool = True) -> pd.DataFrame:
    """The tuned model against TF-IDF + logistic regression and, with ``frozen_baseline``,
    the frozen encoder + logistic regression (thresholds tuned the same way), and, with
    ``plain_baseline``, the plain recipe read at 0.5.

    ``inputs``/``config``: 04's ``Inputs`` and ``Config``; ``reports``: its metric reports.
    """
    from mlclf_utils.evaluation import baselines, metrics

    texts = {name: inputs.splits[name]["text"] for name in artifacts.SPLITS}
    tfidf = baselines.tfidf_logistic(texts["train"], inputs.y["train"],
                                     {"validation": texts["validation"], "test": texts["test"]})
    compared = {REFERENCE: reports["test_tuned"], TFIDF: tuned_report(inputs, config, tfidf)}
    if config.frozen_baseline:
        frozen = frozen_encoder_probabilities(inputs, config, progress=progress)
        compared[FROZEN] = tuned_report(inputs, config, frozen)
    if config.plain_baseline:
        name, report = plain_report(inputs, config, progress=progress)
        compared[name] = report
    return metrics.compare_reports(compared, reference=REFERENCE)
