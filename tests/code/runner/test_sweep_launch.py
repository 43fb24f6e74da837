"""Running a sweep: the grid, the combinations' names and the values each combination receives."""

import pytest

from mlclf_utils.errors import ParameterError
from mlclf_utils.runner import sweep_launch


def test_grid_values_are_yaml_and_the_product_is_run_in_order():
    grid = sweep_launch.parse_grid(["pos_weight_strategy=none,sqrt", "pos_weight_floor=0.5, 1"])
    assert grid == {"pos_weight_strategy": ["none", "sqrt"], "pos_weight_floor": [0.5, 1]}
    assert type(grid["pos_weight_floor"][1]) is int
    assert sweep_launch.combinations(grid) == [
        {"pos_weight_strategy": "none", "pos_weight_floor": 0.5},
        {"pos_weight_strategy": "none", "pos_weight_floor": 1},
        {"pos_weight_strategy": "sqrt", "pos_weight_floor": 0.5},
        {"pos_weight_strategy": "sqrt", "pos_weight_floor": 1},
    ]
    assert sweep_launch.parse_grid(["pos_weight_cap=null,20"]) == {"pos_weight_cap": [None, 20]}
    # Values are read against the parameter's types: a version stays text, 1e-4 is a float.
    assert sweep_launch.parse_grid(["transformers_version=4.40,4.56"]) == {
        "transformers_version": ["4.40", "4.56"]}
    assert sweep_launch.parse_grid(["learning_rate=1e-4,5e-5"]) == {"learning_rate": [1e-4, 5e-5]}


@pytest.mark.parametrize("items, match", [
    ([], "at least one"),
    (["pos_weight_strategy"], "NAME=V1"),
    (["=none,sqrt"], "NAME=V1"),
    (["epochs="], "NAME=V1"),
    (["epochs=1,,2"], "empty value"),
    (["epochs=1,2", "epochs=3"], "given twice"),
    (["epochs=1,1"], "repeats a value"),
])
def test_grid_errors_name_the_argument(items, match):
    with pytest.raises(ParameterError, match=match):
        sweep_launch.parse_grid(items)


def test_combination_names_sort_in_grid_order_and_are_safe_folder_names():
    names = [sweep_launch.combination_name(i, c) for i, c in enumerate(
        [{"pos_weight_strategy": "none"}, {"model_name": "org/model"}], start=1)]
    assert names == ["01_pos_weight_strategy=none", "02_model_name=org-model"]
    assert "/" not in names[1]


def _notebooks_folder(folder, train_parameters: str):
    """A notebooks folder holding only an 03_train.ipynb with the given parameters cell."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    cell = nbformat.v4.new_code_cell(train_parameters)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells.append(cell)
    folder.mkdir()
    nbformat.write(notebook, str(folder / "03_train.ipynb"))
    return folder


def test_every_combination_skips_03s_walkthrough_once_03_declares_the_switch(tmp_path):
    declares = _notebooks_folder(tmp_path / "with", "run_dir = None  # type: str|None  run\n"
                                 "teaching = True  # type: bool  the tutorial sections\n")
    older = _notebooks_folder(tmp_path / "without", "run_dir = None  # type: str|None  run\n")
    assert sweep_launch.sweep_defaults(declares) == {**sweep_launch.SWEEP_DEFAULTS,
                                                     "teaching": False}
    assert sweep_launch.sweep_defaults(older) == sweep_launch.SWEEP_DEFAULTS
    assert "teaching" not in sweep_launch.SWEEP_DEFAULTS  # a notebook without it would refuse it


def test_the_real_03_gets_teaching_off_exactly_when_it_declares_it():
    from mlclf_utils.runner.parameters import parameter_specs, stage_notebooks

    train = next(nb for nb in stage_notebooks() if nb.stem == "03_train")
    defaults = sweep_launch.sweep_defaults()
    if "teaching" in parameter_specs(train):
        assert defaults["teaching"] is False
    else:
        assert "teaching" not in defaults


def test_a_combination_gets_the_sweep_defaults_then_the_shared_values_then_its_own():
    defaults = {"plain_baseline": False, "sweep_dir": False, "teaching": False}
    values = sweep_launch.combination_values({"pos_weight_strategy": "sqrt"}, {"epochs": 2},
                                             defaults)
    assert values == {**defaults, "epochs": 2, "pos_weight_strategy": "sqrt"}
    # A user who wants the walkthrough in every combination can still say so.
    assert sweep_launch.combination_values({}, {"teaching": True}, defaults)["teaching"] is True
    assert sweep_launch.combination_values({"teaching": True}, {}, defaults)["teaching"] is True


def test_the_sweep_checks_each_combination_with_its_defaults(tmp_path, fake_run, monkeypatch):
    from mlclf_utils.runner import pipeline

    base = fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "ok"})
    planned = []
    real = pipeline.plan_run

    def recording(values, **kwargs):
        planned.append(values)
        return real(values, **kwargs)

    monkeypatch.setattr(pipeline, "plan_run", recording)
    combos = sweep_launch.check_sweep({"pos_weight_strategy": ["none", "sqrt"]}, {}, base)
    assert [c["pos_weight_strategy"] for c in combos] == ["none", "sqrt"]
    expected = sweep_launch.sweep_defaults()
    assert len(planned) == 2
    assert all({k: v[k] for k in expected} == expected for v in planned)


def test_a_grid_name_the_swept_stages_do_not_read_is_refused():
    with pytest.raises(ParameterError, match=r"--grid.*sample_size.*03_train-04_evaluate"):
        sweep_launch.check_sweep({"sample_size": [10, 20]}, {}, None)
