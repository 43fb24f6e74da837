"""A sweep's record: reading, comparing, summarising and drawing what its combinations left.

``mlclf_utils.runner.sweep_launch`` runs the combinations. What it leaves is read here, and
only here: ``sweep.json`` (grid, base run, data fingerprint, status of each combination),
``comparison.csv``, ``figures/``, one run directory per combination, ``logs/`` with each
process's output and ``parameters/`` with each combination's values. The comparison reads only
what those runs wrote: 04's report and per-class table, found through ``mlclf_utils.artifacts``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils import artifacts
from mlclf_utils.artifacts import read_json
from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.runner.runs import STATUS_OK, runs_root

SWEEPS_DIR = "sweeps"  # under runs/
SWEEP_FILE = "sweep.json"
COMPARISON_FILE = "comparison.csv"
LOGS_DIR = "logs"
PARAMETERS_DIR = "parameters"
FIRST_STAGE, LAST_STAGE = artifacts.TRAIN, artifacts.EVALUATE
SELECTION_METRIC = "validation_macro_f1"
N_RARE_LABELS = 3


# --- identity of the data a sweep was trained on -------------------------------------------

def data_fingerprint(run_dir: str | Path) -> str:
    """A hash of 02's saved splits, so a sweep can be matched to any run on the same data.

    Only the Arrow data and the label map count: ``state.json`` carries a random fingerprint
    per save, and the cache files ``datasets`` adds later change nothing in the data.
    """
    root = artifacts.path(run_dir, artifacts.SAVE_DATA, artifacts.DATASET_DIR)
    digest = hashlib.sha256()
    files = [p for split in artifacts.SPLITS for p in sorted((root / split).glob("data-*.arrow"))]
    if files:
        files += [root / split / artifacts.LABEL_MAP for split in artifacts.SPLITS
                  if (root / split / artifacts.LABEL_MAP).exists()]
    if not files:
        raise MlclfError(f"{root} holds no saved splits: run 02_save_data first")
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def rarest_labels(run_dir: str | Path, n: int = N_RARE_LABELS) -> list[str]:
    """The labels with the fewest training positives: where class weights matter most."""
    from mlclf_utils.data.dataset import load_split

    train, label_map = load_split(artifacts.path(run_dir, artifacts.SAVE_DATA,
                                                 artifacts.DATASET_DIR, "train"))
    counts = np.asarray(train["labels"], dtype=np.float32).sum(axis=0)
    order = sorted(range(len(counts)), key=lambda i: (counts[i], label_map.labels[i]))
    return [label_map.labels[i] for i in order[:n]]


# --- the comparison ------------------------------------------------------------------------

def compare(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per combination: its values, status, the F1 scores and the rarest labels'
    recall and precision on test (at the thresholds tuned on validation). A combination that
    did not finish keeps its row, with its status and error and no scores."""
    sweep_dir = Path(sweep_dir)
    info = read_json(sweep_dir / SWEEP_FILE, what="sweep record")
    rare = info.get("rare_labels") or rarest_labels(info["base_run"])
    rows = []
    for entry in info["combinations"]:
        row = {"combination": entry["name"], **entry["values"], "status": entry["status"]}
        run_dir = sweep_dir / entry["name"]
        if entry["status"] == STATUS_OK:
            report = read_json(artifacts.path(run_dir, artifacts.EVALUATE, artifacts.REPORT),
                               what="04 report")
            row.update({
                "validation_macro_f1": (report.get("validation_tuned") or {}).get("macro_f1"),
                "test_macro_f1": report["test_tuned"]["macro_f1"],
                "test_micro_f1": report["test_tuned"]["micro_f1"],
                "test_macro_f1_at_0.5": report["test_at_0.5"]["macro_f1"],
            })
            per_class_path = artifacts.path(run_dir, artifacts.EVALUATE, artifacts.PER_CLASS_TEST)
            if not per_class_path.exists():
                raise MlclfError(f"{per_class_path} is missing: that combination's 04 did not "
                                 "finish writing its artifacts")
            per_class = pd.read_csv(per_class_path, index_col="label")
            for label in rare:
                row[f"recall[{label}]"] = per_class.loc[label, "recall"]
                row[f"precision[{label}]"] = per_class.loc[label, "precision"]
        if entry.get("training_job_name"):
            row["training_job"] = entry["training_job_name"]
        row["minutes"] = round(entry["seconds"] / 60, 1) if entry.get("seconds") else None
        row["error"] = entry.get("error")
        rows.append(row)
    return pd.DataFrame(rows).set_index("combination")


