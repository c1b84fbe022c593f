"""Finding and checking submissions before any student code runs (no sandbox needed).

Every malformed input must end as its student's row, with the others still checked;
identities must be unique and printable; nothing unprintable may reach a written file.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import shutil
import warnings
import zipfile
import zlib
from pathlib import Path

import nbformat
import pytest
from grading_submissions import ASSIGNMENT, NOTEBOOK, answered, cell, load, to_bytes
from malformed import (
    build_zip,
    concatenated,
    damage_data,
    deflate_bomb,
    patch,
    rename,
    zip_with_raw_member,
)

from rnn_course.grading import intake, report


@pytest.fixture
def notebooks(course):
    release = load(course, "release")
    return {
        "release": release,
        "correct": answered(release, load(course, "source")),
        "release_path": course / "exercises" / ASSIGNMENT / NOTEBOOK,
    }


def collect(path, notebooks, tmp_path, roster=None):
    found = intake.collect(
        path,
        ASSIGNMENT,
        NOTEBOOK,
        notebooks["release_path"],
        tmp_path / "staging",
        roster,
    )
    return {submission.student: submission for submission in found}


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def unprintable(text: str, allowed: str = "") -> list[str]:
    """The characters of ``text`` that a terminal or an editor would not show."""
    return [c for c in text if not c.isprintable() and c not in allowed]


def test_folder_layouts_renamed_missing_and_invalid(tmp_path, notebooks):
    root = tmp_path / "submitted"
    correct = to_bytes(notebooks["correct"])
    write(root / "ann" / ASSIGNMENT / NOTEBOOK, correct)  # nbgrader's layout
    write(root / "ann" / ASSIGNMENT / "helper.py", b"X = 1\n")  # extra files go along
    write(root / "bob" / NOTEBOOK, correct)  # without the assignment level
    write(root / "cem" / "answers (1).ipynb", correct)  # the only notebook, renamed
    write(root / "dan" / "a.ipynb", correct)
    write(
        root / "dan" / "b.ipynb", correct
    )  # two notebooks, neither with the right name
    write(root / "eve" / "readme.txt", b"forgot")
    write(root / "fay" / NOTEBOOK, b"\x89PNG not a notebook")
    write(root / "gus" / NOTEBOOK, b'{"nbformat": 3, "cells": "no"}')
    (root / ".hidden").mkdir()
    found = collect(root, notebooks, tmp_path)
    assert sorted(found) == ["ann", "bob", "cem", "dan", "eve", "fay", "gus"]
    assert found["ann"].status is None
    assert sorted(found["ann"].files) == ["ch02_memory_cell.ipynb", "helper.py"]
    assert found["bob"].status is None and found["bob"].notebook == NOTEBOOK
    assert (
        found["cem"].status is None and found["cem"].renamed_from == "answers (1).ipynb"
    )
    assert found["dan"].status == report.MISSING
    assert "several other notebooks" in found["dan"].message
    assert found["eve"].status == report.MISSING
    assert found["fay"].status == report.INVALID and "not UTF-8" in found["fay"].message
    assert (
        found["gus"].status == report.INVALID and "nbformat 4" in found["gus"].message
    )
    assert (
        found["bob"].fingerprint
        and found["bob"].fingerprint != found["cem"].fingerprint
    )


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
    (bad,) = [name for name in found if name.startswith("bad_name~")]  # a safe name
    assert found[bad].status == report.UNKNOWN and "'bad name!'" in found[bad].message
    assert found["zoe"].status == report.MISSING
    assert found["zoe"].message == "no submission found"
    plain = tmp_path / "roster.txt"
    plain.write_text("# my class\nann\nzoe\n")
    assert intake.read_roster(plain) == ["ann", "zoe"]


@pytest.mark.parametrize("ids", [["ann", "Ann"], ["ann", "a b"], ["ann", "ann\x1b"]])
def test_a_roster_must_name_each_student_once_and_printably(tmp_path, ids):
    roster = tmp_path / "roster.txt"
    roster.write_text("\n".join(ids) + "\n")
    with pytest.raises(ValueError, match="differ only in case|not a valid student id"):
        intake.read_roster(roster)


def test_lms_zip_flat_and_with_folders(tmp_path, notebooks):
    archive = tmp_path / "export.zip"
    correct = to_bytes(notebooks["correct"])
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(
            f"ann_1234_5678_{NOTEBOOK}", correct
        )  # Canvas: <student>_..._<file>
        zf.writestr("bob_late_whatever.ipynb", correct)  # renamed
        zf.writestr(f"cem/{ASSIGNMENT}/{NOTEBOOK}", correct)  # folders inside the zip
        zf.writestr(f"../../escape_{NOTEBOOK}", correct)  # trying to leave the staging
        zf.writestr("__MACOSX/._junk", b"")
    found = collect(archive, notebooks, tmp_path)
    assert found["ann"].status is None and found["ann"].notebook == NOTEBOOK
    assert found["ann"].renamed_from is None
    assert found["bob"].renamed_from == "late_whatever.ipynb"
    assert found["cem"].notebook == NOTEBOOK and found["cem"].renamed_from is None
    (escape,) = [row for name, row in found.items() if "escape" in name]
    assert escape.status == report.UNKNOWN and "outside every student" in escape.message
    staged = [path for path in (tmp_path / "staging").rglob("*") if path.is_file()]
    assert staged and all((tmp_path / "staging") in path.parents for path in staged)
    assert not (tmp_path.parent / f"escape_{NOTEBOOK}").exists()


def test_tampered_cells_are_named_and_unknown_grade_ids_repaired(tmp_path, notebooks):
    nb = copy.deepcopy(notebooks["release"])
    cell(nb, "test_memory_cell_step").source = "pass"
    cell(nb, "test_run_memory_cell").metadata.nbgrader["grade_id"] = "my_test"
    nb.cells = [
        c
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") != "test_predict_every_step"
    ]
    duplicate = copy.deepcopy(
        cell(notebooks["release"], "setup")
    )  # a locked cell twice
    duplicate.id = "setup-again"
    nb.cells.append(duplicate)
    root = tmp_path / "submitted"
    write(root / "tam" / NOTEBOOK, to_bytes(nb))
    submission = collect(root, notebooks, tmp_path)["tam"]
    assert sorted(submission.tampered) == [
        "my_test (unknown grade id)",
        "setup (duplicated)",
        "test_memory_cell_step (edited)",
        "test_predict_every_step (deleted)",
        "test_run_memory_cell (deleted)",
    ]
    # (nbgrader 0.9.6 would crash on my_test)
    repaired = nbformat.read(submission.files[NOTEBOOK], as_version=4)
    assert all(
        c.metadata.get("nbgrader", {}).get("grade_id") != "my_test"
        for c in repaired.cells
    )


def test_an_unmodified_release_is_not_tampered(tmp_path, notebooks):
    root = tmp_path / "submitted"
    write(root / "ann" / NOTEBOOK, to_bytes(notebooks["correct"]))
    assert collect(root, notebooks, tmp_path)["ann"].tampered == []


# --- malformed notebooks -------------------------------------------------------------


def _json(nb) -> dict:
    return json.loads(to_bytes(nb))


def _changed(change):
    """A case: the release's JSON changed by ``change(data)`` (may return bytes)."""

    def make(release) -> bytes:
        data = _json(release)
        result = change(data)
        return result if isinstance(result, bytes) else json.dumps(data).encode()

    return make


