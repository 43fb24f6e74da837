"""Tiny helper for writing notebooks from a list of (kind, source) pairs.

Notebooks are authored as Python lists in tools/notebooks_src/*.py so that reviews see plain
diffs; `python tools/nbbuild.py` writes notebooks/*.ipynb without outputs (execute them with
`make run` and copy the executed notebook back to commit real outputs).
"""

import importlib.util
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def build(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source, *tags in cells:
        source = source.strip("\n")
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:02d}"
    return nb


def main(names) -> None:
    src_dir = ROOT / "tools" / "notebooks_src"
    for path in sorted(src_dir.glob("*.py")):
        if names and path.stem not in names:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        target = ROOT / "notebooks" / f"{path.stem}.ipynb"
        nbformat.write(build(module.CELLS), str(target))
        print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
