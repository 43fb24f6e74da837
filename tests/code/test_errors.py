"""The expected cut of long texts: a warning for a direct caller, one plain line inside a stage
(``truncation_lines``), and every other warning left alone."""

import warnings

import pytest

from mlclf_utils.errors import TruncationWarning, truncation_lines


def cut(n: int = 3, total: int = 10, **kw) -> TruncationWarning:
    return TruncationWarning(f"{n} of {total} texts were longer than max_length=8 tokens",
                             cut=n, total=total, max_length=8, **kw)


def test_inside_a_stage_the_warning_is_one_printed_line_naming_the_split(capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with truncation_lines("validation"):
            warnings.warn(cut())
    assert not caught
    assert capsys.readouterr().out.splitlines() == [
        "validation: 3 of 10 texts were longer than 8 tokens; they were cut to their first 8, "
        "the same cut as in training (01 reported the share)"]


def test_an_explainer_cut_says_what_is_explained():
    line = cut(explained=True).line("explained mistakes")
    assert line.startswith("explained mistakes: 3 of 10 texts were longer than 8 tokens; only "
                           "their first tokens are explained, the same cut as in training")


def test_the_same_line_is_printed_once_also_from_nested_blocks(capsys):
    with truncation_lines():
        for _ in range(2):  # two models scored on the same splits
            with truncation_lines("validation"):
                warnings.warn(cut(3))
            with truncation_lines("test"):
                warnings.warn(cut(4))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["validation", "test"]
    with truncation_lines("validation"):  # a new outer block starts afresh
        warnings.warn(cut(3))
    assert capsys.readouterr().out.splitlines() == lines[:1]


def test_other_warnings_pass_through_unchanged(capsys):
    with truncation_lines("test"):
        with pytest.warns(RuntimeWarning, match="overflow"):
            warnings.warn("overflow in exp", RuntimeWarning)
        with pytest.warns(UserWarning, match="completeness") as seen:
            warnings.warn("2 of 9 explanations fail the completeness check")
    assert [w.category for w in seen] == [UserWarning]
    assert capsys.readouterr().out == ""


def test_after_the_block_the_warning_is_a_warning_again(capsys):
    before = warnings.showwarning
    with truncation_lines("test"):
        warnings.warn(cut())
    assert warnings.showwarning is before
    with pytest.warns(TruncationWarning, match="3 of 10 texts"):
        warnings.warn(cut())
    assert capsys.readouterr().out.count("\n") == 1


def test_a_warning_given_as_text_and_category_is_printed_as_its_text(capsys):
    with truncation_lines("test"):
        warnings.warn("some texts were cut", TruncationWarning)
    assert capsys.readouterr().out == "test: some texts were cut\n"
    assert issubclass(TruncationWarning, UserWarning)  # filters on UserWarning still reach it


def test_a_refused_step_is_one_of_the_packages_errors_and_shows_as_one_line():
    from mlclf_utils.errors import MlclfError, StepRefused
    from mlclf_utils.runner import runs

    assert runs.StepRefused is StepRefused  # where the runner and the notebooks raise it
    refused = StepRefused("04_evaluate did not start")
    assert isinstance(refused, MlclfError)
    # IPython's hook: JupyterLab shows the message alone, without a traceback into the package
    assert refused._render_traceback_() == ["\x1b[0;31mStepRefused\x1b[0m: 04_evaluate did not start"]