def _set(path, value):
    def change(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return _changed(change)


def _text(transform):
    return _changed(lambda data: transform(json.dumps(data)).encode())


NESTED_300 = "[" * 300 + "]" * 300
MALFORMED_NOTEBOOKS = {
    # (what the student's file holds, a piece of the row's message)
    "cell metadata a list": (_set(("cells", 1, "metadata"), []), "cells[1].metadata"),
    "nbgrader metadata a string": (
        _set(("cells", 1, "metadata", "nbgrader"), "x"),
        "nbgrader metadata",
    ),
    "grade id a number": (
        _set(("cells", 4, "metadata", "nbgrader", "grade_id"), 7),
        "nbgrader metadata",
    ),
    "grade id a list": (
        _set(("cells", 4, "metadata", "nbgrader", "grade_id"), ["a"]),
        "nbgrader metadata",
    ),
    "schema version a string": (
        _set(("cells", 4, "metadata", "nbgrader", "schema_version"), "3"),
        "nbgrader metadata",
    ),
    "points negative": (
        _set(("cells", 4, "metadata", "nbgrader", "points"), -4),
        "nbgrader metadata",
    ),
    "source a number": (_set(("cells", 3, "source"), 5), "cells[3].source"),
    "outputs an object": (_set(("cells", 3, "outputs"), {}), "cells[3].outputs"),
    "execution count a string": (
        _set(("cells", 3, "execution_count"), "1"),
        "cells[3]",
    ),
    "no cells": (_changed(lambda data: data.pop("cells")), "no list of cells"),
    "cells an object": (_set(("cells",), {}), "no list of cells"),
    "a cell that is a string": (_set(("cells", 0), "x"), "cells[0] is not an object"),
    "a cell of an unknown type": (_set(("cells", 0, "cell_type"), "magic"), "cells[0]"),
    "metadata a list": (_set(("metadata",), []), "metadata"),
    "duplicated key": (
        _text(lambda text: text.replace('"cells": [', '"cells": [], "cells": [', 1)),
        "twice",
    ),
    "nested 100000 levels": (
        _text(lambda text: text[:-1] + ', "x": ' + "[" * 100000 + "]" * 100000 + "}"),
        "levels deep",
    ),
    "nested 300 levels in cell metadata": (
        _text(
            lambda text: text.replace(
                '"metadata": {', '"metadata": {"x": ' + NESTED_300 + ", ", 1
            )
        ),
        "levels deep",
    ),
    "an integer of 5000 digits": (
        _text(lambda text: text[:-1] + ', "x": ' + "9" * 5000 + "}"),
        "is not JSON",
    ),
    "NaN": (_text(lambda text: text[:-1] + ', "x": NaN}'), "NaN"),
    "a float too large": (_text(lambda text: text[:-1] + ', "x": 1e999}'), "too large"),
    "not UTF-8": (
        lambda release: to_bytes(release).replace(b"memory", b"\xff", 1),
        "not UTF-8",
    ),
    "UTF-16": (
        lambda release: to_bytes(release).decode().encode("utf-16"),
        "not UTF-8",
    ),
    "nbformat 3": (_set(("nbformat",), 3), "nbformat 4"),
    "nbformat a string": (_set(("nbformat",), "4"), "not a notebook"),
    "nbformat_minor missing": (
        _changed(lambda data: data.pop("nbformat_minor")),
        "nbformat 4",
    ),
    "a list, not an object": (lambda release: b"[]", "not a notebook"),
    "empty file": (lambda release: b"", "is not JSON"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_NOTEBOOKS))
def test_a_malformed_notebook_is_its_students_row_and_the_others_are_checked(
    tmp_path, notebooks, case
):
    make, expected = MALFORMED_NOTEBOOKS[case]
    root = tmp_path / "submitted"
    write(root / "ann" / NOTEBOOK, to_bytes(notebooks["correct"]))
    write(root / "mal" / NOTEBOOK, make(notebooks["release"]))
    write(root / "zed" / NOTEBOOK, to_bytes(notebooks["correct"]))
    found = collect(root, notebooks, tmp_path)
    assert sorted(found) == ["ann", "mal", "zed"]
    assert found["ann"].status is None and found["zed"].status is None
    assert found["mal"].status == report.INVALID, found["mal"].message
    assert expected in found["mal"].message
    assert not unprintable(found["mal"].message) and len(found["mal"].message) < 300


def test_nesting_is_counted_without_recursion_and_ignores_strings():
    assert intake.nesting_depth('{"a": [1, {"b": "[[[[{{"}], "c": "\\"]]"}') == 3
    assert intake.nesting_depth("[" * 1_000_000 + "]" * 1_000_000) == 1_000_000
    assert intake.nesting_depth('"just a string"') == 0


def test_missing_and_duplicated_cell_ids_are_repaired_the_same_way_every_time(
    tmp_path, notebooks
):
    data = _json(notebooks["correct"])
    del data["cells"][0]["id"]
    data["cells"][2]["id"] = data["cells"][1]["id"]
    root = tmp_path / "submitted"
    write(root / "ann" / NOTEBOOK, json.dumps(data).encode())
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error"
        )  # nbformat would warn, and repair with random ids
        first = collect(root, notebooks, tmp_path / "first")["ann"]
        second = collect(root, notebooks, tmp_path / "second")["ann"]
    assert first.status is None and first.tampered == []
    ids = [c.id for c in nbformat.read(first.files[NOTEBOOK], as_version=4).cells]
    assert len(set(ids)) == len(ids) == len(data["cells"])
    assert first.files[NOTEBOOK].read_bytes() == second.files[NOTEBOOK].read_bytes()


