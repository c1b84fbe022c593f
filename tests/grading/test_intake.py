"""Finding and checking submissions before any student code runs (no sandbox needed)."""

from __future__ import annotations

import copy
import os
import zipfile

import nbformat
import pytest
from grading_submissions import ASSIGNMENT, NOTEBOOK, answered, cell, load, to_bytes

from rnn_course.grading import intake, report


@pytest.fixture
def notebooks(course):
    release = load(course, "release")
    return {"release": release, "correct": answered(release, load(course, "source")),
            "release_path": course / "exercises" / ASSIGNMENT / NOTEBOOK}


def collect(path, notebooks, tmp_path, roster=None):
    found = intake.collect(path, ASSIGNMENT, NOTEBOOK, notebooks["release_path"], tmp_path / "staging", roster)
    return {submission.student: submission for submission in found}


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_folder_layouts_renamed_missing_and_invalid(tmp_path, notebooks):
    root = tmp_path / "submitted"
    correct = to_bytes(notebooks["correct"])
    write(root / "ann" / ASSIGNMENT / NOTEBOOK, correct)  # nbgrader's layout
    write(root / "ann" / ASSIGNMENT / "helper.py", b"X = 1\n")  # extra files go along
    write(root / "bob" / NOTEBOOK, correct)  # without the assignment level
    write(root / "cem" / "answers (1).ipynb", correct)  # the only notebook, renamed
    write(root / "dan" / "a.ipynb", correct)
    write(root / "dan" / "b.ipynb", correct)  # two notebooks, neither with the right name
    write(root / "eve" / "readme.txt", b"forgot")
    write(root / "fay" / NOTEBOOK, b"\x89PNG not a notebook")
    write(root / "gus" / NOTEBOOK, b'{"nbformat": 3, "cells": "no"}')
    (root / ".hidden").mkdir()
    found = collect(root, notebooks, tmp_path)
    assert sorted(found) == ["ann", "bob", "cem", "dan", "eve", "fay", "gus"]
    assert found["ann"].status is None and sorted(found["ann"].files) == ["ch02_memory_cell.ipynb", "helper.py"]
    assert found["bob"].status is None and found["bob"].notebook == NOTEBOOK
    assert found["cem"].status is None and found["cem"].renamed_from == "answers (1).ipynb"
    assert found["dan"].status == report.MISSING and "several other notebooks" in found["dan"].message
    assert found["eve"].status == report.MISSING
    assert found["fay"].status == report.INVALID and found["gus"].status == report.INVALID
    assert found["bob"].fingerprint and found["bob"].fingerprint != found["cem"].fingerprint  # names count


def test_links_are_never_followed(tmp_path, notebooks):
    root = tmp_path / "submitted"
    secret = tmp_path / "secret.ipynb"
    secret.write_bytes(to_bytes(notebooks["correct"]))
    (root / "mal").mkdir(parents=True)
    os.symlink(secret, root / "mal" / NOTEBOOK)
    os.symlink(tmp_path, root / "linked_student")
    found = collect(root, notebooks, tmp_path)
    assert sorted(found) == ["mal"]
    assert found["mal"].status == report.MISSING and found["mal"].files == {}


def test_size_limits(tmp_path, notebooks, monkeypatch):
    monkeypatch.setattr(intake, "MAX_FILE_BYTES", 1000)
    root = tmp_path / "submitted"
    write(root / "big" / NOTEBOOK, to_bytes(notebooks["correct"]))
    assert collect(root, notebooks, tmp_path)["big"].status == report.INVALID


def test_roster_unknown_and_missing_students(tmp_path, notebooks):
    root = tmp_path / "submitted"
    write(root / "ann" / NOTEBOOK, to_bytes(notebooks["release"]))
    write(root / "intruder" / NOTEBOOK, to_bytes(notebooks["release"]))
    write(root / "bad name!" / NOTEBOOK, to_bytes(notebooks["release"]))
    roster = tmp_path / "roster.csv"
    roster.write_text("id,first_name,last_name\nann,Ann,A\nzoe,Zoe,Z\n")
    found = collect(root, notebooks, tmp_path, intake.read_roster(roster))
    assert found["ann"].status is None
    assert found["intruder"].status == report.UNKNOWN
    assert found["bad_name_"].status == report.UNKNOWN  # not a valid id: a row, with a safe name
    assert found["zoe"].status == report.MISSING and found["zoe"].message == "no submission found"
    plain = tmp_path / "roster.txt"
    plain.write_text("# my class\nann\nzoe\n")
    assert intake.read_roster(plain) == ["ann", "zoe"]


def test_lms_zip_flat_and_with_folders(tmp_path, notebooks):
    archive = tmp_path / "export.zip"
    correct = to_bytes(notebooks["correct"])
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"ann_1234_5678_{NOTEBOOK}", correct)  # Canvas style: <student>_..._<file>
        zf.writestr("bob_late_whatever.ipynb", correct)  # renamed
        zf.writestr(f"cem/{ASSIGNMENT}/{NOTEBOOK}", correct)  # folders inside the zip
        zf.writestr(f"../../escape_{NOTEBOOK}", correct)  # a path trying to leave the staging folder
        zf.writestr("__MACOSX/._junk", b"")
    found = collect(archive, notebooks, tmp_path)
    assert found["ann"].status is None and found["ann"].notebook == NOTEBOOK and found["ann"].renamed_from is None
    assert found["bob"].renamed_from == "late_whatever.ipynb"
    assert found["cem"].notebook == NOTEBOOK and found["cem"].renamed_from is None
    staged = [path for path in (tmp_path / "staging").rglob("*") if path.is_file()]
    assert staged and all((tmp_path / "staging") in path.parents for path in staged)
    assert not (tmp_path.parent / f"escape_{NOTEBOOK}").exists()


def test_tampered_cells_are_named_and_unknown_grade_ids_repaired(tmp_path, notebooks):
    nb = copy.deepcopy(notebooks["release"])
    cell(nb, "test_memory_cell_step").source = "pass"
    cell(nb, "test_run_memory_cell").metadata.nbgrader["grade_id"] = "my_test"
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_predict_every_step"]
    duplicate = copy.deepcopy(cell(notebooks["release"], "setup"))  # a locked cell twice
    duplicate.id = "setup-again"
    nb.cells.append(duplicate)
    root = tmp_path / "submitted"
    write(root / "tam" / NOTEBOOK, to_bytes(nb))
    submission = collect(root, notebooks, tmp_path)["tam"]
    assert sorted(submission.tampered) == ["my_test (unknown grade id)", "setup (duplicated)",
                                           "test_memory_cell_step (edited)", "test_predict_every_step (deleted)",
                                           "test_run_memory_cell (deleted)"]
    repaired = nbformat.read(submission.files[NOTEBOOK], as_version=4)  # nbgrader 0.9.6 would crash on my_test
    assert all(c.metadata.get("nbgrader", {}).get("grade_id") != "my_test" for c in repaired.cells)


def test_an_unmodified_release_is_not_tampered(tmp_path, notebooks):
    root = tmp_path / "submitted"
    write(root / "ann" / NOTEBOOK, to_bytes(notebooks["correct"]))
    assert collect(root, notebooks, tmp_path)["ann"].tampered == []
