import json

import numpy as np
import pytest

from mlclf_utils import artifacts
from mlclf_utils.runner import runs
from mlclf_utils.errors import MlclfError, ParameterError


def test_each_new_run_gets_its_own_directory_and_latest_follows(runs_root):
    first = runs.new_run_dir()
    second = runs.new_run_dir()
    assert first != second and first.parent == second.parent == runs_root
    assert runs.latest_run_dir() == second


def test_stage_01_without_run_dir_starts_a_new_run_and_later_stages_reuse_it(runs_root):
    run = runs.resolve_run_dir(None, "01_preprocess")
    folder = runs.stage_dir(run, "01_preprocess")
    for name in runs.STAGE_OUTPUTS["01_preprocess"]:
        (folder / name).write_text("x")
    assert runs.resolve_run_dir(None, "02_save_data") == run
    for stage in ("02_save_data", "03_train", "04_evaluate"):
        (run / stage).mkdir()
    (run / "02_save_data" / "channels.json").write_text("{}")
    (run / "03_train" / "metrics").mkdir()
    with pytest.raises(MlclfError, match=r"04_evaluate did not finish \(status incomplete: "
                                         r"04_evaluate is empty\).*\n.*run 04_evaluate first"):
        runs.resolve_run_dir(None, "05_explain")  # its first cell made the folder, then it stopped
    (run / "04_evaluate" / "report.json").write_text("{}")
    assert runs.resolve_run_dir(None, "05_explain") == run
    assert runs.resolve_run_dir(None, "01_preprocess") != run


def test_a_later_stage_refuses_a_run_whose_previous_stage_did_not_finish(runs_root, tmp_path):
    run = runs.resolve_run_dir(None, "01_preprocess")
    with pytest.raises(MlclfError, match=r"your run's 01_preprocess did not finish "
                                         r"\(status not run\)"):
        runs.resolve_run_dir(None, "02_save_data")
    (run / "01_preprocess" / "figures").mkdir(parents=True)
    with pytest.raises(MlclfError, match=r"\(status incomplete: no 01_preprocess/processed.parquet\)"):
        runs.resolve_run_dir(run, "02_save_data")
    artifacts.write_json(run / runs.MANIFEST, {"stages": [{"stage": "01_preprocess", "status": "interrupted"}]})
    with pytest.raises(MlclfError, match=r"the run's 01_preprocess did not finish \(status interrupted\)"):
        runs.resolve_run_dir(run, "02_save_data")
    assert not (run / "02_save_data").exists()


def _refusal(run, stage) -> str:
    with pytest.raises(runs.StepRefused) as caught:
        runs.resolve_run_dir(run, stage)
    return str(caught.value)


def test_a_previous_stage_still_running_is_waited_for_not_started_again(tmp_path):
    # A batch run records "running" until its stage ends; a person told to "run it again"
    # would start a second 03 beside the one still training (or not know that it was killed).
    run = tmp_path / "run"
    (run / "03_train" / "checkpoints").mkdir(parents=True)
    artifacts.write_json(run / runs.MANIFEST, {"stages": [{"stage": "03_train", "status": "running"}]})
    message = _refusal(run, "04_evaluate")
    assert message == (
        f"the run's 03_train did not finish (status running): {run}\n  -> 03_train is still "
        "running in a batch run, or that run was stopped before it could record the end: wait "
        "for it to finish, then run 04_evaluate again; if it was stopped, run 03_train again "
        "(a new run), or pass run_dir= a run where it finished; 04_evaluate did not start")
    assert not (run / "04_evaluate").exists()