def load(sweep_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """A finished sweep's comparison table and its ``sweep.json``."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / SWEEP_FILE).exists():
        raise ParameterError("sweep_dir", str(sweep_dir), f"holds no {SWEEP_FILE}")
    if not (sweep_dir / COMPARISON_FILE).exists():
        raise MlclfError(f"{sweep_dir} has no {COMPARISON_FILE} yet: the sweep is still running "
                         "or was interrupted")
    table = pd.read_csv(sweep_dir / COMPARISON_FILE, index_col="combination")
    return table, read_json(sweep_dir / SWEEP_FILE, what="sweep record")


def find_sweep(run_dir: str | Path, sweep_dir: str | Path | bool | None = None) -> Path | None:
    """``sweep_dir`` if given, else the newest sweep trained on this run's data that has a
    best combination. ``sweep_dir=False`` turns the search off (a sweep's own runs use it)."""
    if sweep_dir is False:
        return None
    if sweep_dir:
        return Path(sweep_dir)
    folder = runs_root() / SWEEPS_DIR
    if not folder.is_dir():
        return None
    fingerprint = data_fingerprint(run_dir)
    for candidate in sorted(folder.iterdir(), reverse=True):
        path = candidate / SWEEP_FILE
        if (candidate / COMPARISON_FILE).exists() and path.exists():
            info = read_json(path, what="sweep record")
            if info.get("data_fingerprint") == fingerprint and "best" in info:
                return candidate
    return None


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """The table as a reader wants it: best validation macro-F1 first, then the combinations
    that did not finish (kept, with their error, so that none goes missing unnoticed)."""
    done = table[table["status"] == STATUS_OK]
    if SELECTION_METRIC in done.columns:
        done = done.sort_values(SELECTION_METRIC, ascending=False)
    rest = table[table["status"] != STATUS_OK]
    shown = pd.concat([done, rest])
    if "error" in shown.columns and shown["error"].isna().all():
        shown = shown.drop(columns=["error"])
    if (shown["status"] == STATUS_OK).all():
        shown = shown.drop(columns=["status"])
    return shown.round(3)


# --- figures -------------------------------------------------------------------------------

def _labels_for_plot(table: pd.DataFrame, grid_names: list[str]) -> list[str]:
    return [", ".join(f"{n}={row[n]}" for n in grid_names) for _, row in table.iterrows()]


def _grid_names(table: pd.DataFrame) -> list[str]:
    stop = list(table.columns).index("status")
    return list(table.columns[:stop])


def _finished(table: pd.DataFrame) -> pd.DataFrame:
    done = table[table["status"] == STATUS_OK]
    if done.empty:
        raise MlclfError("no combination of this sweep finished: nothing to plot")
    return done


def plot_f1(table: pd.DataFrame, path=None):
    """Macro- and micro-F1 on test, and validation macro-F1 (the selection metric), per run."""
    from mlclf_utils.figures import pyplot, save_figure

    plt, sns = pyplot()

    done = _finished(table)
    names = _labels_for_plot(done, _grid_names(table))
    long = pd.DataFrame({
        "combination": names * 3,
        "metric": (["validation macro-F1"] * len(done) + ["test macro-F1"] * len(done)
                   + ["test micro-F1"] * len(done)),
        "score": list(done["validation_macro_f1"]) + list(done["test_macro_f1"])
        + list(done["test_micro_f1"]),
    })
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(done) + 3), 4))
    sns.barplot(data=long, x="combination", y="score", hue="metric", ax=ax)
    ax.set_ylim(0, 1)
    ax.set_xlabel("")
    ax.set_title("Class-weight sweep: F1 at thresholds tuned on validation")
    ax.tick_params(axis="x", rotation=20)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_rare_labels(table: pd.DataFrame, path=None):
    """Recall and precision of the rarest labels: the ones class weights exist for."""
    from mlclf_utils.figures import pyplot, save_figure

    plt, sns = pyplot()

    done = _finished(table)
    names = _labels_for_plot(done, _grid_names(table))
    rows = []
    for column in done.columns:
        if column.startswith(("recall[", "precision[")):
            kind, label = column[:-1].split("[", 1)
            for name, value in zip(names, done[column]):
                rows.append({"label": label, "measure": kind, "combination": name, "value": value})
    long = pd.DataFrame(rows)
    measures = ["recall", "precision"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, measure in zip(axes, measures):
        part = long[long["measure"] == measure]
        sns.barplot(data=part, x="label", y="value", hue="combination", ax=ax)
        ax.set_title(f"{measure} on test, rarest labels")
        ax.set_ylim(0, 1)
        ax.set_xlabel("")
        if ax is not axes[-1]:
            ax.get_legend().remove()
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    save_figure(fig, path)
    return fig
