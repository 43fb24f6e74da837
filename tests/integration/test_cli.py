"""``python -m mlclf_utils run`` and ``sweep`` as users call them: real processes, the tiny model.

One smoke run of 01-02 is shared by the tests (they only ever read it); every test checks that
it is left as it was.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import references
from mlclf_utils.runner import sweep
from mlclf_utils.artifacts import read_json

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


def cli(*args, runs_root: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLCLF_RUNS_DIR": str(runs_root)}
    result = subprocess.run([sys.executable, "-m", "mlclf_utils", *map(str, args)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def finished_run(result: subprocess.CompletedProcess) -> Path:
    return Path(re.search(r"^run finished: (.+)$", result.stdout, re.M).group(1))


def snapshot(run: Path) -> dict:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in sorted(run.rglob("*"))}


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-runs")


@pytest.fixture(scope="module")
def base_result(shared_runs):
    return cli("run", "--config", SMOKE, "--to", "02", "--no-progress", runs_root=shared_runs)


@pytest.fixture(scope="module")
def base_run(base_result, shared_runs):
    """01-02 with the smoke parameters, via the CLI; the manifest is checked here once."""
    run = finished_run(base_result)
    assert run.parent == shared_runs and (shared_runs / "LATEST").read_text().strip() == run.name

    manifest = read_json(run / "manifest.json")
    assert manifest["run_id"] == run.name
    assert manifest["parameters"] == references.smoke_parameters()
    assert manifest["resumed_from"] is None
    assert re.fullmatch(r"[0-9a-f]{40}", manifest["git"]["commit"])
    assert manifest["packages"]["torch"].startswith("2.13.0")
    assert manifest["packages"]["papermill"] and manifest["packages"]["python"]
    assert [(s["stage"], s["status"]) for s in manifest["stages"]] == [
        ("01_preprocess", "ok"), ("02_save_data", "ok")]
    assert all(s["seconds"] > 0 for s in manifest["stages"])
    # Each stage records every value it ran with: the smoke values over its own defaults.
    assert manifest["stages"][1]["parameters"] == {"s3_uri": None}
    first = manifest["stages"][0]["parameters"]
    assert first["model_name"] == "mlclf/tiny-random-distilbert" and first["seed"] == 42
    assert first["sample_size"] is None and "run_dir" not in first
    logs = {p.name: p.read_text(errors="replace")[:2000] for p in run.glob("*.kernel.log")}
    assert not logs, f"a clean stage left a kernel log: {logs}"
    assert {p.name for p in run.iterdir()} == {
        "manifest.json", "01_preprocess", "01_preprocess.ipynb", "02_save_data", "02_save_data.ipynb"}
    return run


def test_resume_runs_the_later_stages_in_a_new_run_from_the_earlier_artifacts(base_run, shared_runs):
    before = snapshot(base_run)
    result = cli("run", "--resume", base_run, "--from", "03", "--to", "04", "-p", "max_steps", "4",
                 "-p", "plain_baseline", "false",
                 "--no-progress", runs_root=shared_runs)
    run = finished_run(result)
    assert run != base_run and snapshot(base_run) == before

    manifest = read_json(run / "manifest.json")
    assert manifest["resumed_from"] == str(base_run.resolve())
    assert manifest["overrides"] == {"max_steps": 4, "plain_baseline": False}
    assert manifest["parameters"] == {**references.smoke_parameters(), **manifest["overrides"]}
    assert [(s["stage"], s["status"]) for s in manifest["stages"]] == [
        ("01_preprocess", "reused"), ("02_save_data", "reused"), ("03_train", "ok"),
        ("04_evaluate", "ok")]
    assert manifest["stages"][0]["from_run"] == base_run.name
    base_manifest = read_json(base_run / "manifest.json")
    assert manifest["stages"][0]["parameters"] == base_manifest["stages"][0]["parameters"]
    assert manifest["stages"][2]["parameters"]["max_steps"] == 4

    assert read_json(run / "03_train" / "metrics" / "metrics.json")["global_step"] == 4
    report = read_json(run / "04_evaluate" / "report.json")
    # Tuned thresholds give every label with validation positives an F1 above 0; all-zero
    # predictions (the fixed-0.5 failure) would give 0.
    assert report["validation_tuned"]["macro_f1"] > 0.1
    per_class = pd.read_csv(run / "04_evaluate" / "per_class_test.csv", index_col="label")
    assert {"precision", "recall", "f1", "support"} <= set(per_class.columns) and len(per_class) == 10
    # The reused data is the same data: a sweep on the base matches this run too.
    assert sweep.data_fingerprint(run) == sweep.data_fingerprint(base_run)
    assert not (run / "05_explain").exists()


def test_a_failing_stage_stops_the_run_keeps_its_notebook_and_can_be_resumed(base_run, shared_runs):
    failed = cli("run", "--resume", base_run, "--from", "03", "-p", "probe_label", "no-such-label",
                 "--no-progress", runs_root=shared_runs, check=False)
    assert failed.returncode == 2
    message = failed.stderr
    assert re.search(r"stage 03_train failed in cell \[\d+\] \(.+\) with \w+", message), message
    assert "no-such-label" in message
    run = Path(re.search(r"executed notebook with the traceback is (\S+)", message).group(1)).parent
    assert f"--resume {run}" in message

    manifest = read_json(run / "manifest.json")
    stages = {s["stage"]: s for s in manifest["stages"]}
    assert stages["03_train"]["status"] == "failed" and "no-such-label" in stages["03_train"]["error"]
    assert "04_evaluate" not in stages  # nothing ran after the failure
    executed = nbformat.read(str(run / "03_train.ipynb"), as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert len(errors) == 1 and stages["03_train"]["cell"] is not None

    resumed = cli("run", "--resume", run, "--to", "03", "-p", "probe_label", "null",
                  "--no-progress", runs_root=shared_runs)
    again = finished_run(resumed)
    manifest = read_json(again / "manifest.json")
    assert [(s["stage"], s["status"]) for s in manifest["stages"]] == [
        ("01_preprocess", "reused"), ("02_save_data", "reused"), ("03_train", "ok")]
    assert manifest["parameters"]["probe_label"] is None
    assert (run / "03_train.ipynb").exists()  # the failed run keeps its evidence


def test_bad_parameters_fail_before_any_stage_runs(base_run, shared_runs):
    before = {p.name for p in shared_runs.iterdir()}
    for args, pattern in [
        (("-p", "epochs", "three"), r"epochs.*must be int"),
        (("-p", "max_lenght", "64"), r"max_lenght.*no stage notebook takes"),
        (("-p", "pos_weight_strategy", "log"), r"pos_weight_strategy.*choose one of"),
        (("--from", "04"), r"--from.*needs --resume"),
        (("--resume", base_run, "--from", "03", "-p", "sample_size", "10"), r"sample_size"),
    ]:
        result = cli("run", "--config", SMOKE, *args, runs_root=shared_runs, check=False)
        assert result.returncode == 2 and re.search(pattern, result.stderr), result.stderr
    assert {p.name for p in shared_runs.iterdir()} == before


def test_negative_max_steps_is_refused_before_a_run_folder_is_made(tmp_path):
    runs = tmp_path / "runs"
    result = cli("run", "--config", SMOKE, "-p", "max_steps", "-5", "--no-progress",
                 runs_root=runs, check=False)
    assert result.returncode == 2, result.stderr
    assert re.search(r"^error: parameter max_steps=-5: must be -1 \(no limit\) or > 0",
                     result.stderr, re.M), result.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_sweep_over_a_2x1_grid(base_run, shared_runs, monkeypatch):
    before = snapshot(base_run)
    result = cli("sweep", "--base", base_run, "--config", SMOKE,
                 "--grid", "pos_weight_strategy=none,sqrt", "--grid", "pos_weight_floor=1",
                 "--jobs", "2", "--no-progress", runs_root=shared_runs)
    sweep_dir = Path(re.search(r"^sweep finished: (.+)$", result.stdout, re.M).group(1))
    assert sweep_dir.parent == shared_runs / "sweeps" and snapshot(base_run) == before

    info = read_json(sweep_dir / "sweep.json")
    assert info["grid"] == {"pos_weight_strategy": ["none", "sqrt"], "pos_weight_floor": [1]}
    assert info["base_run"] == str(base_run.resolve())
    assert [c["status"] for c in info["combinations"]] == ["ok", "ok"]
    assert info["best"]["name"] in {c["name"] for c in info["combinations"]}
    for combo in info["combinations"]:
        run = sweep_dir / combo["name"]
        manifest = read_json(run / "manifest.json")
        assert manifest["parameters"]["pos_weight_strategy"] == combo["values"]["pos_weight_strategy"]
        assert manifest["parameters"]["plain_baseline"] is False
        # 03's walkthrough is for readers; a combination only trains.
        train_entry = next(s for s in manifest["stages"] if s["stage"] == "03_train")
        assert manifest["parameters"]["teaching"] is False
        assert train_entry["parameters"]["teaching"] is False
        assert [s["status"] for s in manifest["stages"]] == ["reused", "reused", "ok", "ok"]
        hyper = read_json(run / "03_train" / "model" / "hyperparameters.json")
        assert hyper["pos_weight_strategy"] == combo["values"]["pos_weight_strategy"]
        report = read_json(run / "04_evaluate" / "report.json")
        assert "plain BCE @ 0.5" not in report["comparison"]

    table, _ = sweep.load(sweep_dir)
    assert list(table["pos_weight_strategy"]) == ["none", "sqrt"]
    assert list(table["pos_weight_floor"]) == [1, 1]
    rare = sweep.rarest_labels(base_run)
    for column in ["validation_macro_f1", "test_macro_f1", "test_micro_f1",
                   *[f"recall[{label}]" for label in rare], *[f"precision[{label}]" for label in rare]]:
        assert column in table.columns
    assert table["test_macro_f1"].between(0, 1).all()
    best = table["validation_macro_f1"].idxmax()
    assert info["best"]["name"] == best
    for figure in ("sweep_f1", "sweep_rare_labels"):
        assert (sweep_dir / "figures" / f"{figure}.png").stat().st_size > 5000
    # Notebook 04 of any run on the same data finds this sweep by itself.
    monkeypatch.setenv("MLCLF_RUNS_DIR", str(shared_runs))
    assert sweep.find_sweep(base_run) == sweep_dir


def test_one_failing_combination_does_not_lose_the_others(base_run, shared_runs):
    # probe_label is read by 03's walkthrough, which a sweep skips unless asked for it.
    result = cli("sweep", "--base", base_run, "--config", SMOKE, "-p", "teaching", "true",
                 "--grid", "probe_label=video,no-such-label", "--jobs", "2", "--no-progress",
                 runs_root=shared_runs, check=False)
    assert result.returncode == 2
    assert "1 of 2 combinations failed" in result.stderr
    assert re.search(r"no-such-label.*\(log: .+\.log\)", result.stderr)
    assert "probe_label=video" in result.stdout  # the finished one is still shown
    sweep_dir = Path(re.search(r"compared in (\S+)/comparison.csv", result.stderr).group(1))
    info = read_json(sweep_dir / "sweep.json")
    ok, failed = info["combinations"]
    assert ok["status"] == "ok" and failed["status"] == "failed"
    assert failed["error"].startswith("03_train:") and "no-such-label" in failed["error"]
    assert (sweep_dir / failed["log"]).exists()
    table = pd.read_csv(sweep_dir / "comparison.csv", index_col="combination")
    assert table.loc[ok["name"], "status"] == "ok" and table.loc[ok["name"], "test_macro_f1"] > 0.1
    assert table.loc[failed["name"], "status"] == "failed"
    assert pd.isna(table.loc[failed["name"], "test_macro_f1"])
    assert info["best"]["name"] == ok["name"]


def test_sweep_grid_errors_come_before_any_training(base_run, shared_runs):
    before = {p.name for p in shared_runs.iterdir()}
    sweeps_before = {p.name for p in (shared_runs / "sweeps").glob("*")}
    for grid, pattern in [
        ("sample_size=100,200", r"sample_size.*a sweep runs 03_train-04_evaluate"),
        ("pos_weight_strategy=none,log", r"pos_weight_strategy.*choose one of"),
        ("epochs=1,two", r"epochs.*must be int"),
        ("pos_weight_strategy", r"NAME=V1,V2"),
        ("epochs=1,,2", r"empty value"),
    ]:
        result = cli("sweep", "--base", base_run, "--config", SMOKE, "--grid", grid,
                     runs_root=shared_runs, check=False)
        assert result.returncode == 2 and re.search(pattern, result.stderr), (grid, result.stderr)
    assert {p.name for p in shared_runs.iterdir()} == before
    assert {p.name for p in (shared_runs / "sweeps").glob("*")} == sweeps_before


@pytest.mark.serial  # under a pytest-xdist worker the kernel dies at Ctrl-C instead of stopping
def test_ctrl_c_stops_a_sweep_and_records_what_ran(base_run, shared_runs):
    """The running combination is interrupted, the queued one never starts, and both are said."""
    import signal
    import time

    env = {**os.environ, "MLCLF_RUNS_DIR": str(shared_runs)}
    before = {p.name for p in (shared_runs / "sweeps").glob("*")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlclf_utils", "sweep", "--base", str(base_run), "--config", SMOKE,
         "--grid", "pos_weight_strategy=none,sqrt", "--jobs", "1", "--no-progress"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        manifest = None
        while time.monotonic() < deadline:
            new = {p.name for p in (shared_runs / "sweeps").glob("*")} - before
            found = list((shared_runs / "sweeps").glob(f"{next(iter(new))}/01_*/manifest.json")) if new else []
            if found and any(s["stage"] == "03_train" for s in read_json(found[0])["stages"]):
                manifest = found[0]
                break
            time.sleep(0.5)
        assert manifest is not None, "the first combination never reached 03_train"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    info = read_json(manifest.parent.parent / "sweep.json")
    assert info["interrupted"] is True
    assert [c["status"] for c in info["combinations"]] == ["interrupted", "cancelled"]
    assert not (manifest.parent.parent / info["combinations"][1]["name"]).exists()
    stages = {s["stage"]: s["status"] for s in read_json(manifest)["stages"]}
    assert stages["03_train"] in ("interrupted", "failed")


# --- issue 16: bad input and faults ------------------------------------------------------------

def _no_run_folder(runs: Path) -> bool:
    return not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("name, text, pattern", [
    ("epochs", "3.5", r"^error: parameter epochs=3\.5: 3\.5 is not a whole number"),
    ("learning_rate", ".nan", r"^error: parameter learning_rate=nan: NaN is not allowed"),
    ("learning_rate", ".inf", r"^error: parameter learning_rate=inf: infinity is not allowed"),
])
def test_a_fraction_or_nan_says_what_is_wrong(tmp_path, name, text, pattern):
    runs = tmp_path / "runs"
    result = cli("run", "--config", SMOKE, "-p", name, text, runs_root=runs, check=False)
    assert result.returncode == 2 and re.search(pattern, result.stderr, re.M), result.stderr
    assert _no_run_folder(runs)


@pytest.mark.parametrize("name, text, pattern", [
    ("split_proportions", "[0.8, 0.1, 0.2]", r"split_proportions=\[0\.8, 0\.1, 0\.2\]: must sum to 1"),
    ("max_length", "100000", r"max_length=100000: .*at most 512 tokens"),
    ("on_empty_text", "skip", r"on_empty_text='skip': choose one of \('error', 'drop'\)"),
])
def test_01_values_are_refused_in_preflight_before_a_run_folder_is_made(tmp_path, name, text, pattern):
    runs = tmp_path / "runs"
    result = cli("run", "--config", SMOKE, "-p", name, text, "--to", "01", runs_root=runs,
                 check=False)
    assert result.returncode == 2 and re.search(pattern, result.stderr), result.stderr
    assert "Traceback" not in result.stderr and _no_run_folder(runs), result.stderr


def test_a_run_does_not_print_the_kernel_tcp_warning(base_result):
    assert "finished" in base_result.stdout
    assert "without encryption" not in base_result.stderr, base_result.stderr


@pytest.mark.parametrize("how", ["--run-dir", "MLCLF_RUNS_DIR"])
def test_a_relative_run_folder_is_the_one_below_the_callers_directory(tmp_path, how):
    # Each stage's kernel starts in notebooks/: a path kept relative pointed elsewhere there,
    # and 01 stopped with FileNotFoundError on its kernel log.
    args = ["run", "--config", SMOKE, "-p", "source", str(ROOT / "tests" / "fixtures" /
            "smoke_packages.csv"), "--to", "01", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "MLCLF_RUNS_DIR"}
    if how == "--run-dir":
        args += ["--run-dir", "mine/first"]
    else:
        env["MLCLF_RUNS_DIR"] = "mine"
    result = subprocess.run([sys.executable, "-m", "mlclf_utils", *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    run = finished_run(result)
    assert run.is_absolute() and run.parent == tmp_path / "mine", run
    assert (run / "01_preprocess.ipynb").is_file() and not list(run.glob("*.kernel.log"))
    assert read_json(run / "manifest.json")["stages"][0]["status"] == "ok"


def test_dropped_rows_are_warned_about_in_one_line_naming_the_list(tmp_path, smoke_csv):
    """A text that cleaning empties (only a URL) and a row whose only label is rare are dropped;
    the CLI and the executed 01 notebook both say so, with the count and the file of ids."""
    source = tmp_path / "tickets.csv"
    source.write_text(smoke_csv.read_text().rstrip("\n")
                      + "\nhttps://example.org/only-a-link,database\n"
                      + '"Package 999: a lone text whose one tag is rare.",braille\n')
    runs = tmp_path / "runs"
    result = cli("run", "--config", SMOKE, "-p", "source", source, "--to", "01", "--no-progress",
                 runs_root=runs)
    run = finished_run(result)
    listed = run / "01_preprocess" / "quality" / "dropped_rows.csv"
    pattern = (r"^warning: 01_preprocess dropped 2 rows \(1 empty after cleaning, 1 whose labels "
               r"were all rare\); their ids are listed in (\S+)$")
    found = re.search(pattern, result.stderr, re.M)
    assert found and Path(found.group(1)) == listed, result.stderr
    dropped = pd.read_csv(listed)
    assert dropped.to_dict("records") == [
        {"source_id": "tickets.csv:402", "reason": "empty after cleaning"},
        {"source_id": "tickets.csv:403", "reason": "all labels rare"}]
    executed = nbformat.read(str(run / "01_preprocess.ipynb"), as_version=4)
    shown = [o.get("text", "") for c in executed.cells for o in c.get("outputs", [])
             if o.get("output_type") == "stream"]
    assert any(re.search(pattern.replace(r"(\S+)", r"\S*dropped_rows\.csv"), text, re.M)
               for text in shown), shown


def ctrl_c_cli(args: list, shared_runs: Path, at, *, what: str, poll: float,
               settle: float = 0.0) -> tuple[Path, str, int]:
    """Start the CLI in its own process group, wait until ``at(run_folder)`` holds for the run
    it creates, then send SIGINT to the group as a terminal's Ctrl-C does (after ``settle``
    seconds more): the run, the CLI's stderr and its exit code."""
    import signal
    import time

    env = {**os.environ, "MLCLF_RUNS_DIR": str(shared_runs)}
    before = {p.name for p in shared_runs.iterdir()}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlclf_utils", *map(str, args)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        run = None
        while time.monotonic() < deadline and run is None and process.poll() is None:
            for folder in {p.name for p in shared_runs.iterdir()} - before:
                if at(shared_runs / folder):
                    run = shared_runs / folder
            time.sleep(poll)
        assert run is not None, f"the run never reached {what}"
        time.sleep(settle)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return run, stderr, process.returncode


