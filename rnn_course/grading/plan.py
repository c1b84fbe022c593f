"""What the grader runs for an assignment, read once from its source notebook (``rnn-course grade``).

The source notebook's setup, answer and test cells, each test cell's grade id, points and
description, and each student function's parameter names. Reading it needs neither torch nor a
sandbox, so the main process (which only needs the parts, for the table) stays light; the workers
run the plan with :mod:`.runner`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import nbformat


@dataclass
class Cell:
    kind: str  # "setup", "answer" or "test"
    grade_id: str
    source: str
    functions: list[str] = field(
        default_factory=list
    )  # answer cells: the functions they define
    points: float = 0.0  # test cells


@dataclass
class Part:
    """One auto-graded test cell: its grade id, points and the first line of its docstring."""

    grade_id: str
    points: float
    description: str


@dataclass
class TestPlan:
    """What the grader runs for an assignment, read once from the source notebook."""

    notebook: str  # the notebook's file name, e.g. "ch02_memory_cell.ipynb"
    cells: list[Cell]
    functions: list[str]
    parts: list[Part]
    parameters: dict[str, list[str]] = field(
        default_factory=dict
    )  # each function's parameter names

    @property
    def uses_meta_device(self) -> bool:
        """Whether a test calls on the meta device (the probe then imports torch._dynamo up front)."""
        return any(
            cell.kind == "test"
            and ("meta" in cell.source or "strict_device" in cell.source)
            for cell in self.cells
        )

    @property
    def max_score(self) -> float:
        return sum(part.points for part in self.parts)

    @classmethod
    def from_source(cls, path: Path) -> TestPlan:
        nb = nbformat.read(path, as_version=4)
        cells, functions, parts, parameters = [], [], [], {}
        last_test = max(
            (index for index, cell in enumerate(nb.cells) if _is_test(cell)), default=-1
        )
        for index, cell in enumerate(nb.cells):
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or index > last_test:
                continue  # cells after the last test cannot change a grade
            grade_id = meta.get("grade_id", cell.get("id", f"cell{index}"))
            if meta.get("solution") and not meta.get("grade"):
                definitions = [
                    node
                    for node in ast.parse(cell.source).body
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                ]
                names = [node.name for node in definitions]
                for node in definitions:
                    parameters[node.name] = [
                        arg.arg for arg in node.args.posonlyargs + node.args.args
                    ]
                cells.append(Cell("answer", grade_id, cell.source, functions=names))
                functions += names
            elif _is_test(cell):
                points = float(meta.get("points", 0))
                cells.append(Cell("test", grade_id, cell.source, points=points))
                parts.append(Part(grade_id, points, _first_docstring_line(cell.source)))
            elif meta.get("locked"):
                cells.append(Cell("setup", grade_id, cell.source))
        if not parts:
            raise ValueError(f"{path} has no auto-graded test cell")
        return cls(Path(path).name, cells, functions, parts, parameters)


def _is_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return (
        cell.cell_type == "code"
        and bool(meta.get("grade"))
        and not meta.get("solution")
    )


def _first_docstring_line(source: str) -> str:
    try:
        docstring = ast.get_docstring(ast.parse(source)) or ""
    except SyntaxError:
        return ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""
