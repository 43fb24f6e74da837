"""Thresholds that hold on small validation splits (issue 12, item 6): validation vs test macro-F1.

    python benchmarks/threshold_robustness.py --run-dir runs/<run-id> [--seeds 20]

Nothing is retrained. 03's model scores the run's validation and test splits once (04 keeps
only the test probabilities, in misclassifications.parquet; the check below compares ours with
them and with 04's thresholds.json). Then, for each validation set -- the whole split, and
random subsamples of it (half of it, and 100 texts) over several seeds -- 04's calibration is
fitted on it and each threshold procedure tuned on it, exactly as 04 would on a split that
small, and applied to the whole test split. Validation macro-F1 is measured on the texts the
thresholds were tuned on (so it is optimistic); the gap is validation minus test. Writes
benchmarks/results/threshold_robustness.json for benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from common import write_result  # noqa: E402

DEFAULT = "per-label (04's default)"
SHRINKAGE = (2, 5, 10, 20, 50)
SMOOTHING = (0.03, 0.05, 0.1)


def procedures(min_support: int) -> dict[str, dict | None]:
    """Name -> tune_thresholds arguments (None: read at 0.5, no tuning)."""
    table = {"0.5 (no tuning)": None, DEFAULT: {}}
    table.update({f"shrinkage k={k}": {"shrinkage": float(k)} for k in SHRINKAGE})
    table.update({f"smoothed F1, h={h}": {"smoothing": h} for h in SMOOTHING})
    table["smoothed h=0.05 + shrinkage k=10"] = {"smoothing": 0.05, "shrinkage": 10.0}
    table["global only (one shared threshold)"] = {"min_support": 10**9}
    return {name: (None if kw is None else {"min_support": min_support, **kw})
            for name, kw in table.items()}


def raw_probabilities(run_dir: Path, batch_size: int) -> tuple[list[str], dict, dict]:
    """(labels, targets by split, raw sigmoid outputs by split) of 03's model, as 04 computes
    them, without making 04's folder (the run is only read)."""
    from mlclf_utils.data import dataset, windows
    from mlclf_utils.serving.predict import Classifier
    from mlclf_utils.stages import save_data, train

    loaded = {name: dataset.load_split(save_data.split_dir(run_dir, name))
              for name in ("train", "validation", "test")}
    settings = windows.for_classifier(windows.read_settings(save_data.split_dir(run_dir, "train")))
    classifier = Classifier.from_model_dir(train.model_dir(run_dir), windows=settings)
    y, raw = {}, {}
    for name in ("validation", "test"):
        rows = windows.text_rows(loaded[name][0])
        y[name] = np.asarray(rows["labels"], dtype=np.int8)
        raw[name] = classifier.predict_proba(rows["text"], batch_size=batch_size, progress=True)
    return loaded["train"][1].labels, y, raw


def cached_probabilities(run_dir: Path, cache: Path | None, batch_size: int):
    """raw_probabilities, kept in an .npz (no pickle) when ``cache`` is given."""
    if cache is not None and cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if str(data["run"]) == run_dir.name:
            return ([str(x) for x in data["labels"]],
                    {s: data[f"y_{s}"] for s in ("validation", "test")},
                    {s: data[f"raw_{s}"] for s in ("validation", "test")})
    labels, y, raw = raw_probabilities(run_dir, batch_size)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, run=run_dir.name, labels=np.array(labels),
                 **{f"y_{s}": y[s] for s in y}, **{f"raw_{s}": raw[s] for s in raw})
    return labels, y, raw


def evaluate(y: dict, raw: dict, labels: list[str], rows: np.ndarray, config: dict,
             methods: dict) -> dict[str, tuple[float, float]]:
    """Procedure -> (validation macro-F1 on ``rows``, test macro-F1), calibrated on ``rows``."""
    from mlclf_utils.evaluation import calibration, metrics, thresholds

    y_fit = {"validation": y["validation"][rows], "test": y["test"]}
    raw_fit = {"validation": raw["validation"][rows], "test": raw["test"]}
    _, probs, _ = calibration.calibrate_splits(y_fit, raw_fit, labels,
                                               method=config["calibration_method"],
                                               min_support=config["min_support"])
    out = {}
    for name, kwargs in methods.items():
        if kwargs is None:
            cut = 0.5
        else:
            table = thresholds.tune_thresholds(y_fit["validation"], probs["validation"], labels,
                                               fallback=config["fallback"], **kwargs)
            cut = thresholds.thresholds_array(table, labels)
        out[name] = tuple(metrics.multilabel_report(y_fit[s], probs[s], labels, cut)["macro_f1"]
                          for s in ("validation", "test"))
    return out