@pytest.fixture(scope="module")
def interrupted(base_run, shared_runs):
    """``--to 04`` from the base run, stopped by Ctrl-C (SIGINT to the process group, as a
    terminal sends it) while 03 trains: the run, the CLI's stderr and its exit code.

    The walkthrough is off, so the signal lands in the fine-tuning; a Ctrl-C inside the
    walkthrough has its own fixture, ``interrupted_in_walkthrough``."""
    return ctrl_c_cli(
        ["run", "--resume", base_run, "--from", "03", "--to", "04", "-p", "max_steps", "200",
         "-p", "eval_steps", "0", "-p", "teaching", "false", "--no-progress"], shared_runs,
        lambda run: (run / "03_train").is_dir(),  # 03 is past its first cells
        what="03_train", poll=0.3,
        settle=3)  # into the stage's work; the test asserts nothing about time


@pytest.mark.serial  # under a pytest-xdist worker the kernel dies at Ctrl-C instead of stopping
def test_ctrl_c_during_a_run_says_where_in_one_line_without_a_kernel_traceback(interrupted):
    run, stderr, code = interrupted
    assert code == 130, stderr
    found = re.search(rf"^interrupted during 03_train \(cell (\d+)\); resume with python -m "
                      rf"mlclf_utils run --resume {re.escape(str(run))}$", stderr, re.M)
    assert found, stderr
    assert "ZMQError" not in stderr and "Traceback" not in stderr, stderr
    stages = {s["stage"]: s for s in read_json(run / "manifest.json")["stages"]}
    assert stages["03_train"]["status"] == "interrupted"
    assert stages["03_train"]["cell"] == int(found.group(1))


