"""Running a class-weight sweep: train and evaluate once per combination of a parameter grid.

Stages 01-02 do not depend on how the loss is weighted, so a sweep prepares the data once (or
takes it from an existing run) and runs 03-04 per combination. Each combination is a complete
run directory of its own, executed by ``python -m mlclf_utils run`` in its own process, so a
crash in one (a bad value, an exhausted memory) cannot touch the others. What the sweep left
behind is read, compared and drawn by ``mlclf_utils.runner.sweep``.
"""

from __future__ import annotations

import datetime as _dt
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

from mlclf_utils import artifacts
from mlclf_utils.artifacts import MANIFEST, STAGES, read_json, write_json
from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.runner.parameters import (RUNNER_PARAMETERS, all_parameter_specs, parameter_specs,
                                           stage_notebooks, typed_value)
from mlclf_utils.runner.runs import (FINISHED, STATUS_FAILED, STATUS_INTERRUPTED, STATUS_OK,
                                     STATUS_RUNNING, new_run_id, runs_root)
from mlclf_utils.runner.sweep import (COMPARISON_FILE, FIRST_STAGE, LAST_STAGE, LOGS_DIR,
                                      PARAMETERS_DIR, SELECTION_METRIC, SWEEP_FILE, SWEEPS_DIR,
                                      compare, data_fingerprint, plot_f1, plot_rare_labels,
                                      rarest_labels)

# The combination with pos_weight_strategy=none already is the plain recipe, so 04 need not
# train one more plain baseline per combination; and a combination's 04 presents no sweep.
SWEEP_DEFAULTS = {"plain_baseline": False, "frozen_baseline": False, "sweep_dir": False}
# 03's walkthrough (the loss checks, its figures, the pos_weight probe) teaches a reader; a
# combination is there to train. Set only when 03 declares the switch.
TEACHING_OFF = {"teaching": False}
BACKENDS = ("local", "sagemaker")


def sweep_defaults(folder: Path | None = None) -> dict:
    """What every combination receives unless the user says otherwise."""
    train = [nb for nb in stage_notebooks(folder) if nb.stem == FIRST_STAGE]
    declared = parameter_specs(train[0]) if train else {}
    return {**SWEEP_DEFAULTS, **{k: v for k, v in TEACHING_OFF.items() if k in declared}}


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["pos_weight_strategy=none,sqrt", "pos_weight_floor=0.5,1"]`` -> name: values.

    Each value is read like a ``-p`` value (YAML: ``1`` an int, ``null`` None, ``none`` the
    string "none"), against the parameter's declared types. A value holding a comma (a list)
    cannot be swept this way; use a --config file per value instead.
    """
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


def combination_values(combination: dict, params: dict, defaults: dict) -> dict:
    """A combination's parameters: the sweep's defaults, the shared values, then its own."""
    return {**defaults, **params, **combination}


def check_sweep(grid: dict[str, list], params: dict, base: Path | None) -> list[dict]:
    """Validate every combination exactly as its own ``run`` will, before any training starts."""
    from mlclf_utils.runner.pipeline import plan_run, select_stages

    swept = select_stages(stage_notebooks(), FIRST_STAGE, LAST_STAGE)
    swept_names = set().union(*(set(parameter_specs(nb)) for nb in swept)) - RUNNER_PARAMETERS
    outside = sorted(set(grid) - swept_names)
    if outside:
        raise ParameterError("--grid", outside, f"a sweep runs {FIRST_STAGE}-{LAST_STAGE}, which "
                             f"do not read these; they can take {sorted(swept_names)}")
    combos = combinations(grid)
    defaults = sweep_defaults()
    for combo in combos:
        values = combination_values(combo, params, defaults)
        if base is not None:
            plan_run(values, first=FIRST_STAGE, last=LAST_STAGE, resume=base)
        else:  # 01-02 will run with ``params`` first; check what 03-04 will then receive
            plan_run(values, notebooks=None, first=None, last=LAST_STAGE)
    return combos


def _thread_env(parallel: int) -> dict:
    """Split the cores between trainings running side by side; two trainings that each take
    every core run slower together than one after the other. A user's OMP_NUM_THREADS wins."""
    from mlclf_utils.modeling.distributed import available_cores

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


