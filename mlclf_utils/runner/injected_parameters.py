"""papermill's injected parameters: whether a kernel runs a batch, and names it does not take.

A notebook's kernel cannot ask papermill anything; the only trace papermill leaves is the cell
it injects after the ``parameters`` cell, in the kernel's input history. ``runs`` reads it to
tell a batch run from a person stepping through, and each notebook's first cells call
``check_injected_parameters`` (as ``runs.check_injected_parameters``, re-exported there).
"""

from __future__ import annotations

from mlclf_utils.errors import ParameterError


def under_papermill() -> bool:
    """True in a kernel that papermill (or the runner) gave parameters: a batch run, which
    uses ``runs/LATEST``; False when a person steps through the notebook."""
    return _injected_cell() is not None


def check_injected_parameters() -> None:
    """Under papermill, refuse a parameter the notebook's ``parameters`` cell does not define.

    papermill only warns about an unknown name and runs the notebook with the value unused, so
    ``-p epochz 3`` would train for the default 3 epochs without a word. papermill runs the
    cells in order and injects its values as a cell of its own right after the parameters cell,
    written as ``# Parameters`` and one assignment per line; the kernel's input history therefore
    holds the injected cell and, just before it, the parameters cell. Called by hand in
    JupyterLab, where nothing was injected, this does nothing.
    """
    import ast

    found = _injected_cell()
    if found is None:
        return
    shell, history, injected_at = found

    def assigned(source: str) -> list[str]:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return []
        return [target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)]

    injected = assigned(history[injected_at])
    known = assigned(history[injected_at - 1])
    unknown = [name for name in injected if name not in known]
    if unknown:
        raise ParameterError(
            unknown[0] if len(unknown) == 1 else "parameters",
            shell.user_ns.get(unknown[0]) if len(unknown) == 1 else unknown,
            f"no parameter of this notebook has {'this name' if len(unknown) == 1 else 'these names'}"
            f" (papermill would have ignored {'it' if len(unknown) == 1 else 'them'}); "
            f"known: {known}")


# papermill's injected cell starts with this comment (its translators' ``codify``).
PAPERMILL_MARK = "# Parameters\n"


def _injected_cell():
    """(shell, input history, index of papermill's injected cell), or None outside papermill."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - notebooks always run in IPython
        return None
    shell = get_ipython()
    if shell is None:
        return None
    history = list(shell.history_manager.input_hist_raw)
    for index in range(len(history) - 1, 0, -1):
        if history[index].lstrip().startswith(PAPERMILL_MARK):
            return shell, history, index
    return None
