"""The class-weight experiment loop: train and evaluate once per grid combination.

Stages 01-02 do not depend on how the loss is weighted, so a sweep prepares the data once (or
takes it from an existing run) and runs 03-04 per combination. Each combination is a complete
run directory of its own, executed by ``python -m mlclf_utils run`` in its own process, so a
crash in one (a bad value, an exhausted memory) cannot touch the others. The comparison reads
only what those runs wrote: 04's ``report.json`` and ``per_class_test.csv``.

Layout: ``runs/sweeps/<sweep-id>/`` holds ``sweep.json`` (grid, base run, data fingerprint,
status of each combination), ``comparison.csv``, ``figures/``, one run directory per
combination and ``logs/`` with each process's output.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.artifacts import read_json
from mlclf_utils.runner.runs import FINISHED, MANIFEST, STAGES, STATUS_FAILED, STATUS_INTERRUPTED, STATUS_OK, STATUS_RUNNING, new_run_id, runs_root
from mlclf_utils.artifacts import read_json, write_json

SWEEPS_DIR = "sweeps"
SWEEP_FILE = "sweep.json"
COMPARISON_FILE = "comparison.csv"
FIRST_STAGE, LAST_STAGE = "03_train", "04_evaluate"
# The combination with pos_weight_strategy=none already is the plain recipe, so 04 need not
# train one more plain baseline per combination; and a combination's 04 presents no sweep.
SWEEP_DEFAULTS = {"plain_baseline": False, "sweep_dir": False}
SELECTION_METRIC = "validation_macro_f1"
BACKENDS = ("local", "sagemaker")
N_RARE_LABELS = 3


# --- the grid ----------------------------------------------------------------------------

def parse_grid(items: list[str]) -> dict[str, list]:
    """``["pos_weight_strategy=none,sqrt", "pos_weight_floor=0.5,1"]`` -> name: values.

    Each value is read like a ``-p`` value (YAML: ``1`` an int, ``null`` None, ``none`` the
    string "none"), against the parameter's declared types. A value holding a comma (a list)
    cannot be swept this way; use a --config file per value instead.
    """
    from mlclf_utils.runner.pipeline import all_parameter_specs, typed_value

    specs = all_parameter_specs()
    if not items:
        raise ParameterError("--grid", None, "give at least one NAME=V1,V2,...")
    grid: dict[str, list] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ParameterError("--grid", item, "must look like NAME=V1,V2,...")
        if name in grid:
            raise ParameterError("--grid", item, f"{name} is given twice")
        texts = [text.strip() for text in values.split(",")]
        if not all(texts):
            raise ParameterError("--grid", item, "has an empty value")
        parsed = [typed_value(name, text, specs) for text in texts]
        if len({json.dumps(v, sort_keys=True) for v in parsed}) != len(parsed):
            raise ParameterError("--grid", item, "repeats a value")
        grid[name] = parsed
    return grid


def combinations(grid: dict[str, list]) -> list[dict]:
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*grid.values())]


def combination_name(index: int, combination: dict) -> str:
    """``02_pos_weight_strategy=sqrt_pos_weight_floor=1``: sortable, and readable in ``ls``."""
    parts = [f"{name}={value}" for name, value in combination.items()]
    text = "_".join(parts).replace("/", "-").replace(" ", "")
    return f"{index:02d}_{text}"[:120]


# --- identity of the data a sweep was trained on -------------------------------------------

def data_fingerprint(run_dir: str | Path) -> str:
    """A hash of 02's saved splits, so a sweep can be matched to any run on the same data.

    Only the Arrow data and the label map count: ``state.json`` carries a random fingerprint
    per save, and the cache files ``datasets`` adds later change nothing in the data.
    """
    from mlclf_utils.data.dataset import DATASET_DIR, LABEL_MAP_FILE, SPLITS, STAGE

    root = Path(run_dir) / STAGE / DATASET_DIR
    digest = hashlib.sha256()
    files = [p for split in SPLITS for p in sorted((root / split).glob("data-*.arrow"))]
    if files:
        files += [root / split / LABEL_MAP_FILE for split in SPLITS
                  if (root / split / LABEL_MAP_FILE).exists()]
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
    from mlclf_utils.data.dataset import DATASET_DIR, STAGE, load_split

    train, label_map = load_split(Path(run_dir) / STAGE / DATASET_DIR / "train")
    counts = np.asarray(train["labels"], dtype=np.float32).sum(axis=0)
    order = sorted(range(len(counts)), key=lambda i: (counts[i], label_map.labels[i]))
    return [label_map.labels[i] for i in order[:n]]


# --- running -------------------------------------------------------------------------------

def check_sweep(grid: dict[str, list], params: dict, base: Path | None) -> list[dict]:
    """Validate every combination exactly as its own ``run`` will, before any training starts."""
    from mlclf_utils.runner.pipeline import parameter_specs, plan_run, select_stages, stage_notebooks

    swept = select_stages(stage_notebooks(), FIRST_STAGE, LAST_STAGE)
    swept_names = set().union(*(set(parameter_specs(nb)) for nb in swept)) - {"run_dir"}
    outside = sorted(set(grid) - swept_names)
    if outside:
        raise ParameterError("--grid", outside, f"a sweep runs {FIRST_STAGE}-{LAST_STAGE}, which "
                             f"do not read these; they can take {sorted(swept_names)}")
    combos = combinations(grid)
    for combo in combos:
        values = {**SWEEP_DEFAULTS, **params, **combo}
        if base is not None:
            plan_run(values, first=FIRST_STAGE, last=LAST_STAGE, resume=base)
        else:  # 01-02 will run with ``params`` first; check what 03-04 will then receive
            plan_run(values, notebooks=None, first=None, last=LAST_STAGE)
    return combos


def _thread_env(parallel: int) -> dict:
    """Split the cores between trainings running side by side; two trainings that each take
    every core run slower together than one after the other. A user's OMP_NUM_THREADS wins."""
    from mlclf_utils.modeling.train import available_cores

    env = dict(os.environ)
    if not env.get("OMP_NUM_THREADS"):
        env["OMP_NUM_THREADS"] = str(max(1, available_cores() // parallel))
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    return env


class SweepFailed(MlclfError):
    """Some combinations failed; the others were compared. Carries the sweep directory."""

    def __init__(self, message: str, sweep_dir: Path):
        super().__init__(message)
        self.sweep_dir = sweep_dir


class _Children:
    """The combination processes now running, so that Ctrl-C can stop them all."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self.stopping = False

    def run(self, command: list[str], log: Path, env: dict) -> tuple[int | None, float]:
        started = time.perf_counter()
        with log.open("w") as out:
            with self._lock:
                if self.stopping:
                    return None, 0.0
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True)
                self._running.add(process)
            try:
                code = process.wait()
            finally:
                with self._lock:
                    self._running.discard(process)
        return code, time.perf_counter() - started

    def stop(self, grace: float = 30.0) -> None:
        """SIGINT first (each run then marks its stage interrupted), SIGKILL after ``grace``."""
        with self._lock:
            self.stopping = True
            running = list(self._running)
        for process in running:
            _signal_group(process, signal.SIGINT)
        deadline = time.monotonic() + grace
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()


def _signal_group(process: subprocess.Popen, sig) -> None:
    try:
        os.killpg(process.pid, sig)  # the run and its notebook kernel
    except ProcessLookupError:
        pass


def run_sweep(
    grid: dict[str, list],
    *,
    params: dict | None = None,
    base: str | Path | None = None,
    jobs: int = 1,
    progress: bool = True,
    backend: str = "local",
    job_prefix: str | None = None,
) -> Path:
    """Run 03-04 for every combination of ``grid``; return the sweep directory.

    Without ``base``, 01-02 run once first (with ``params``) into a new run, which becomes the
    base. A failed combination is recorded with its log and error; the rest still run, and the
    comparison covers those that finished. Raises ``SweepFailed`` at the end if any failed.
    Ctrl-C stops the running combinations, cancels the rest and records both in sweep.json.

    ``backend="sagemaker"`` trains each combination as a SageMaker job of its own (03 with
    ``mode="sagemaker"``, named ``<job_prefix>-NN``), waits for it, and evaluates it here
    with 04, so the comparison is the same as for local combinations.
    """
    from tqdm.auto import tqdm

    from mlclf_utils.cloud import sagemaker_training
    from mlclf_utils.runner.pipeline import check_reusable, run_pipeline

    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ParameterError("--jobs", jobs, "must be a positive integer")
    if backend not in BACKENDS:
        raise ParameterError("--backend", backend, f"choose one of {list(BACKENDS)}")
    params = dict(params or {})
    remote = {"mode": "sagemaker"} if backend == "sagemaker" else {}
    if base is not None:
        base = Path(base)
        if not base.is_dir():
            raise ParameterError("--base", str(base), "no such run directory")
        check_reusable(base, list(STAGES[:STAGES.index(FIRST_STAGE)]))
        if remote:
            sagemaker_training.check_channels(base)
    elif remote and not params.get("s3_uri"):
        raise ParameterError("s3_uri", None, "a sagemaker sweep trains on S3 channels: pass "
                             "-p s3_uri s3://bucket/prefix for 02, or a --base whose 02 had one")
    combos = check_sweep(grid, {**params, **remote}, base)
    if base is None:
        base = run_pipeline(params, last=STAGES[STAGES.index(FIRST_STAGE) - 1], progress=progress)
    fingerprint = data_fingerprint(base)
    rare = rarest_labels(base)

    sweep_id = new_run_id()
    job_names = (sagemaker_training.sweep_job_names(job_prefix or f"mlclf-sweep-{sweep_id}",
                                                   len(combos)) if remote else [None] * len(combos))
    sweep_dir = runs_root() / SWEEPS_DIR / sweep_id
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "logs").mkdir()
    (sweep_dir / "parameters").mkdir()
    info = {
        "sweep_id": sweep_dir.name,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "base_run": str(base.resolve()),
        "data_fingerprint": fingerprint,
        "grid": grid,
        "parameters": params,
        "jobs": jobs,
        "backend": backend,
        "stages": [FIRST_STAGE, LAST_STAGE],
        "selection_metric": SELECTION_METRIC,
        "rare_labels": rare,
        "combinations": [],
    }
    work = []
    for index, (combo, job_name) in enumerate(zip(combos, job_names), start=1):
        name = combination_name(index, combo)
        values = {**SWEEP_DEFAULTS, **params, **combo, **remote}
        if job_name:
            values["job_name"] = job_name
        config = sweep_dir / "parameters" / f"{name}.json"
        config.write_text(json.dumps(values, indent=2, allow_nan=False) + "\n")  # JSON is YAML
        command = [sys.executable, "-m", "mlclf_utils", "run", "--resume", str(base.resolve()),
                   "--from", FIRST_STAGE, "--to", LAST_STAGE, "--run-dir", str(sweep_dir / name),
                   "--config", str(config), "--no-progress"]
        info["combinations"].append({"name": name, "values": combo, "status": "pending",
                                     "log": f"logs/{name}.log", "command": command,
                                     **({"training_job_name": job_name} if job_name else {})})
        work.append((info["combinations"][-1], command, sweep_dir / "logs" / f"{name}.log"))
    write_json(sweep_dir / SWEEP_FILE, info)

    env = _thread_env(min(jobs, len(combos)))
    children = _Children()
    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = {pool.submit(children.run, command, log, env): entry for entry, command, log in work}
    bar = tqdm(total=len(futures), desc="sweep", unit="run", disable=not progress)
    try:
        for future in as_completed(futures):
            entry = futures[future]
            code, seconds = future.result()
            _record(entry, code, seconds, sweep_dir)
            write_json(sweep_dir / SWEEP_FILE, info)
            bar.update(1)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        children.stop()
        pool.shutdown(wait=True)
        for future, entry in futures.items():
            if entry["status"] != "pending":
                continue
            code, seconds = (None, 0.0) if future.cancelled() else future.result()
            if code is None:
                entry["status"] = "cancelled"
            else:
                _record(entry, code, seconds, sweep_dir)
                entry["status"] = STATUS_INTERRUPTED
        info["interrupted"] = True
        write_json(sweep_dir / SWEEP_FILE, info)
        raise
    finally:
        bar.close()
        pool.shutdown(wait=True)

    table = compare(sweep_dir)
    table.to_csv(sweep_dir / COMPARISON_FILE)
    finished = table[table["status"] == STATUS_OK]
    if len(finished) and finished[SELECTION_METRIC].notna().any():
        best = finished[SELECTION_METRIC].astype(float).idxmax()
        info["best"] = {"name": best, "values": next(c["values"] for c in info["combinations"]
                                                      if c["name"] == best)}
        write_json(sweep_dir / SWEEP_FILE, info)
        figures = sweep_dir / "figures"
        plot_f1(table, figures / "sweep_f1.png")
        plot_rare_labels(table, figures / "sweep_rare_labels.png")
    failed = [c for c in info["combinations"] if c["status"] != STATUS_OK]
    if failed:
        details = "\n".join(f"  {c['name']}: {c.get('error', c['status'])} (log: {sweep_dir / c['log']})"
                            for c in failed)
        raise SweepFailed(f"{len(failed)} of {len(combos)} combinations failed; the others are "
                          f"compared in {sweep_dir / COMPARISON_FILE}\n{details}", sweep_dir)
    return sweep_dir


def _record(entry: dict, code: int | None, seconds: float, sweep_dir: Path) -> None:
    entry.update(status=STATUS_OK if code == 0 else STATUS_FAILED, returncode=code,
                 seconds=round(seconds, 1))
    if code != 0:
        entry["error"] = _failure_of(sweep_dir / entry["name"], sweep_dir / entry["log"], code)


def _failure_of(run_dir: Path, log: Path, code: int | None = None) -> str:
    """What went wrong, in one line: the failing stage's error from its manifest; for a process
    killed by a signal (the OOM killer, say), the signal and the stage it was in."""
    stages = []
    if (run_dir / MANIFEST).exists():
        stages = read_json(run_dir / MANIFEST, what="run manifest").get("stages", [])
    for stage in stages:
        if stage.get("status") not in (*FINISHED, STATUS_RUNNING):
            return f"{stage['stage']}: {stage.get('error', stage['status'])}"
    if code is not None and code < 0:
        running = next((s["stage"] for s in stages if s.get("status") == STATUS_RUNNING), "startup")
        return f"{running}: killed by {signal.Signals(-code).name}"
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
    return lines[-1] if lines else "no output"


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
        evaluation = sweep_dir / entry["name"] / "04_evaluate"
        if entry["status"] == STATUS_OK:
            report = read_json(evaluation / "report.json", what="04 report")
            row.update({
                "validation_macro_f1": (report.get("validation_tuned") or {}).get("macro_f1"),
                "test_macro_f1": report["test_tuned"]["macro_f1"],
                "test_micro_f1": report["test_tuned"]["micro_f1"],
                "test_macro_f1_at_0.5": report["test_at_0.5"]["macro_f1"],
            })
            per_class_path = evaluation / "per_class_test.csv"
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
