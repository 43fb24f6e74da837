"""papermill's injected cell, read from a kernel's input history: a batch run is told from a
person stepping through, and a name the parameters cell does not define is refused."""

from types import SimpleNamespace

import IPython
import pytest

from mlclf_utils.errors import ParameterError
from mlclf_utils.runner import injected_parameters, runs

PARAMETERS_CELL = "epochs = 3  # type: int  passes over train\nbatch_size = 32  # type: int\n"


def _kernel(monkeypatch, *cells, **user_ns):
    """A shell whose input history holds ``cells`` after IPython's empty first entry."""
    shell = SimpleNamespace(history_manager=SimpleNamespace(input_hist_raw=["", *cells]),
                            user_ns=user_ns)
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)


def test_outside_a_kernel_nothing_was_injected():
    assert IPython.get_ipython() is None
    assert injected_parameters.under_papermill() is False
    injected_parameters.check_injected_parameters()  # does nothing, raises nothing


def test_a_person_stepping_through_is_not_a_batch_run(monkeypatch):
    _kernel(monkeypatch, "import x", PARAMETERS_CELL, "run_dir = None")
    assert runs.under_papermill() is False
    runs.check_injected_parameters()


def test_papermills_cell_after_the_parameters_cell_is_a_batch_run(monkeypatch):
    _kernel(monkeypatch, PARAMETERS_CELL, "# Parameters\nepochs = 1\n", "print(epochs)")
    assert runs.under_papermill() is True
    runs.check_injected_parameters()  # epochs is the notebook's own


def test_a_name_the_parameters_cell_does_not_define_is_refused(monkeypatch):
    _kernel(monkeypatch, PARAMETERS_CELL, "# Parameters\nepochz = 1\n", epochz=1)
    with pytest.raises(ParameterError, match=r"parameter epochz=1: no parameter of this "
                                             r"notebook has this name .*known: \['epochs', "
                                             r"'batch_size'\]"):
        runs.check_injected_parameters()
    _kernel(monkeypatch, PARAMETERS_CELL, "# Parameters\nepochz = 1\nbatchsize = 2\n")
    with pytest.raises(ParameterError, match=r"parameter parameters=\['epochz', 'batchsize'\]"):
        runs.check_injected_parameters()
