"""Build nbgrader source notebooks with exactly nbgrader's cell metadata (schema version 3).

A helper for writing a new assignment's first draft from a script; afterwards the notebook in
solutions/ is the source and is edited directly (Jupyter's "Create Assignment" toolbar writes the
same metadata). Cell ids are readable and stable: the grade_id for graded/locked cells.
"""

from __future__ import annotations

import textwrap

import nbformat

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _nbgrader(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: float | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def _source(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def markdown(text: str, cell_id: str) -> nbformat.NotebookNode:
    """Instructions: an ordinary markdown cell (not graded, not locked)."""
    return nbformat.v4.new_markdown_cell(_source(text), id=cell_id)


def locked_code(text: str, grade_id: str) -> nbformat.NotebookNode:
    """Read-only code a student runs but does not change (imports, device set-up)."""
    return nbformat.v4.new_code_cell(_source(text), id=grade_id,
                                     metadata=_nbgrader(grade_id, grade=False, solution=False, locked=True))


def answer(text: str, grade_id: str) -> nbformat.NotebookNode:
    """An autograded answer: code with ``### BEGIN SOLUTION`` / ``### END SOLUTION`` around the answer."""
    source = _source(text)
    if "### BEGIN SOLUTION" not in source or "### END SOLUTION" not in source:
        raise ValueError(f"answer cell {grade_id!r} has no ### BEGIN SOLUTION / ### END SOLUTION markers")
    return nbformat.v4.new_code_cell(source, id=grade_id,
                                     metadata=_nbgrader(grade_id, grade=False, solution=True, locked=False))


def tests(text: str, grade_id: str, points: float) -> nbformat.NotebookNode:
    """An autograder test cell worth ``points``: passes when it runs without an error."""
    source = _source(text)
    if not source.startswith('"""'):
        raise ValueError(f"test cell {grade_id!r} must open with a one-line docstring saying what it checks")
    return nbformat.v4.new_code_cell(source, id=grade_id,
                                     metadata=_nbgrader(grade_id, grade=True, solution=False, locked=True,
                                                        points=points))


def write(path, cells) -> None:
    """Write a notebook (nbformat 4.5, Python 3 kernel, no outputs)."""
    notebook = nbformat.v4.new_notebook(cells=list(cells))
    notebook.metadata["kernelspec"] = KERNELSPEC
    notebook.metadata["language_info"] = {"name": "python"}
    nbformat.validate(notebook)
    nbformat.write(notebook, str(path))
