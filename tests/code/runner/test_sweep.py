"""A sweep's record read back: data fingerprint, comparison, summary and figures, on hand-made
run folders."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlclf_utils.artifacts import write_json
from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.runner import sweep
from mlclf_utils.runner.sweep_launch import combination_name


def _dataset(run: Path, rows: dict[str, list[list[float]]]) -> Path:
    from mlclf_utils.data.label_map import LabelMap

    label_map = LabelMap(["alpha", "beta", "gamma"])
    data = {}
    for split, targets in rows.items():
        data[split] = {"labels": targets, "text": [f"text {i}" for i in range(len(targets))]}
    import datasets

    dd = datasets.DatasetDict({split: datasets.Dataset.from_dict(v) for split, v in data.items()})
    for split in dd:
        folder = run / "02_save_data" / "dataset" / split
        dd[split].save_to_disk(str(folder))
        label_map.to_json(folder / "label_map.json")
    return run


SPLITS = {"train": [[1, 1, 0], [1, 0, 0], [1, 0, 1], [1, 1, 0]], "validation": [[1, 0, 0]],
          "test": [[0, 1, 1]]}


def test_fingerprint_follows_the_data_and_ignores_datasets_cache_files(tmp_path):
    one = _dataset(tmp_path / "one", SPLITS)
    two = _dataset(tmp_path / "two", SPLITS)
    assert sweep.data_fingerprint(one) == sweep.data_fingerprint(two)
    (one / "02_save_data" / "dataset" / "train" / "cache-0123.arrow").write_bytes(b"later")
    assert sweep.data_fingerprint(one) == sweep.data_fingerprint(two)
    other = _dataset(tmp_path / "other", {**SPLITS, "test": [[1, 1, 1]]})
    assert sweep.data_fingerprint(other) != sweep.data_fingerprint(one)
    with pytest.raises(MlclfError, match="02_save_data"):
        sweep.data_fingerprint(tmp_path / "empty")


def test_rarest_labels_count_train_positives_only(tmp_path):
    run = _dataset(tmp_path / "run", SPLITS)
    assert sweep.rarest_labels(run, n=2) == ["gamma", "beta"]  # 1 and 2 train positives


def _fake_sweep(tmp_path: Path) -> Path:
    base = _dataset(tmp_path / "base", SPLITS)
    sweep_dir = tmp_path / "runs" / "sweeps" / "20260101-000000-abcdef"
    combos = []
    for i, (strategy, status, val, test) in enumerate(
            [("none", "ok", 0.40, 0.45), ("sqrt", "ok", 0.55, 0.50), ("ratio", "failed", None, None)],
            start=1):
        name = combination_name(i, {"pos_weight_strategy": strategy})
        combos.append({"name": name, "values": {"pos_weight_strategy": strategy}, "status": status,
                       "seconds": 90.0})
        if status == "ok":
            out = sweep_dir / name / "04_evaluate"
            out.mkdir(parents=True)
            write_json(out / "report.json", {
                "validation_tuned": {"macro_f1": val},
                "test_tuned": {"macro_f1": test, "micro_f1": test + 0.1},
                "test_at_0.5": {"macro_f1": test - 0.2}})
            pd.DataFrame({"label": ["alpha", "beta", "gamma"], "recall": [0.9, 0.5, 0.1 * i],
                          "precision": [0.8, 0.6, np.nan]}).to_csv(out / "per_class_test.csv", index=False)
    combos[-1]["error"] = "03_train: ValueError: boom"
    write_json(sweep_dir / "sweep.json", {"sweep_id": sweep_dir.name, "base_run": str(base),
                                          "data_fingerprint": sweep.data_fingerprint(base),
                                          "combinations": combos,
                                          "best": {"name": combos[1]["name"], "values": combos[1]["values"]}})
    return sweep_dir


def test_comparison_reads_each_finished_run_and_keeps_failed_ones_as_rows(tmp_path):
    sweep_dir = _fake_sweep(tmp_path)
    table = sweep.compare(sweep_dir)
    assert list(table["status"]) == ["ok", "ok", "failed"]
    assert table.loc["02_pos_weight_strategy=sqrt", "validation_macro_f1"] == 0.55
    assert table.loc["01_pos_weight_strategy=none", "test_macro_f1_at_0.5"] == pytest.approx(0.25)
    assert table.loc["02_pos_weight_strategy=sqrt", "recall[gamma]"] == pytest.approx(0.2)
    assert np.isnan(table.loc["02_pos_weight_strategy=sqrt", "precision[gamma]"])
    assert np.isnan(table.loc["03_pos_weight_strategy=ratio", "test_macro_f1"])
    assert table["minutes"].tolist() == [1.5, 1.5, 1.5]

    assert table.loc["03_pos_weight_strategy=ratio", "error"] == "03_train: ValueError: boom"

    shown = sweep.summary(table)  # best first; the failure stays, at the end, with its error
    assert list(shown.index) == ["02_pos_weight_strategy=sqrt", "01_pos_weight_strategy=none",
                                 "03_pos_weight_strategy=ratio"]
    assert shown.loc["03_pos_weight_strategy=ratio", "status"] == "failed"
    clean = sweep.summary(table[table["status"] == "ok"])
    assert "status" not in clean.columns and "error" not in clean.columns


def test_a_comparison_from_an_older_sweep_without_errors_still_reads(tmp_path):
    table = sweep.compare(_fake_sweep(tmp_path)).drop(columns=["error"])
    assert list(sweep.summary(table).index)[0] == "02_pos_weight_strategy=sqrt"


def test_no_finished_combination_means_no_figure_but_a_clear_error(tmp_path):
    table = sweep.compare(_fake_sweep(tmp_path))
    with pytest.raises(MlclfError, match="no combination"):
        sweep.plot_f1(table[table["status"] != "ok"])


def test_figures_are_saved(tmp_path):
    import matplotlib.pyplot as plt

    table = sweep.compare(_fake_sweep(tmp_path))
    sweep.plot_f1(table, tmp_path / "f1.png")
    sweep.plot_rare_labels(table, tmp_path / "rare.png")
    plt.close("all")
    assert (tmp_path / "f1.png").stat().st_size > 5000 and (tmp_path / "rare.png").stat().st_size > 5000


def test_a_sweep_is_found_by_its_data_not_by_its_base_run(tmp_path, monkeypatch):
    sweep_dir = _fake_sweep(tmp_path)
    monkeypatch.setenv("MLCLF_RUNS_DIR", str(tmp_path / "runs"))
    same_data = _dataset(tmp_path / "copy", SPLITS)
    assert sweep.find_sweep(same_data) is None  # not finished: no comparison.csv yet
    sweep.compare(sweep_dir).to_csv(sweep_dir / "comparison.csv")
    assert sweep.find_sweep(same_data) == sweep_dir
    assert sweep.find_sweep(_dataset(tmp_path / "other", {**SPLITS, "test": [[1, 0, 1]]})) is None
    assert sweep.find_sweep(same_data, "/some/where") == Path("/some/where")
    assert sweep.find_sweep(same_data, False) is None  # a sweep's own runs look for none
    info = json.loads((sweep_dir / "sweep.json").read_text())
    del info["best"]  # a sweep where nothing finished is never presented
    (sweep_dir / "sweep.json").write_text(json.dumps(info))
    assert sweep.find_sweep(same_data) is None
    info["best"] = {"name": "x", "values": {}}
    (sweep_dir / "sweep.json").write_text(json.dumps(info))
    table, info = sweep.load(sweep_dir)
    assert len(table) == 3 and info["sweep_id"] == sweep_dir.name
    with pytest.raises(ParameterError, match="sweep.json"):
        sweep.load(tmp_path)