# --- damaged and hostile archives ----------------------------------------------------

FLAT = f"mal_123_{NOTEBOOK}"


def _with_mal(notebooks, members: list[tuple[str, bytes]], deflate=True) -> bytes:
    correct = to_bytes(notebooks["correct"])
    return build_zip(
        [(f"ann_1_{NOTEBOOK}", correct), *members, (f"zed_1_{NOTEBOOK}", correct)],
        deflate,
    )


def _bomb(notebooks, lie: bool) -> bytes:
    """mal's member: 64 MiB of zeros (three times the limit per file) in 64 kB, its
    header telling the truth or claiming 1000 bytes."""
    size = 64 << 20
    bomb = zip_with_raw_member(
        FLAT, deflate_bomb(64), 1000 if lie else size, zlib.crc32(bytes(size))
    )
    return concatenated(bomb, _with_mal(notebooks, []))


def _bzip2_member(notebooks) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        correct = to_bytes(notebooks["correct"])
        archive.writestr(f"ann_1_{NOTEBOOK}", correct, zipfile.ZIP_DEFLATED)
        archive.writestr(FLAT, correct, zipfile.ZIP_BZIP2)
        archive.writestr(f"zed_1_{NOTEBOOK}", correct, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _release(notebooks) -> bytes:
    return to_bytes(notebooks["release"])


DAMAGED_ARCHIVES = {
    # (the archive, mal's status (None: graded), a piece of mal's message)
    "checksum wrong": (
        lambda nbs: patch(
            _with_mal(nbs, [(FLAT, _release(nbs))]), FLAT, crc=lambda old: old ^ 1
        ),
        report.INVALID_ARCHIVE,
        "Bad CRC-32",
    ),
    "deflated data damaged": (
        lambda nbs: damage_data(_with_mal(nbs, [(FLAT, _release(nbs))]), FLAT),
        report.INVALID_ARCHIVE,
        "cannot be read",
    ),
    "stored data damaged": (
        lambda nbs: damage_data(_with_mal(nbs, [(FLAT, _release(nbs))], False), FLAT),
        report.INVALID_ARCHIVE,
        "cannot be read",
    ),
    "declared size too small": (
        lambda nbs: patch(
            _with_mal(nbs, [(FLAT, _release(nbs))]),
            FLAT,
            central_only=True,
            file_size=100,
        ),
        report.INVALID_ARCHIVE,
        "cannot be read",
    ),
    "declared sizes huge, data intact": (  # read by its data: the header is not trusted
        lambda nbs: patch(
            _with_mal(nbs, [(FLAT, _release(nbs))]),
            FLAT,
            central_only=True,
            file_size=0xFFFFFFF0,
            compressed_size=0xFFFFFFF0,
        ),
        None,
        "",
    ),
    "encrypted": (
        lambda nbs: patch(
            _with_mal(nbs, [(FLAT, _release(nbs))]), FLAT, flags=lambda old: old | 1
        ),
        report.INVALID_ARCHIVE,
        "encrypted",
    ),
    "an unknown compression method": (
        lambda nbs: patch(_with_mal(nbs, [(FLAT, _release(nbs))]), FLAT, method=99),
        report.INVALID_ARCHIVE,
        "method 99",
    ),
    "bzip2 (whose output is not bounded)": (
        _bzip2_member,
        report.INVALID_ARCHIVE,
        "method 12",
    ),
    "the same member twice": (
        lambda nbs: _with_mal(nbs, [(FLAT, _release(nbs)), (FLAT, _release(nbs))]),
        report.INVALID_ARCHIVE,
        "two members",
    ),
    "two members for one notebook": (
        lambda nbs: _with_mal(
            nbs, [(FLAT, _release(nbs)), (f"mal_late_{NOTEBOOK}", _release(nbs))]
        ),
        report.INVALID_ARCHIVE,
        "two members",
    ),
    "a member climbing out of its folder": (
        lambda nbs: _with_mal(nbs, [(f"mal/{ASSIGNMENT}/../../x.py", b"")]),
        report.INVALID_ARCHIVE,
        "climbs out",
    ),
    "a deflate bomb": (lambda nbs: _bomb(nbs, lie=False), report.INVALID, "too large"),
    "a deflate bomb whose header lies": (
        lambda nbs: _bomb(nbs, lie=True),
        report.INVALID_ARCHIVE,
        "cannot be read",
    ),
    "more than 100 files": (
        lambda nbs: _with_mal(nbs, [(f"mal/f{i}.txt", b"x") for i in range(101)]),
        report.INVALID,
        "too large",
    ),
    "more than 50 MiB in all": (
        lambda nbs: _with_mal(
            nbs, [(f"mal/f{i}.bin", bytes(15 << 20)) for i in range(4)]
        ),
        report.INVALID,
        "too large",
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_ARCHIVES))
def test_a_damaged_archive_member_is_its_students_row(tmp_path, notebooks, case):
    make, status, expected = DAMAGED_ARCHIVES[case]
    archive = tmp_path / "export.zip"
    archive.write_bytes(make(notebooks))
    found = collect(archive, notebooks, tmp_path)
    assert sorted(found) == ["ann", "mal", "zed"]
    assert found["ann"].status is None and found["zed"].status is None
    assert found["mal"].status == status and expected in found["mal"].message, found[
        "mal"
    ].message
    staged = sum(
        path.stat().st_size
        for path in (tmp_path / "staging").rglob("*")
        if path.is_file()
    )
    assert staged < 2 * len(to_bytes(notebooks["correct"])) + (51 << 20)


def _central_directory_damaged(nbs) -> bytes:
    data = bytearray(_with_mal(nbs, []))
    data[data.rfind(b"PK\x01\x02")] ^= 0xFF
    return bytes(data)


WHOLE_ARCHIVE_PROBLEMS = {
    "garbage": (lambda nbs: b"PK\x03\x04 this is not an archive", {}),
    "cut in half": (lambda nbs: _with_mal(nbs, [])[:200], {}),
    "central directory damaged": (_central_directory_damaged, {}),
    "a name marked UTF-8 that is not": (
        lambda nbs: rename(
            _with_mal(nbs, [(FLAT, b"{}")]),
            FLAT,
            b"mal_123_\xff" + FLAT.encode()[9:],
            utf8_flag=True,
        ),
        {},
    ),
    "too many members": (
        lambda nbs: _with_mal(nbs, [(f"s{i}/x.txt", b"") for i in range(10)]),
        {"MAX_ZIP_MEMBERS": 5},
    ),
    "too much data": (
        lambda nbs: _with_mal(nbs, [(f"s{i}/x.bin", bytes(1 << 20)) for i in range(3)]),
        {"MAX_ZIP_BYTES": 2 << 20},
    ),
}


@pytest.mark.parametrize("case", sorted(WHOLE_ARCHIVE_PROBLEMS))
def test_an_archive_that_cannot_be_read_as_a_whole_is_refused_with_a_reason(
    tmp_path, notebooks, monkeypatch, case
):
    make, limits = WHOLE_ARCHIVE_PROBLEMS[case]
    for name, value in limits.items():
        monkeypatch.setattr(intake, name, value)
    archive = tmp_path / "export.zip"
    archive.write_bytes(make(notebooks))
    with pytest.raises(intake.IntakeError, match="zip archive|split it") as raised:
        collect(archive, notebooks, tmp_path)
    assert str(archive) in str(raised.value)


# --- zips with nbgrader's assignment level, and wrapping folders ---------------------

OTHER = "ch01_neuron"  # another assignment of the course


def multi_assignment_members(correct: bytes) -> list[tuple[str, bytes]]:
    """nbgrader's ``submitted/`` with several assignments, as (path, data) pairs."""
    return [
        (f"ann/{ASSIGNMENT}/{NOTEBOOK}", correct),
        (f"ann/{ASSIGNMENT}/data.csv", b"x,y\n"),  # beside the notebook: goes along
        (f"ann/{ASSIGNMENT}/old/{NOTEBOOK}", b"{}"),  # a sub-folder: ignored
        (f"ann/{OTHER}/{OTHER}.ipynb", b"{}"),  # another assignment: ignored
        (f"ann/{OTHER}/data.csv", b"other"),
        (f"bob/{OTHER}/x.ipynb", b"{}"),  # only another assignment: absent
        (f"cy/{OTHER}/{OTHER}.ipynb", b"{}"),
        ("cy/ch03_unrolling/notes.txt", b"later"),
        (f"dan/{ASSIGNMENT}/notes.txt", b"forgot"),  # tried, no notebook
        (f"eve/{NOTEBOOK}", correct),  # without the assignment level
        ("eve/drafts/old.txt", b""),
        ("fay/readme.txt", b"forgot"),  # without the level, no notebook
    ]


def rows_of(found) -> dict[str, tuple]:
    """What a row says, for comparing two readings of the same submissions."""
    return {
        submission.student: (
            submission.status,
            submission.message,
            sorted(submission.files),
            submission.notebook,
            submission.renamed_from,
            submission.fingerprint,
        )
        for submission in found
    }


def read(path, notebooks, tmp_path, roster=None):
    staging = tmp_path / f"staging-{path.name}"
    return intake.collect(
        path, ASSIGNMENT, NOTEBOOK, notebooks["release_path"], staging, roster
    )


@pytest.mark.parametrize("wrapper", ["", "submitted/", f"{ASSIGNMENT}/"])
def test_a_zip_with_assignment_folders_is_read_as_the_folder_is(
    tmp_path, notebooks, wrapper
):
    correct = to_bytes(notebooks["correct"])
    members = multi_assignment_members(correct)
    for name, data in members:
        write(tmp_path / "submitted" / name, data)
    archive = tmp_path / "export.zip"
    archive.write_bytes(build_zip([(wrapper + name, data) for name, data in members]))
    from_zip = read(archive, notebooks, tmp_path)
    from_folder = read(tmp_path / "submitted", notebooks, tmp_path)
    rows = rows_of(from_zip)
    assert rows == rows_of(from_folder)
    assert from_zip.absent == from_folder.absent == ["bob", "cy"]
    assert sorted(rows) == ["ann", "dan", "eve", "fay"]
    ann, eve = rows["ann"], rows["eve"]
    assert ann[0] is None and ann[2] == ["ch02_memory_cell.ipynb", "data.csv"]
    assert eve[0] is None and eve[2] == [NOTEBOOK] and eve[4] is None
    assert rows["dan"][0] == rows["fay"][0] == report.MISSING
    staged = {path.name for path in (tmp_path / "staging-export.zip").rglob("*")}
    assert "notes.txt" in staged  # (dan's)
    assert not {"x.ipynb", f"{OTHER}.ipynb"} & staged  # (other assignments': not read)


def test_the_brief_case_another_assignments_notebook_is_not_graded(tmp_path, notebooks):
    correct = to_bytes(notebooks["correct"])
    archive = tmp_path / "subs.zip"
    archive.write_bytes(
        build_zip(
            [(f"s1/{ASSIGNMENT}/{NOTEBOOK}", correct), (f"s2/{OTHER}/x.ipynb", correct)]
        )
    )
    found = read(archive, notebooks, tmp_path)
    assert [row.student for row in found] == ["s1"] and found[0].status is None
    assert found.absent == ["s2"]


def test_a_zip_student_without_this_assignment_on_the_roster_is_missing(
    tmp_path, notebooks
):
    correct = to_bytes(notebooks["correct"])
    archive = tmp_path / "export.zip"
    archive.write_bytes(build_zip(multi_assignment_members(correct)))
    roster = ["ann", "bob", "dan", "eve", "fay"]
    found = read(archive, notebooks, tmp_path, roster)
    rows = {submission.student: submission for submission in found}
    assert sorted(rows) == roster
    assert rows["bob"].status == report.MISSING
    assert rows["bob"].message == (
        f"not submitted: the student's folder has no {ASSIGNMENT} folder"
    )
    assert found.absent == ["cy"]


def test_a_zipped_submitted_folder_with_folder_entries(tmp_path, notebooks):
    """``zip -r submitted.zip submitted``: one wrapping folder, and entries for folders
    (made here by shutil, which writes them as zip does)."""
    correct = to_bytes(notebooks["correct"])
    for name, data in multi_assignment_members(correct):
        write(tmp_path / "submitted" / name, data)
    (tmp_path / "submitted" / "gus").mkdir()  # an empty student folder
    (tmp_path / "submitted" / "hal" / OTHER).mkdir(parents=True)  # and one of another
    archive = shutil.make_archive(
        str(tmp_path / "submitted"), "zip", root_dir=tmp_path, base_dir="submitted"
    )
    with zipfile.ZipFile(archive) as check:
        assert "submitted/gus/" in check.namelist()  # (the folder entries are there)
    from_zip = read(Path(archive), notebooks, tmp_path)
    from_folder = read(tmp_path / "submitted", notebooks, tmp_path)
    assert rows_of(from_zip) == rows_of(from_folder)
    assert sorted(rows_of(from_zip)) == ["ann", "dan", "eve", "fay", "gus"]
    assert from_zip.absent == from_folder.absent == ["bob", "cy", "hal"]


@pytest.mark.parametrize(
    "members, students, absent",
    [
        ([f"ann/{ASSIGNMENT}/{NOTEBOOK}"], {"ann": None}, []),  # one student
        ([f"ann/{OTHER}/x.ipynb"], {}, ["ann"]),  # one student, another assignment
        ([f"ann/{OTHER}/x.ipynb", "ann/ch03_unrolling/y.ipynb"], {}, ["ann"]),
        ([f"ann/{NOTEBOOK}", "ann/drafts/x.txt"], {"ann": None}, []),
        (
            [f"{ASSIGNMENT}/{NOTEBOOK}"],
            {ASSIGNMENT: None},
            [],
        ),  # its notebook: a student
        (  # a folder of students' files (no assignment level) is not told from one
            # student's folders of other assignments: listed, never graded as another's
            ["submitted/ann/x.ipynb", "submitted/bob/y.ipynb"],
            {},
            ["submitted"],
        ),
        (["ann/answers.ipynb"], {"ann": "answers.ipynb"}, []),  # renamed, as before
        (
            [f"{ASSIGNMENT}/ann_1_{NOTEBOOK}", f"{ASSIGNMENT}/bob_2_x.ipynb"],
            {"ann": None, "bob": "2_x.ipynb"},
            [],
        ),  # an LMS export in a folder
        (
            [f"{ASSIGNMENT}-export/submitted/ann/{ASSIGNMENT}/{NOTEBOOK}"],
            {"ann": None},
            [],
        ),  # two wrapping folders
        (
            [
                f"submitted/ann/{OTHER}/x.ipynb",
                f"submitted/bob/{ASSIGNMENT}/{NOTEBOOK}",
            ],
            {"bob": None},
            ["ann"],
        ),
        (
            [
                "__MACOSX/submitted/._ann",
                f"submitted/ann/{ASSIGNMENT}/{NOTEBOOK}",
                "submitted/.DS_Store",
            ],
            {"ann": None},
            [],
        ),
    ],
    ids=[
        "one student",
        "one student, another assignment",
        "one student, two other assignments",
        "one student without the level",
        "its notebook in a folder named for it",
        "students' files in one folder",
        "one student, renamed",
        "an LMS export in a folder",
        "two wrapping folders",
        "submitted with one absent student",
        "macOS's extra members",
    ],
)
def test_one_top_folder_is_a_student_or_a_wrapping_folder(
    tmp_path, notebooks, members, students, absent
):
    correct = to_bytes(notebooks["correct"])
    archive = tmp_path / "export.zip"
    archive.write_bytes(build_zip([(name, correct) for name in members]))
    found = read(archive, notebooks, tmp_path)
    assert {row.student: row.renamed_from for row in found} == students
    assert all(row.status is None for row in found)
    assert found.absent == absent


def _wrapped(notebooks, members: list[tuple[str, bytes]]) -> bytes:
    """mal's ``members`` in a zipped ``submitted/`` with ann and zed, who are fine."""
    correct = to_bytes(notebooks["correct"])
    return build_zip(
        [
            (f"submitted/ann/{ASSIGNMENT}/{NOTEBOOK}", correct),
            *[(f"submitted/{name}", data) for name, data in members],
            (f"submitted/zed/{ASSIGNMENT}/{NOTEBOOK}", correct),
        ]
    )


MAL = f"mal/{ASSIGNMENT}/{NOTEBOOK}"
WRAPPED_ARCHIVES = {
    # (the archive, mal's status (None: graded), a piece of mal's message)
    "checksum wrong": (
        lambda nbs: patch(
            _wrapped(nbs, [(MAL, _release(nbs))]),
            f"submitted/{MAL}",
            crc=lambda old: old ^ 1,
        ),
        report.INVALID_ARCHIVE,
        "Bad CRC-32",
    ),
    "encrypted": (
        lambda nbs: patch(
            _wrapped(nbs, [(MAL, _release(nbs))]),
            f"submitted/{MAL}",
            flags=lambda old: old | 1,
        ),
        report.INVALID_ARCHIVE,
        "encrypted",
    ),
    "the same member twice": (
        lambda nbs: _wrapped(nbs, [(MAL, _release(nbs)), (MAL, _release(nbs))]),
        report.INVALID_ARCHIVE,
        "two members",
    ),
    "a member climbing out of its folder": (
        lambda nbs: _wrapped(
            nbs, [(MAL, _release(nbs)), (f"mal/{ASSIGNMENT}/../../x.py", b"")]
        ),
        report.INVALID_ARCHIVE,
        "climbs out",
    ),
    "climbing out from another assignment's folder": (
        lambda nbs: _wrapped(
            nbs, [(MAL, _release(nbs)), (f"mal/{OTHER}/../../../x.py", b"")]
        ),
        report.INVALID_ARCHIVE,
        "climbs out",
    ),
    "more than 100 files": (
        lambda nbs: _wrapped(
            nbs, [(f"mal/{ASSIGNMENT}/f{i}.txt", b"x") for i in range(101)]
        ),
        report.INVALID,
        "too large",
    ),
    "a damaged member in another assignment's folder (not read)": (
        lambda nbs: patch(
            _wrapped(nbs, [(MAL, _release(nbs)), (f"mal/{OTHER}/x.ipynb", b"{}")]),
            f"submitted/mal/{OTHER}/x.ipynb",
            crc=lambda old: old ^ 1,
        ),
        None,
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(WRAPPED_ARCHIVES))
def test_the_archive_bounds_hold_at_the_assignment_level(tmp_path, notebooks, case):
    make, status, expected = WRAPPED_ARCHIVES[case]
    archive = tmp_path / "export.zip"
    archive.write_bytes(make(notebooks))
    found = collect(archive, notebooks, tmp_path)
    assert sorted(found) == ["ann", "mal", "zed"]
    assert found["ann"].status is None and found["zed"].status is None
    assert found["mal"].status == status, found["mal"].message
    assert expected in found["mal"].message


def test_hostile_members_beside_a_wrapping_folder_are_their_own_rows(
    tmp_path, notebooks
):
    correct = to_bytes(notebooks["correct"])
    archive = tmp_path / "export.zip"
    archive.write_bytes(
        build_zip(
            [
                (f"submitted/ann/{ASSIGNMENT}/{NOTEBOOK}", correct),
                (f"../../escape_{NOTEBOOK}", correct),
                (f"/abs/olute_{NOTEBOOK}", correct),
                (f"submitted/../up_{NOTEBOOK}", correct),
            ]
        )
    )
    found = collect(archive, notebooks, tmp_path)
    assert found["ann"].status is None
    others = [row for name, row in found.items() if name != "ann"]
    assert len(others) == 3 and all(row.status == report.UNKNOWN for row in others)
    assert all("outside every student" in row.message for row in others)
    staged = [path for path in (tmp_path / "staging").rglob("*") if path.is_file()]
    assert all((tmp_path / "staging") in path.parents for path in staged)


# --- odd names and identities --------------------------------------------------------

HOSTILE_IDS = [
    "Ann",
    "ann",  # the same id to a person, and to a case-insensitive file system
    "a b",
    "a_b",  # the same after replacing what cannot be in a file name
    "\u00e1ine",
    "a\u0301ine",  # the same text, NFC and NFD
    "\u0430nn",  # Cyrillic a
    "\uff41nn",  # fullwidth a
    "eve\x1b[2J",
    "eve\u202e",
    "eve\x07",
    "eve\r",
    "eve\u200b",  # unprintable
    os.fsdecode(b"eve\xff"),  # not UTF-8
    "x" * 150,  # too long
    "zed",
]


def test_identities_are_unique_printable_and_refused_when_ambiguous(
    tmp_path, notebooks
):
    root = tmp_path / "submitted"
    for student in HOSTILE_IDS:
        write(root / student / NOTEBOOK, to_bytes(notebooks["correct"]))
    found = collect(root, notebooks, tmp_path)
    names = list(found)
    assert len(names) == len(HOSTILE_IDS)
    assert len({name.lower() for name in names}) == len(names)  # unique, ignoring case
    assert all(name.isascii() and not unprintable(name) for name in names)
    assert all(report.FILE_STEM.fullmatch(name) for name in names)
    graded = sorted(name for name, row in found.items() if row.status is None)
    assert graded == ["a_b", "zed"]
    for raw in HOSTILE_IDS:
        if raw not in graded:  # refused; the message shows the original, escaped
            rows = [row for row in found.values() if ascii(raw)[:60] in row.message]
            assert rows and all(row.status == report.UNKNOWN for row in rows), raw
            assert not any(unprintable(row.message) for row in rows)
    (ann,) = [row for name, row in found.items() if name.startswith("ann~")]
    assert "'Ann', 'ann'" in ann.message and "differ only in case" in ann.message


def test_with_a_roster_the_roster_says_which_id_is_the_student(tmp_path, notebooks):
    root = tmp_path / "submitted"
    for student in ("Ann", "ann", "Zoe"):
        write(root / student / NOTEBOOK, to_bytes(notebooks["correct"]))
    found = collect(root, notebooks, tmp_path, roster=["ann", "zoe"])
    assert found["ann"].status is None
    (other_ann,) = [row for name, row in found.items() if name.startswith("Ann~")]
    (other_zoe,) = [row for name, row in found.items() if name.startswith("Zoe~")]
    assert other_ann.status == other_zoe.status == report.UNKNOWN
    assert "the roster, which has 'zoe'" in other_zoe.message
    assert found["zoe"].status == report.MISSING
    assert len({name.lower() for name in found}) == len(found) == 4


def test_a_flat_zip_with_ids_that_differ_only_in_case(tmp_path, notebooks):
    correct = to_bytes(notebooks["correct"])
    archive = tmp_path / "export.zip"
    archive.write_bytes(
        build_zip(
            [
                (f"Ann_1_{NOTEBOOK}", correct),
                (f"ann_2_{NOTEBOOK}", correct),
                (f"zed_3_{NOTEBOOK}", correct),
            ]
        )
    )
    found = collect(archive, notebooks, tmp_path)
    assert found["zed"].status is None
    assert sorted(row.status for name, row in found.items() if name != "zed") == [
        report.UNKNOWN,
        report.UNKNOWN,
    ]


def test_files_with_unprintable_names_are_ignored_and_named(tmp_path, notebooks):
    root = tmp_path / "submitted"
    correct = to_bytes(notebooks["correct"])
    write(root / "ann" / NOTEBOOK, correct)
    write(root / "ann" / "Icon\r", b"")  # (what macOS puts in folders)
    write(root / "bob" / "\x1b[2Jans\u202ewers.ipynb", correct)  # the only notebook
    write(root / "cem" / os.fsdecode(b"caf\xe9.ipynb"), correct)  # Latin-1, not UTF-8
    write(root / "dan" / "caf\u00e9.ipynb", correct)  # printable: renamed, graded
    found = collect(root, notebooks, tmp_path)
    assert found["ann"].status is None and sorted(found["ann"].files) == [NOTEBOOK]
    for student in ("bob", "cem"):
        assert found[student].status == report.MISSING
        assert "files ignored" in found[student].message
        assert not unprintable(found[student].message)
    assert "\\x1b[2Jans\\u202ewers.ipynb" in found["bob"].message
    assert (
        found["dan"].status is None and found["dan"].renamed_from == "caf\u00e9.ipynb"
    )


def test_odd_member_names_in_a_zip(tmp_path, notebooks):
    correct = to_bytes(notebooks["correct"])
    members = [
        (f"ann_1_{NOTEBOOK}", correct),
        (f"/abs/olute_{NOTEBOOK}", correct),
        (f"C:/users/x_{NOTEBOOK}", correct),
        (f"eve\x1b[2J_1_{NOTEBOOK}", correct),
        (f"fay_1_\u202e{NOTEBOOK}", correct),  # fay's only file: unprintable name
        ("gus_1_" + "x" * 300 + ".ipynb", correct),  # longer than a file name may be
        (f"hal_1_{NOTEBOOK}", correct),
    ]
    data = build_zip(members)
    data = rename(
        data,
        f"hal_1_{NOTEBOOK}",
        f"h\x81l_1_{NOTEBOOK}".encode("latin-1"),
        utf8_flag=False,
    )  # a byte that is not UTF-8 (read as cp437)
    archive = tmp_path / "export.zip"
    archive.write_bytes(data)
    found = collect(archive, notebooks, tmp_path)
    assert found["ann"].status is None
    assert found["fay"].status == found["gus"].status == report.MISSING
    others = [row for name, row in found.items() if name not in ("ann", "fay", "gus")]
    assert len(others) == 4 and all(row.status == report.UNKNOWN for row in others)
    for row in found.values():
        assert not unprintable(row.student + row.message)
        assert report.FILE_STEM.fullmatch(row.student)
    staged = [path for path in (tmp_path / "staging").rglob("*") if path.is_file()]
    assert all((tmp_path / "staging") in path.parents for path in staged)


# --- what is written -----------------------------------------------------------------

HOSTILE_TEXT = "ok \x1b[2J\x1b]0;owned\x07 \r\u202eevil\u200b \udcff end\n2nd line\ttab"


def test_nothing_unprintable_reaches_the_table_the_feedback_or_the_log(tmp_path):
    part = report.PartFeedback("test_x", HOSTILE_TEXT, 0.0, 1.0, HOSTILE_TEXT)
    row = report.Row(
        "ann",
        ASSIGNMENT,
        report.GRADED,
        HOSTILE_TEXT,
        0.0,
        1.0,
        [part],
        log=HOSTILE_TEXT,
    )
    folder = report.OutputFolder(tmp_path / "out")
    folder.save(row)
    table = folder.write_table([row], ["test_x"]).read_text(encoding="utf-8")
    for fields in csv.reader(io.StringIO(table)):
        *others, message = fields  # the message column: one printable line per reason
        for text in [*others, *message.split("\n")]:
            assert not unprintable(text), text
    assert "\\x1b[2J" in table and "\\u202eevil" in table  # shown, escaped
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not unprintable(text, allowed="\n\t"), path.name
    assert "2nd line" in (tmp_path / "out" / "logs" / "ann.log").read_text()
    cached = folder.cached("ann")
    assert cached is not None and cached.message == row.message


@pytest.mark.parametrize("student", ["../ann", "ann/x", ".hidden", "", "a\x00b"])
def test_a_row_name_that_could_not_name_a_file_is_refused(tmp_path, student):
    row = report.Row(student, ASSIGNMENT, report.GRADED, "", 0.0, 1.0)
    with pytest.raises(ValueError, match="name a file"):
        report.OutputFolder(tmp_path).save(row)


def test_every_status_is_listed_in_the_readme():
    readme = (report.Path(__file__).resolve().parents[2] / "README.md").read_text()
    for status in report.STATUSES:
        assert f"| `{status}` |" in readme, status


def test_isprintable_means_what_these_tests_need():
    """``str.isprintable`` is these tests' reference for "shown as text": check it."""
    for char in "\x1b\x07\r\n\t\x00\x7f\x9b\u202e\u2066\u200b\u2028\udcff\ufeff":
        assert not char.isprintable(), ascii(char)
    assert all(char.isprintable() for char in "a \u00e1\u0430\uff41~")
