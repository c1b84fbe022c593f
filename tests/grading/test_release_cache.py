"""The release copy's cache: made once per release, used afterwards, remade when the release changes.

No sandbox needed: this is the grader's own preparation before any student code runs.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import nbformat

from rnn_course.grading import gradebook
from rnn_course.grading.command import release_cache

ASSIGNMENT = "ch01_neuron"


def _grade_cells(folder: Path) -> list[tuple]:
    """The release gradebook's grade cells and source checksums (what nbgrader restores from)."""
    with sqlite3.connect(folder / "gradebook.db") as db:
        return db.execute(
            "SELECT base_cell.name, grade_cells.max_score, source_cell.checksum "
            "FROM grade_cells JOIN base_cell ON grade_cells.id = base_cell.id "
            "JOIN source_cell ON source_cell.name = base_cell.name ORDER BY 1"
        ).fetchall()


def _counting_generate(monkeypatch) -> list:
    calls = []
    real = gradebook._generate_assignment

    def counted(config):
        calls.append(config.CourseDirectory.assignment_id)
        real(config)

    monkeypatch.setattr(gradebook, "_generate_assignment", counted)
    return calls


def test_the_release_copy_is_made_once_and_remade_when_the_release_changes(
    course, tmp_path, monkeypatch
):
    writer = gradebook.GradebookWriter(course, ASSIGNMENT, f"{ASSIGNMENT}.ipynb")
    writer.ensure_assignment(_grade_ids(course))  # makes gradebook.db
    fresh = tmp_path / "fresh"
    gradebook.prepare_release(course, ASSIGNMENT, fresh)  # no cache: nbgrader each time
    calls = _counting_generate(monkeypatch)
    cache = release_cache(course)

    first, second = tmp_path / "first", tmp_path / "second"
    gradebook.prepare_release(course, ASSIGNMENT, first, cache=cache)
    gradebook.prepare_release(course, ASSIGNMENT, second, cache=cache)
    assert calls == [ASSIGNMENT]  # made by nbgrader once, copied the second time
    assert _grade_cells(first) == _grade_cells(second) == _grade_cells(fresh) != []
    notebook = Path("source") / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert (second / notebook).read_bytes() == (
        course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    ).read_bytes()
    entries = sorted(path.name for path in cache.iterdir())
    assert len(entries) == 1 and entries[0].startswith(f"{ASSIGNMENT}-")

    # a regenerated release (here: an edited visible test) makes a new key and a new copy
    released = course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = nbformat.read(released, as_version=4)
    test_cell = next(
        cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade")
    )
    test_cell.source += "\nassert True  # changed"
    nbformat.write(nb, released)
    third = tmp_path / "third"
    gradebook.prepare_release(course, ASSIGNMENT, third, cache=cache)
    assert calls == [ASSIGNMENT, ASSIGNMENT]
    assert _grade_cells(third) != _grade_cells(
        first
    )  # the new checksum, not the old one
    assert (third / notebook).read_bytes() == released.read_bytes()
    assert [path.name for path in cache.iterdir()] != entries  # the stale entry is gone
    assert len(list(cache.iterdir())) == 1


def test_a_cache_that_cannot_be_written_falls_back_to_nbgrader(
    course, tmp_path, monkeypatch
):
    gradebook.GradebookWriter(course, ASSIGNMENT, "x").ensure_assignment(
        _grade_ids(course)
    )
    calls = _counting_generate(monkeypatch)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    gradebook.prepare_release(course, ASSIGNMENT, tmp_path / "out", cache=blocked)
    assert calls == [ASSIGNMENT]
    assert _grade_cells(tmp_path / "out") != []


def _grade_ids(course: Path) -> list[str]:
    from rnn_course.grading.runner import TestPlan

    source = course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    return [part.grade_id for part in TestPlan.from_source(source).parts]
