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


_ROOTLESS: dict = {}  # the harness of test_rootless.py, once started


def pytest_collection_finish(session):
    """Start the runs as an ordinary user (test_rootless.py) now, when this session runs
    that test: they go on beside the root suites, and the test waits for them."""
    if session.config.option.collectonly:
        return
    from test_rootless import start_in_background

    harness = start_in_background(session.items)
    if harness is not None:
        _ROOTLESS["harness"] = harness


def pytest_sessionfinish(session):
    if "harness" in _ROOTLESS:  # a session stopped before the test waited for it
        _ROOTLESS["harness"].stop()


@pytest.fixture
def rootless_harness():
    """The harness started when collection ended, or None."""
    return _ROOTLESS.get("harness")