def _check_s3_channels(backend: str, base: Path | None, params: dict) -> None:
    """A sagemaker sweep trains on S3 channels: 02 must have uploaded them, or will."""
    from mlclf_utils.cloud import sagemaker_training

    if backend != "sagemaker":
        return
    if base is not None:
        sagemaker_training.check_channels(base)
    elif not params.get("s3_uri"):
        raise ParameterError("s3_uri", None, "a sagemaker sweep trains on S3 channels: pass "
                             "-p s3_uri s3://bucket/prefix for 02, or a --base whose 02 had one")


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
    from mlclf_utils.cloud import sagemaker_training
    from mlclf_utils.runner.pipeline import run_pipeline
    from mlclf_utils.runner.resume import check_reusable

    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ParameterError("--jobs", jobs, "must be a positive integer")
    if backend not in BACKENDS:
        raise ParameterError("--backend", backend, f"choose one of {list(BACKENDS)}")
    params = dict(params or {})
    if base is not None:
        base = Path(base)
        if not base.is_dir():
            raise ParameterError("--base", str(base), "no such run directory")
        check_reusable(base, list(STAGES[:STAGES.index(FIRST_STAGE)]))
    _check_s3_channels(backend, base, params)
    remote = {"mode": "sagemaker"} if backend == "sagemaker" else {}
    combos = check_sweep(grid, {**params, **remote}, base)
    if base is None:
        base = run_pipeline(params, last=STAGES[STAGES.index(FIRST_STAGE) - 1], progress=progress)
    fingerprint, rare = data_fingerprint(base), rarest_labels(base)

    sweep_id = new_run_id()
    job_names = (sagemaker_training.sweep_job_names(job_prefix or f"mlclf-sweep-{sweep_id}",
                                                   len(combos)) if remote else [None] * len(combos))
    sweep_dir = runs_root() / SWEEPS_DIR / sweep_id
    sweep_dir.mkdir(parents=True)
    (sweep_dir / LOGS_DIR).mkdir()
    (sweep_dir / PARAMETERS_DIR).mkdir()
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
    defaults = sweep_defaults()
    work = []
    for index, (combo, job_name) in enumerate(zip(combos, job_names), start=1):
        name = combination_name(index, combo)
        values = {**combination_values(combo, params, defaults), **remote}
        if job_name:
            values["job_name"] = job_name
        config = write_json(sweep_dir / PARAMETERS_DIR / f"{name}.json", values)  # JSON is YAML
        command = [sys.executable, "-m", "mlclf_utils", "run", "--resume", str(base.resolve()),
                   "--from", FIRST_STAGE, "--to", LAST_STAGE, "--run-dir", str(sweep_dir / name),
                   "--config", str(config), "--no-progress"]
        log = f"{LOGS_DIR}/{name}.log"
        info["combinations"].append({"name": name, "values": combo, "status": "pending",
                                     "log": log, "command": command,
                                     **({"training_job_name": job_name} if job_name else {})})
        work.append((info["combinations"][-1], command, sweep_dir / log))
    write_json(sweep_dir / SWEEP_FILE, info)

    _run_combinations(work, info, sweep_dir, jobs=jobs, progress=progress)
    return _conclude(info, sweep_dir)


def _run_combinations(work: list, info: dict, sweep_dir: Path, *, jobs: int,
                      progress: bool) -> None:
    """Each combination in its own process, ``jobs`` at a time; sweep.json follows every end."""
    from tqdm.auto import tqdm

    env = _thread_env(min(jobs, len(work)))
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


def _conclude(info: dict, sweep_dir: Path) -> Path:
    """The comparison, the best combination and the figures; SweepFailed if any did not finish."""
    table = compare(sweep_dir)
    table.to_csv(sweep_dir / COMPARISON_FILE)
    finished = table[table["status"] == STATUS_OK]
    if len(finished) and finished[SELECTION_METRIC].notna().any():
        best = finished[SELECTION_METRIC].astype(float).idxmax()
        info["best"] = {"name": best, "values": next(c["values"] for c in info["combinations"]
                                                      if c["name"] == best)}
        write_json(sweep_dir / SWEEP_FILE, info)
        figures = sweep_dir / artifacts.FIGURES_DIR
        plot_f1(table, figures / "sweep_f1.png")
        plot_rare_labels(table, figures / "sweep_rare_labels.png")
    failed = [c for c in info["combinations"] if c["status"] != STATUS_OK]
    if failed:
        details = "\n".join(f"  {c['name']}: {c.get('error', c['status'])} (log: {sweep_dir / c['log']})"
                            for c in failed)
        raise SweepFailed(f"{len(failed)} of {len(info['combinations'])} combinations failed; the "
                          f"others are compared in {sweep_dir / COMPARISON_FILE}\n{details}",
                          sweep_dir)
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