def test_the_advice_for_an_unfinished_previous_stage_fits_its_status(tmp_path):
    run = tmp_path / "run"
    (run / "01_preprocess" / "figures").mkdir(parents=True)  # by hand, perhaps still in a kernel
    assert ("(status incomplete: no 01_preprocess/processed.parquet): "
            f"{run}\n  -> if 01_preprocess is still being stepped through in another kernel, "
            "finish it there first; else run 01_preprocess again (a new run), or pass run_dir= "
            "a run where it finished; 02_save_data did not start") in _refusal(run, "02_save_data")
    for status in ("failed", "interrupted"):  # it ended: running it again is the way
        artifacts.write_json(run / runs.MANIFEST,
                             {"stages": [{"stage": "01_preprocess", "status": status}]})
        assert (f"(status {status}): {run}\n  -> run 01_preprocess again (a new run), or pass "
                "run_dir= a run where it finished; 02_save_data") in _refusal(run, "02_save_data")
    (run / "01_preprocess" / "figures").rmdir()  # nothing left of it: it has to run first
    assert "  -> run 01_preprocess first, or pass run_dir=" in _refusal(run, "02_save_data")
    assert not (run / "02_save_data").exists()


def test_an_04_stopped_before_its_report_does_not_let_05_start(tmp_path):
    # 04 writes its mistakes and figures long before report.json and the thresholds 05 needs:
    # a folder holding only those is an 04 that stopped, not one that finished.
    run = tmp_path / "run"
    (run / "04_evaluate" / "figures").mkdir(parents=True)
    (run / "04_evaluate" / artifacts.MISCLASSIFICATIONS).write_text("x")
    assert runs.stage_status(run, "04_evaluate") == "incomplete: no 04_evaluate/report.json"
    with pytest.raises(MlclfError, match=r"(?s)04_evaluate did not finish .*05_explain did not start"):
        runs.resolve_run_dir(run, "05_explain")
    assert not (run / "05_explain").exists()
    artifacts.write_json(run / "04_evaluate" / artifacts.REPORT, {})
    assert runs.stage_status(run, "04_evaluate") == "ok"


def test_later_stage_without_any_run_says_to_run_01(runs_root):
    with pytest.raises(MlclfError, match="01_preprocess"):
        runs.resolve_run_dir(None, "03_train")


def test_explicit_run_dir(runs_root, tmp_path):
    assert runs.resolve_run_dir(tmp_path / "mine", "01_preprocess") == tmp_path / "mine"
    with pytest.raises(ParameterError, match="run_dir"):
        runs.resolve_run_dir(tmp_path / "absent", "02_save_data")
    with pytest.raises(ParameterError, match="stage"):
        runs.resolve_run_dir(None, "06_party")


def test_stage_dir_never_overwrites(tmp_path):
    folder = runs.stage_dir(tmp_path, "01_preprocess")
    runs.stage_dir(tmp_path, "01_preprocess")  # still empty: fine
    (folder / "processed.parquet").write_text("x")
    with pytest.raises(MlclfError, match="never overwrites"):
        runs.stage_dir(tmp_path, "01_preprocess")
    with pytest.raises(MlclfError, match="run the 02_save_data stage first"):
        runs.stage_dir(tmp_path, "02_save_data", create=False)


def test_write_json_handles_numpy_and_leaves_no_temp_files(tmp_path):
    path = artifacts.write_json(tmp_path / "r.json", {"n": np.int64(3), "x": np.float32(0.5),
                                                 "a": np.arange(2), "p": tmp_path})
    assert json.loads(path.read_text()) == {"n": 3, "x": 0.5, "a": [0, 1], "p": str(tmp_path)}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_manifest_helpers():
    versions = runs.package_versions()
    assert versions["torch"].startswith("2.13.0") and versions["python"].startswith("3.11")
    git = runs.git_commit()
    assert set(git) == {"commit", "dirty"}


def test_write_json_turns_nan_into_null(tmp_path):
    path = artifacts.write_json(tmp_path / "r.json", {"auc": float("nan"), "x": [np.float64("inf"), 1.5]})
    assert json.loads(path.read_text()) == {"auc": None, "x": [None, 1.5]}