@pytest.mark.serial  # under a pytest-xdist worker the kernel dies at Ctrl-C instead of stopping
def test_a_bare_resume_of_an_interrupted_run_honours_its_to(interrupted, shared_runs):
    run, _, _ = interrupted
    assert read_json(run / "manifest.json")["to"] == "04_evaluate"
    result = cli("run", "--resume", run, "-p", "max_steps", "2", "--no-progress",
                 runs_root=shared_runs)
    again = finished_run(result)
    manifest = read_json(again / "manifest.json")
    assert [(s["stage"], s["status"]) for s in manifest["stages"]] == [
        ("01_preprocess", "reused"), ("02_save_data", "reused"), ("03_train", "ok"),
        ("04_evaluate", "ok")]
    assert manifest["to"] == "04_evaluate" and not (again / "05_explain").exists()


# The first cell of 03's walkthrough that builds the scikit-learn TF-IDF probe features: several
# seconds in native code, where a Ctrl-C has been seen to leave nbclient with a dead kernel.
WALKTHROUGH_PROBE_CELL = "bce.probe_data("


def _running_cell_source(notebook: Path) -> str | None:
    """The source of the cell papermill marks as running in a notebook it is still writing."""
    try:
        cells = nbformat.read(str(notebook), as_version=4).cells
    except Exception:  # noqa: BLE001 - caught mid-write: read it again on the next poll
        return None
    running = [c.source for c in cells if c.metadata.get("papermill", {}).get("status") == "running"]
    return running[0] if running else None