def check_against_04(run_dir: Path, y: dict, raw: dict, labels: list[str], config: dict) -> dict:
    """How closely our probabilities and thresholds reproduce the ones 04 saved."""
    from mlclf_utils.evaluation import calibration, thresholds
    from mlclf_utils.stages import evaluate as stage

    _, probs, _ = calibration.calibrate_splits(y, raw, labels, method=config["calibration_method"],
                                               min_support=config["min_support"])
    saved = stage.read_misclassifications(run_dir)
    saved_test = np.asarray([[row[label] for label in labels]
                             for row in map(_probability_map, saved["probabilities"])])
    table = thresholds.tune_thresholds(y["validation"], probs["validation"], labels,
                                       min_support=config["min_support"],
                                       fallback=config["fallback"], shrinkage=config["shrinkage"])
    ours = thresholds.thresholds_array(table, labels)
    theirs = thresholds.thresholds_array(stage.read_thresholds(run_dir), labels)
    return {"max_abs_diff_test_probability_vs_04": float(np.abs(probs["test"] - saved_test).max()),
            "max_abs_diff_threshold_vs_04": float(np.abs(ours - theirs).max())}


def _probability_map(cell) -> dict:
    import json

    return json.loads(cell) if isinstance(cell, str) else dict(cell)


def run_config(run_dir: Path) -> dict:
    """04's settings on this run: min_support, fallback and shrinkage from its thresholds.json,
    the calibration method from its bundle (no calibration.json: none)."""
    from mlclf_utils import artifacts

    saved = artifacts.read_json(artifacts.path(run_dir, artifacts.EVALUATE, artifacts.THRESHOLDS),
                                what="04's thresholds")
    from mlclf_utils.stages import evaluate

    calibration = evaluate.calibration_of(run_dir)
    method = None if calibration is None else calibration["method"]
    return {"min_support": int(saved["min_support"]), "fallback": saved["fallback"],
            "shrinkage": float(saved.get("shrinkage") or 0.0), "calibration_method": method}


def summarise(variant: str, n_texts: int, results: list[dict], seeds: int) -> list[dict]:
    """One row per procedure: means (and sd over seeds) of validation, test and the gap."""
    rows = []
    default_test = np.array([r[DEFAULT][1] for r in results])
    for name in results[0]:
        val = np.array([r[name][0] for r in results])
        test = np.array([r[name][1] for r in results])
        gap = val - test
        row = {"validation": variant, "validation texts": n_texts, "procedure": name,
               "validation macro-F1": round(float(val.mean()), 4),
               "test macro-F1": round(float(test.mean()), 4),
               "gap (val - test)": round(float(gap.mean()), 4),
               "test vs default, points": round(float(100 * (test - default_test).mean()), 2)}
        if seeds > 1:
            row["test sd"] = round(float(test.std(ddof=1)), 4)
            row["gap sd"] = round(float(gap.std(ddof=1)), 4)
            row["vs default sd, points"] = round(float(100 * (test - default_test).std(ddof=1)), 2)
            row["seeds better than default"] = f"{int((test > default_test + 1e-12).sum())}/{seeds}"
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a demo run with a finished 04_evaluate")
    parser.add_argument("--seeds", type=int, default=20, help="subsamples per small variant")
    parser.add_argument("--fraction", type=float, default=0.5, help="first small variant")
    parser.add_argument("--texts", type=int, default=100, help="second small variant")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache", help="an .npz to keep the model's probabilities in between runs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "threshold_robustness.json"))
    args = parser.parse_args(argv)

    run_dir = Path(args.run_dir)
    config = run_config(run_dir)
    labels, y, raw = cached_probabilities(run_dir, Path(args.cache) if args.cache else None,
                                          args.batch_size)
    check = check_against_04(run_dir, y, raw, labels, config)
    print(check, flush=True)
    methods = procedures(config["min_support"])
    n_val = len(y["validation"])
    rows = summarise("whole split", n_val,
                     [evaluate(y, raw, labels, np.arange(n_val), config, methods)], 1)
    for variant, size in ((f"{args.fraction:.0%} subsample", round(args.fraction * n_val)),
                          (f"{args.texts} texts", args.texts)):
        results = []
        for seed in range(args.seeds):
            picked = np.sort(np.random.default_rng(seed).choice(n_val, size=size, replace=False))
            results.append(evaluate(y, raw, labels, picked, config, methods))
        rows += summarise(variant, size, results, args.seeds)
        print(f"{variant}: done", flush=True)
    write_result("threshold_robustness", argv, {
        "run": run_dir.name, "validation_texts": n_val, "test_texts": len(y["test"]),
        "labels": len(labels), "seeds": args.seeds, **{f"04_{k}": v for k, v in config.items()},
        **check,
    }, rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