def test_a_batch_run_never_moves_the_pointer_of_a_run_stepped_through_by_hand(runs_root):
    mine = runs.resolve_run_dir(None, "01_preprocess")   # by hand (no papermill here)
    batch = runs.new_run_dir()                           # what the runner does
    assert runs.latest_run_dir() == batch and runs.session_run_dir() == mine


def test_the_advice_for_a_stage_that_ran_never_says_run_dir_none_for_a_given_run(tmp_path):
    (tmp_path / "03_train").mkdir()
    (tmp_path / "03_train" / "x").write_text("x")
    with pytest.raises(MlclfError) as info:
        runs.stage_dir(tmp_path, "03_train")
    assert f"python -m mlclf_utils run --resume {tmp_path} --from 03 --to 03" in str(info.value)


def _step_by_hand(stage: str):
    """One notebook stepped through by hand with run_dir = None: its first cell, then its files."""
    run = runs.resolve_run_dir(None, stage)
    folder = runs.stage_dir(run, stage)
    for name in runs.STAGE_OUTPUTS.get(stage, ("written.txt",)):
        (folder / name).write_text(stage)
    return run


def _steps_by_hand(stages):
    made = {_step_by_hand(stage) for stage in stages}
    assert len(made) == 1, made  # one run: each stage continues the run 01 started
    return made.pop()


def _runs_made(root):
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def test_a_stage_stepped_through_by_hand_in_a_forked_run_counts_as_run_there(runs_root):
    """The browser check's sequence: 01-04, 03 again (a fork), 04 there twice, then 05."""
    mine = _steps_by_hand(artifacts.STAGES[:4])
    fork = _step_by_hand("03_train")
    assert fork != mine and _step_by_hand("04_evaluate") == fork
    again = _step_by_hand("04_evaluate")  # used to fail: "cannot take 03_train ... did not run"
    assert again not in (mine, fork)
    entries = artifacts.read_json(again / runs.MANIFEST)["stages"]
    assert [(e["stage"], e["status"], e["from_run"]) for e in entries] == [
        ("01_preprocess", "reused", mine.name), ("02_save_data", "reused", mine.name),
        ("03_train", "reused", fork.name)]
    linked = again / "03_train" / "written.txt"
    assert linked.stat().st_ino == (fork / "03_train" / "written.txt").stat().st_ino
    assert runs.session_run_dir() == runs.latest_run_dir() == again
    assert _step_by_hand("05_explain") == again
    # any number of times: each re-run forks, and the next stage continues the fork
    for _ in range(2):
        trained = _step_by_hand("03_train")
        assert _step_by_hand("04_evaluate") == trained
        evaluated = _step_by_hand("04_evaluate")
        assert evaluated != trained and _step_by_hand("05_explain") == evaluated
        assert _step_by_hand("05_explain") not in (trained, evaluated)
    made = [runs_root / name for name in _runs_made(runs_root)]
    assert len(made) == 3 + 2 * 3
    assert all(any((run / stage).is_dir() and any((run / stage).iterdir())
                   for stage in artifacts.STAGES) for run in made), "an empty run was left"


def test_a_refused_fork_makes_no_run_and_moves_no_pointer(runs_root):
    mine = _steps_by_hand(artifacts.STAGES[:4])
    (mine / "01_preprocess" / artifacts.TABLE).unlink()  # a file removed since 02 read it
    before = _runs_made(runs_root)
    with pytest.raises(runs.StepRefused) as info:
        _step_by_hand("04_evaluate")
    message = str(info.value)
    assert message.startswith(f"cannot take 01_preprocess from {mine}: that stage ended "
                              "incomplete: no 01_preprocess/processed.parquet there\n  -> ")
    assert "04_evaluate did not start" in message
    assert _runs_made(runs_root) == before
    assert runs.session_run_dir() == runs.latest_run_dir() == mine
    # in JupyterLab the refusal shows as its message alone, without a traceback
    assert info.value._render_traceback_() == [f"\x1b[0;31mStepRefused\x1b[0m: {message}"]
