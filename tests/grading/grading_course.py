"""The grading tests' course copy and sandbox requirement (imported by conftest.py and the tests).

Sandboxed grading needs bubblewrap and root. Where they are missing the sandboxed tests are skipped
with the reason, except in CI (the ``CI`` environment variable is set), where ``.ci/run`` installs
bubblewrap and runs as root: there a missing sandbox fails the run instead of hiding it.
"""

from __future__ import annotations

import os
import shutil
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
