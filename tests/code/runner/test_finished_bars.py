"""What a saved notebook shows of its progress bars: the last frame of each, not tqdm's first
(the browser check found "0%| | 0/103" under every bar of the committed notebooks), with
transformers' and datasets' own sub-second bars left out of headless runs."""

import shutil

import nbformat
import papermill
import pytest

import references
from mlclf_utils.errors import MlclfError
from mlclf_utils.runner import execute, finished_bars

# A loop that finishes, one that stops early, one with no total, one that leaves no bar
# (leave=False), the libraries' own bars, and a widget that is no bar.
CELLS = [
    "from tqdm.auto import tqdm\nfor _ in tqdm(range(5), desc='counting', unit='step'):\n    pass",
    "bar = tqdm(total=5, desc='stopped')\nbar.update(3)\nbar.close()",
    "for _ in tqdm(iter(range(7)), desc='no total'):\n    pass",
    "for _ in tqdm(range(2), desc='gone', leave=False):\n    pass",
    "from transformers.utils import logging\n"
    "for _ in logging.tqdm(range(2), desc='Writing model shards'):\n    pass",
    "from datasets.utils import tqdm as datasets_tqdm\n"
    "for _ in datasets_tqdm(range(2), desc='Saving the dataset'):\n    pass",
    "import ipywidgets\nipywidgets.IntSlider(value=4)",
]
WIDGET = finished_bars.WIDGET_VIEW


def tiny_notebook(path):
    parameters = nbformat.v4.new_code_cell("run_dir = None  # type: str|None  the run folder")
    parameters.metadata["tags"] = ["parameters"]
    cells = [parameters] + [nbformat.v4.new_code_cell(source) for source in CELLS]
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": dict(execute.KERNELSPEC)}), str(path))
    return path


def shown(path) -> list[str]:
    """Each output's text as a static viewer shows it (text/plain, or a stream's text)."""
    notebook = nbformat.read(str(path), as_version=4)
    return [output.get("text") or output.get("data", {}).get("text/plain", "")
            for cell in notebook.cells for output in cell.get("outputs", [])]


def assert_finished(texts: list[str]) -> None:
    bars = {name: [t for t in texts if t.startswith(f"{name}:")]
            for name in ("counting", "stopped", "no total", "gone")}
    assert bars["counting"][0].startswith("counting: 100%|██████████| 5/5 [")
    assert bars["counting"][0].endswith("step/s]")
    assert bars["stopped"][0].startswith("stopped:  60%|██████    | 3/5 [")
    assert bars["no total"][0].startswith("no total: 7/? [")  # no bar: it would say nothing
    assert [len(found) for found in bars.values()] == [1, 1, 1, 0]
    assert not any("0%|" in text for text in texts if "100%|" not in text and "60%" not in text)


@pytest.mark.notebooks
def test_a_stage_run_by_the_runner_saves_each_bar_finished_and_no_library_bars(tmp_path):
    notebook = tiny_notebook(tmp_path / "99_bars.ipynb")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    execute.execute_stage(notebook, {}, run_dir, {"stages": []}, counter="[1/1]",
                          hint="again", progress_file=tmp_path / "progress.jsonl",
                          kernel_name=execute.KERNEL_NAME, progress=False)
    saved = run_dir / notebook.name
    texts = shown(saved)
    assert_finished(texts)
    assert not any("Writing model shards" in t or "Saving the dataset" in t for t in texts)
    executed = nbformat.read(str(saved), as_version=4)
    views = [o for c in executed.cells for o in c.get("outputs", []) if WIDGET in o.get("data", {})]
    assert len(views) == 1 and "IntSlider" in views[0]["data"]["text/plain"]  # not a bar: kept
    gone = next(c for c in executed.cells if "leave=False" in c.source)
    assert gone.outputs == []  # closed with leave=False: no empty output in its place


@pytest.mark.notebooks
def test_a_stage_that_fails_keeps_its_bars_finished_and_its_failure(tmp_path):
    # The saved notebook of a failed stage is where a reader looks for how far a loop got.
    path = tiny_notebook(tmp_path / "98_fails.ipynb")
    notebook = nbformat.read(str(path), as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("raise ValueError('the data ran out')"))
    nbformat.write(notebook, str(path))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    manifest = {"stages": []}
    with pytest.raises(MlclfError, match="the data ran out"):
        execute.execute_stage(path, {}, run_dir, manifest, counter="[1/1]", hint="again",
                              progress_file=tmp_path / "progress.jsonl",
                              kernel_name=execute.KERNEL_NAME, progress=False)
    assert manifest["stages"][-1]["status"] == "failed"
    assert_finished(shown(run_dir / path.name))


@pytest.mark.notebooks
def test_tidy_writes_the_last_frames_before_it_strips_the_widget_states(tmp_path):
    """The committed notebooks' path: papermill in place (`make notebooks`), then the sync's
    tidy, which strips metadata.widgets, where the last frames are."""
    notebook = tiny_notebook(tmp_path / "99_bars.ipynb")
    papermill.execute_notebook(str(notebook), str(notebook), progress_bar=False,
                               kernel_name=execute.KERNEL_NAME, config=execute.kernel_config())
    executed = nbformat.read(str(notebook), as_version=4)
    assert finished_bars.WIDGET_STATE in executed.metadata["widgets"]
    assert any("counting:   0%|" in text for text in shown(notebook))  # tqdm's first frame
    untouched = shutil.copy(notebook, tmp_path / "copy.ipynb")
    references.tidy([notebook])
    assert "widgets" not in nbformat.read(str(notebook), as_version=4).metadata
    texts = [t for t in shown(notebook)
             if "Writing model shards" not in t and "Saving the dataset" not in t]
    assert_finished(texts)
    assert finished_bars.finish_bars_in(notebook) == 0  # nothing left to finish: stable
    assert finished_bars.finish_bars_in(untouched) == 6  # with the libraries' two


def test_a_bar_without_a_saved_state_or_another_widget_is_left_alone():
    box = {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_a", "IPY_MODEL_b"]}}
    states = {"box": box, "a": {"model_name": "HTMLModel", "state": {"value": "x"}},
              "b": {"model_name": "FloatProgressModel", "state": {"value": 1, "max": 1}}}
    assert finished_bars.bar_text("box", states) is None  # two parts: not tqdm's bar
    assert finished_bars.bar_text("missing", states) is None
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        nbformat.v4.new_output("display_data", data={
            WIDGET: {"model_id": "missing"}, "text/plain": "  0%|          | 0/3"})])])
    assert finished_bars.finish_bars(notebook) == 0
    assert notebook.cells[0].outputs[0].data["text/plain"] == "  0%|          | 0/3"


def test_tqdm_escaped_html_reads_as_the_terminal_line():
    states = {"box": {"model_name": "HBoxModel",
                      "state": {"children": ["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]}},
              "l": {"model_name": "HTMLModel", "state": {"value": "A&amp;B:\u2007100%"}},
              "p": {"model_name": "FloatProgressModel",
                    "state": {"min": 0, "max": 4, "value": 4, "bar_style": "success"}},
              "r": {"model_name": "HTMLModel",
                    "state": {"value": "\u20074/4\u2007[00:00&lt;00:00]"}}}
    assert finished_bars.bar_text("box", states) == "A&B: 100%|██████████| 4/4 [00:00<00:00]"
