"""Progress bars in an executed notebook, as someone who opens the saved file sees them.

In a kernel, a tqdm bar is a widget: JupyterLab draws it live from the kernel's model. The
saved file does not keep that model (``tools/references.py`` strips ``metadata.widgets`` as
noise, and GitHub never draws widgets), so a reader sees the output's text fallback, which
tqdm writes once, when the bar appears: "0%| | 0/103" forever. nbclient does record each
widget's last state while it executes; ``finish_bars`` rewrites every tqdm bar's output as the
text of that last state ("tokenizing: 100%|██████████| 8/8 [00:01<00:00, 6.1batch/s]"), so
the file says how each loop ended. A person stepping through live still gets live bars.

Headless runs also silence transformers' and datasets' own bars (loading weights, writing a
shard, saving a dataset: sub-second steps, noise for a learner) through those libraries' own
switches, set in the kernel's environment (``QUIET_LIBRARY_BARS``); the package's bars on its
long loops stay.
"""

from __future__ import annotations

import html
from pathlib import Path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MODEL_REFERENCE = "IPY_MODEL_"
# tqdm.notebook's bar: a box holding the text left of the bar, the bar, and the text right of it.
TQDM_PARTS = ["HTMLModel", "FloatProgressModel", "HTMLModel"]
QUIET_LIBRARY_BARS = {"HF_HUB_DISABLE_PROGRESS_BARS": "1",
                      "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def widget_states(notebook) -> dict:
    """The widget models nbclient saved at the end of the run, by model id."""
    saved = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {})
    return saved.get("state", {})


def bar_text(model_id: str, states: dict) -> str | None:
    """The last frame of the tqdm bar whose box is ``model_id``, drawn as tqdm draws it in a
    terminal; None for any other widget, or one whose state was not saved."""
    from tqdm.std import Bar

    box = states.get(model_id, {})
    if box.get("model_name") != "HBoxModel":
        return None
    parts = [states.get(str(child).removeprefix(MODEL_REFERENCE), {})
             for child in box.get("state", {}).get("children", [])]
    if [part.get("model_name") for part in parts] != TQDM_PARTS:
        return None
    layout = states.get(str(box["state"].get("layout", "")).removeprefix(MODEL_REFERENCE), {})
    if layout.get("state", {}).get("visibility") == "hidden":
        return ""  # closed with leave=False: gone from the live notebook too
    left, bar, right = (part.get("state", {}) for part in parts)
    # tqdm writes its text as HTML, with figure spaces so that the browser keeps the padding.
    left, right = (html.unescape(str(side.get("value", ""))).replace("\u2007", " ")
                   for side in (left, right))
    if not left:  # a bar_format without {bar}: tqdm writes the whole line on the right
        return right.strip()
    if not left.rstrip().endswith("%"):  # no total, no percentage: the bar would say nothing
        return f"{left}{right.strip()}"
    low, high, value = (float(bar.get(key) or 0) for key in ("min", "max", "value"))
    fraction = min(max((value - low) / (high - low), 0.0), 1.0) if high > low else 0.0
    return f"{left}|{format(Bar(fraction), '')}|{right}"


def finish_bars(notebook) -> int:
    """Each tqdm bar's output becomes the text of its last frame, and a bar that left nothing
    behind (leave=False) leaves no output; returns how many outputs changed."""
    states = widget_states(notebook)
    finished = 0
    for cell in notebook.cells:
        kept = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            text = bar_text(view.get("model_id", ""), states) if isinstance(view, dict) else None
            if text is not None:
                output["data"] = {"text/plain": text}
                finished += 1
            if text != "":
                kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    return finished


def finish_bars_in(path: str | Path) -> int:
    """``finish_bars`` on a saved notebook, rewritten only when a bar changed."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    finished = finish_bars(notebook)
    if finished:
        nbformat.write(notebook, str(path))
    return finished