@pytest.fixture(scope="module")
def interrupted_in_walkthrough(base_run, shared_runs):
    """03 alone from the base run, teaching on, stopped by Ctrl-C to the process group while
    the walkthrough's probe cell runs (seen in the executed notebook as papermill writes it, so
    the signal cannot land elsewhere): the run, the CLI's stderr and its exit code."""
    def in_probe_cell(run: Path) -> bool:
        source = _running_cell_source(run / "03_train.ipynb")
        return source is not None and WALKTHROUGH_PROBE_CELL in source

    return ctrl_c_cli(
        ["run", "--resume", base_run, "--from", "03", "--to", "03", "-p", "teaching", "true",
         "--no-progress"], shared_runs, in_probe_cell,
        what=f"a 03 walkthrough cell with {WALKTHROUGH_PROBE_CELL!r}", poll=0.2)


@pytest.mark.serial  # under a pytest-xdist worker the kernel dies at Ctrl-C instead of stopping
def test_ctrl_c_in_the_walkthrough_says_where_in_one_line_and_keeps_nbclient_quiet(
        interrupted_in_walkthrough):
    """The Ctrl-C that used to leak nbclient's "Task exception was never retrieved ...
    DeadKernelError" traceback: the user sees the runner's line and nothing else."""
    run, stderr, code = interrupted_in_walkthrough
    assert code == 130, stderr
    found = re.search(rf"^interrupted during 03_train \(cell (\d+)\); resume with python -m "
                      rf"mlclf_utils run --resume {re.escape(str(run))}$", stderr, re.M)
    assert found, stderr
    for leak in ("Traceback", "never retrieved", "DeadKernelError", "Kernel died", "ZMQError"):
        assert leak not in stderr, stderr
    assert stderr.strip().splitlines() == ["[1/1] 03_train", found.group(0)], stderr
    stages = {s["stage"]: s for s in read_json(run / "manifest.json")["stages"]}
    assert stages["03_train"]["status"] == "interrupted"
    cell = int(found.group(1))
    assert stages["03_train"]["cell"] == cell
    executed = nbformat.read(str(run / "03_train.ipynb"), as_version=4)
    assert [c.source for c in executed.cells if c.get("execution_count") == cell
            and WALKTHROUGH_PROBE_CELL in c.source], f"cell {cell} is not the walkthrough's probe"
    # What was kept off the terminal is in the kernel log: the cell's task that the dead kernel
    # ended. Its absence would mean this run did not take the path the test is about.
    log = (run / "03_train.kernel.log").read_text()
    assert re.search(r"^\[mlclf runner\] after Ctrl-C, task \S+ ended with Traceback", log, re.M), log


