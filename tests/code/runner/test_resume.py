"""Taking earlier stages from another run: where to start, and linking without touching it."""

import pytest

from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.runner import parameters, resume

NOTEBOOKS = parameters.stage_notebooks()


def test_resume_starts_at_the_first_unfinished_stage(tmp_path, fake_run):
    run = fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "ok", "03_train": "failed"})
    assert resume.resume_point(run, NOTEBOOKS) == "03_train"
    done = fake_run(tmp_path / "b", {s.stem: "ok" for s in NOTEBOOKS})
    with pytest.raises(ParameterError, match="every stage finished"):
        resume.resume_point(done, NOTEBOOKS)
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(ParameterError, match="--from"):
        resume.resume_point(bare, NOTEBOOKS)


def test_reused_stages_are_linked_not_moved_and_failed_ones_refused(tmp_path, fake_run):
    run = fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "failed"})
    new = tmp_path / "new"
    new.mkdir()
    entries = resume.reuse_stages(run, new, ["01_preprocess"])
    assert entries[0]["status"] == "reused" and entries[0]["from_run"] == "source"
    assert (new / "01_preprocess" / "artifact.txt").read_text() == "01_preprocess"
    assert (new / "01_preprocess.ipynb").exists()
    assert (run / "01_preprocess" / "artifact.txt").exists()  # the source keeps its files
    with pytest.raises(MlclfError, match="02_save_data.*ended failed"):
        resume.reuse_stages(run, tmp_path / "other", ["02_save_data"])


def test_a_stage_stepped_through_by_hand_in_a_forked_run_is_taken_from_it(tmp_path, fake_run):
    """A fork made by hand records the stages it reused; the one run there by hand has no entry
    (nothing runs after a notebook's last cell), and its files say it finished."""
    run = fake_run(tmp_path, {"01_preprocess": "reused", "02_save_data": "reused"})
    (run / "03_train" / "model").mkdir(parents=True)
    resume.check_reusable(run, ["01_preprocess", "02_save_data", "03_train"])
    assert resume.resume_point(run, NOTEBOOKS) == "04_evaluate"
    (run / "04_evaluate").mkdir()  # its first cell made the folder, then it stopped
    with pytest.raises(MlclfError, match=r"cannot take 04_evaluate from .*: that stage ended "
                                         r"incomplete: 04_evaluate is empty there\n  -> run it "
                                         r"again: python -m mlclf_utils run --resume .* --from 04"):
        resume.check_reusable(run, ["04_evaluate"])
    assert resume.resume_point(run, NOTEBOOKS) == "04_evaluate"
    with pytest.raises(MlclfError, match="cannot take 05_explain from .*: that stage did not run"):
        resume.check_reusable(run, ["05_explain"])
