"""The grading tests' course copy and sandbox requirement (imported by conftest.py and the tests).

Sandboxed grading needs bubblewrap and root. Where they are missing the sandboxed tests are skipped
with the reason, except in CI (the ``CI`` environment variable is set), where ``.ci/run`` installs
bubblewrap and runs as root: there a missing sandbox fails the run instead of hiding it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sandbox_problem() -> str | None:
    """Why sandboxed grading cannot run here (the grader's own check), or None."""
    from rnn_course.grading.sandbox import SandboxError, check_sandbox_available

    try:
        check_sandbox_available()
    except SandboxError as error:
        return str(error)
    return None


def require_sandbox() -> None:
    """Skip (or, in CI, fail) the calling test or fixture when sandboxed grading cannot run here."""
    problem = sandbox_problem()
    if problem and os.environ.get("CI"):
        pytest.fail(f"CI must test the sandbox, but {problem}")
    if problem:
        pytest.skip(problem)


def make_course(target: Path) -> Path:
    """solutions/, exercises/ and the nbgrader configuration, as a fresh course root (no gradebook yet)."""
    target.mkdir(parents=True, exist_ok=True)
    for folder in ("solutions", "exercises"):
        shutil.copytree(ROOT / folder, target / folder)
    shutil.copy(ROOT / "nbgrader_config.py", target)
    return target


def gradebook_scores(course: Path, check_integrity: bool = False) -> dict[str, float]:
    """Each student's total auto_score in the course's gradebook.db, read with SQL (not nbgrader's API)."""
    with sqlite3.connect(course / "gradebook.db") as db:
        if check_integrity:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return dict(
            db.execute(
                "SELECT student.id, SUM(grade.auto_score) FROM grade "
                "JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
                "JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id "
                "JOIN student ON submitted_assignment.student_id = student.id GROUP BY student.id"
            ).fetchall()
        )
