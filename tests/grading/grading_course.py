"""The grading tests' course copy and sandbox requirement (imported by conftest.py and the tests).

Sandboxed grading needs bubblewrap and, as an ordinary user, user namespaces. Where they are missing
the sandboxed tests are skipped with the reason, except in CI (the ``CI`` environment variable is
set), where ``.ci/run`` installs bubblewrap and runs the suites as root and again as an ordinary user
(tests/grading/test_rootless.py): there a missing sandbox fails the run instead of hiding it.

The same suites run in both modes; :class:`HostState` is how they check that nothing of a sandbox is
left: as root, nothing of the submissions' own uids; as an ordinary user (whose uid the sandboxes
share outside their namespaces), nothing of that uid that was not there before the run.
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


class HostState:
    """What sandboxes could leave on the host, taken before a run and compared after it."""

    def __init__(self, ignore: Path | None = None):
        from rnn_course.grading import confinement

        self.rootless = confinement.rootless()
        self.ignore = (
            str(ignore) if ignore else None
        )  # the test's own folder (it writes there)
        self.before = (
            self._traces() if self.rootless else {}
        )  # as root, the submissions' uids are new: nothing is there before

    def _traces(self, uids: set[int] | None = None) -> dict:
        from rnn_course.grading import confinement

        found = confinement.traces_on_host(uids or {os.getuid()})
        if self.rootless:  # only what is new, and not the test's own files or processes
            own = {os.getpid(), *confinement.descendants(os.getpid())}
            found["processes"] = [
                pid for pid in found.get("processes", []) if pid not in own
            ]
            found["files"] = [
                path
                for path in found.get("files", [])
                if not (self.ignore and path.startswith(self.ignore))
            ]
        return {kind: value for kind, value in found.items() if value}

    def left(self, summary_uids: set[int]) -> dict:
        """What is on the host now that a run left: {} when nothing."""
        if not self.rootless:
            return self._traces(set(summary_uids))
        now = self._traces()
        return {
            kind: new
            for kind, values in now.items()
            if (
                new := [
                    value for value in values if value not in self.before.get(kind, [])
                ]
            )
        }


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
