"""The one place figures are set up and saved.

The plotting libraries load only when a figure is made: the training entry point and
``Classifier`` import this package inside SageMaker containers and servers, which have no use
for matplotlib or seaborn and may not have them.
"""

from __future__ import annotations

from pathlib import Path

# Backends that draw into Jupyter; anything else (a missing display, papermill, CI) gets Agg.
_NOTEBOOK_BACKENDS = ("module://", "nbagg", "ipympl", "widget")


def pyplot():
    """``(matplotlib.pyplot, seaborn)``, on the Agg backend unless a notebook backend is set."""
    import matplotlib

    if not matplotlib.get_backend().lower().startswith(_NOTEBOOK_BACKENDS):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    return plt, sns


def save_figure(fig, path: str | Path | None, *, dpi: int = 110):
    """Save a PNG beside the run's other artifacts (so it outlives the notebook) and return the
    figure, which a notebook then shows inline."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig
