"""Fixtures of the grading tests (helpers in grading_course.py, submissions in grading_submissions.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from grading_course import make_course, require_sandbox  # noqa: E402


@pytest.fixture
def sandbox_required():
    require_sandbox()


@pytest.fixture
def course(tmp_path) -> Path:
    return make_course(tmp_path / "course")
