"""Shared by the exercise tests: the grade table of the nbgrader round trip, printed at the end of the run."""

import pytest

_GRADE_TABLE: list[str] = []


@pytest.fixture(scope="session")
def grade_table() -> list[str]:
    """Lines appended here are printed in pytest's terminal summary (no -s needed)."""
    return _GRADE_TABLE


def pytest_terminal_summary(terminalreporter):
    if _GRADE_TABLE:
        terminalreporter.section("nbgrader round trip: grades")
        for line in _GRADE_TABLE:
            terminalreporter.write_line(line)