@pytest.mark.serial  # under a pytest-xdist worker the kernel dies at Ctrl-C instead of stopping
def test_a_run_interrupted_in_the_walkthrough_resumes(interrupted_in_walkthrough, shared_runs):
    run, _, _ = interrupted_in_walkthrough
    result = cli("run", "--resume", run, "-p", "teaching", "false", "--no-progress",
                 runs_root=shared_runs)
    assert "Traceback" not in result.stderr, result.stderr
    again = finished_run(result)
    manifest = read_json(again / "manifest.json")
    assert [(s["stage"], s["status"]) for s in manifest["stages"]] == [
        ("01_preprocess", "reused"), ("02_save_data", "reused"), ("03_train", "ok")]
    assert manifest["resumed_from"] == str(run.resolve())


def test_a_run_names_each_stage_and_shows_training_step_total_loss_and_eta(base_run, shared_runs):
    """Issue 11: the stage names, and during 03 a tqdm bar fed by the training callback."""
    result = cli("run", "--resume", base_run, "--from", "03", "--to", "03", runs_root=shared_runs)
    screen = result.stderr.replace("\r", "\n")
    assert "[1/1] 03_train\n" in screen and re.search(r"\[1/1\] 03_train ok \(\d", screen)
    bars = [line for line in screen.splitlines() if line.strip().startswith("training 03_train/model")]
    assert bars, screen
    last = bars[-1]
    assert re.search(r"\b8/8 \[\d\d:\d\d<\d\d:\d\d", last), last   # step/total [elapsed<ETA
    assert any(re.search(r"loss=\d+\.\d{4}", line) for line in bars), bars
    assert any(re.search(r"\b[1-7]/8 \[\d\d:\d\d<\d\d:\d\d", line) for line in bars), bars  # during
