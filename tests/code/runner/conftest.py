"""Shared by the runner's tests: a guard that no notebook runs, and hand-made run folders."""

from pathlib import Path

import pytest

from mlclf_utils import artifacts


@pytest.fixture
def no_notebook_may_run(monkeypatch):
    """A test that expects a failure before any stage must not start a run on a regression."""
    import papermill

    def refuse(*args, **kwargs):
        raise AssertionError("a notebook was executed; the checks should have failed first")

    monkeypatch.setattr(papermill, "execute_notebook", refuse)


@pytest.fixture
def fake_run():
    """A run folder with one artifact per stage and a manifest giving each stage's status."""

    def make(root: Path, stages: dict[str, str], parameters: dict | None = None) -> Path:
        run = root / "source"
        run.mkdir(parents=True)
        for stage, status in stages.items():
            (run / stage).mkdir()
            (run / stage / "artifact.txt").write_text(stage)
            (run / f"{stage}.ipynb").write_text("{}")
        artifacts.write_json(run / artifacts.MANIFEST, {
            "parameters": parameters or {},
            "stages": [{"stage": s, "status": st} for s, st in stages.items()]})
        return run

    return make

