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
