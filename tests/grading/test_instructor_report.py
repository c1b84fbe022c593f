"""What the instructor reads (issue 10, item 4), without a sandbox.

* The grade table's ``message`` column says, for every row that lost points, which parts
  failed and why: one short line each (``grade_id: reason``), readable in a spreadsheet
  cell, never a traceback.
* A student folder of a multi-assignment ``submitted/`` (nbgrader's
  ``<student>/<assignment>/``) that has no folder for this assignment is not a row: intake
  lists it once (the summary names it), unless the roster says the student exists.

The command's summary counts (graded now, reused, failed) are checked where the grading
tests really grade (test_grading_runs.py).
"""

from __future__ import annotations

import csv
import io

import pytest
import torch
from grading_submissions import ASSIGNMENT, NOTEBOOK, answered, load, to_bytes

from rnn_course import checks
from rnn_course.grading import intake, report
from rnn_course.grading.command import GradeSummary

GRADE_IDS = ["test_memory_cell_step", "test_run_memory_cell", "test_predict_every_step"]
NOT_ANSWERED = "not answered: the function still raises NotImplementedError"
LONG_HINT = (
    "W_h not transposed? The recurrent weights multiply the previous hidden state "
    "as h_prev @ W_h.T, the layout of nn.RNN's weight_hh_l0."
)


def shape_failure() -> str:
    """A real failure message of the exercise checks: wrapped over several lines."""
    with pytest.raises(checks.CheckFailed) as failure:
        checks.check_shape(
            torch.zeros(3, 4), (4, 3), "h_t", alternatives={LONG_HINT: (3, 4)}
        )
    return str(failure.value)


def part(grade_id: str, points: float | None, message: str = "", max_points=3.0):
    return report.PartFeedback(grade_id, "", points, max_points, message)


def table_rows(rows: list[report.Row]) -> dict[str, dict[str, str]]:
    text = report.grade_table(rows, GRADE_IDS)
    return {row["student"]: row for row in csv.DictReader(io.StringIO(text))}


def test_the_message_column_names_each_failed_part_and_why_in_one_line():
    wrapped = shape_failure()
    assert "\n" in wrapped  # (as the checks print it: wrapped for nbgrader validate)
    cem = report.Row(
        "cem",
        ASSIGNMENT,
        report.GRADED,
        "",
        3.0,
        9.0,
        [
            part("test_memory_cell_step", 0.0, wrapped),
            part("test_run_memory_cell", 0.0, NOT_ANSWERED),
            part("test_predict_every_step", 3.0),
        ],
    )
    ann = report.Row(
        "ann",
        ASSIGNMENT,
        report.GRADED,
        "",
        9.0,
        9.0,
        [part(grade_id, 3.0) for grade_id in GRADE_IDS],
    )
    lines = table_rows([cem, ann])["cem"]["message"].split("\n")
    assert lines == [
        "test_memory_cell_step: Likely mistake: W_h not transposed? The recurrent "
        "weights multiply the previous hidden state as h_prev @ W_h.T, the layout "
        "of...",
        "test_run_memory_cell: " + NOT_ANSWERED,
    ]
    assert table_rows([cem, ann])["ann"]["message"] == ""  # full marks: nothing to say


def test_parts_lost_for_one_reason_share_a_line_after_the_rows_own_message():
    timed_out = report.Row(
        "dan",
        ASSIGNMENT,
        report.TIMED_OUT_SUBMISSION,
        "the submission ran out of the 300 s it may take; parts not tested by then "
        "score 0",
        3.0,
        9.0,
        [
            part("test_memory_cell_step", 3.0),
            part("test_run_memory_cell", 0.0, "not graded: the sandbox has ended"),
            part("test_predict_every_step", 0.0, "not graded: the sandbox has ended"),
        ],
    )
    message = table_rows([timed_out])["dan"]["message"]
    assert message.split("\n") == [
        "the submission ran out of the 300 s it may take; parts not tested by then "
        "score 0",
        "test_run_memory_cell, test_predict_every_step: not graded: the sandbox has "
        "ended",
    ]


def test_a_row_refused_at_intake_keeps_its_one_line_and_nothing_else():
    missing = report.Row(
        "eve",
        ASSIGNMENT,
        report.MISSING,
        f"no {NOTEBOOK}",
        0.0,
        9.0,
        [part(grade_id, 0.0, report.NOT_GRADED) for grade_id in GRADE_IDS],
    )
    unknown = report.Row(
        "intruder",
        ASSIGNMENT,
        report.UNKNOWN,
        "not in the roster: fix the name or the roster",
        None,
        9.0,
        [part(grade_id, None, report.NOT_GRADED) for grade_id in GRADE_IDS],
    )
    rows = table_rows([missing, unknown])
    assert rows["eve"]["message"] == f"no {NOTEBOOK}"
    assert rows["intruder"]["message"] == (
        "not in the roster: fix the name or the roster"
    )


def test_every_line_is_short_and_no_traceback_reaches_the_table():
    error_text = (
        "RuntimeError: Traceback (most recent call last):\n"
        + '  File "<student>", line 3, in memory_cell_step\n' * 80
        + "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"
    )
    row = report.Row(
        "fay",
        ASSIGNMENT,
        report.GRADED,
        "",
        0.0,
        9.0,
        [part(grade_id, 0.0, error_text) for grade_id in GRADE_IDS],
    )
    (line,) = table_rows([row])["fay"]["message"].split("\n")
    assert len(line) <= report.MESSAGE_LINE
    assert line.startswith(", ".join(GRADE_IDS) + ": RuntimeError: ")
    assert "File" not in line and "Traceback" not in line


# --- folders without this assignment -------------------------------------------------


@pytest.fixture
def release_path(course):
    return course / "exercises" / ASSIGNMENT / NOTEBOOK


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def multi_assignment_folder(course, root):
    """nbgrader's submitted/ with students' folders for several assignments."""
    release = load(course, "release")
    correct = to_bytes(answered(release, load(course, "source")))
    write(root / "ann" / ASSIGNMENT / NOTEBOOK, correct)
    write(root / "ann" / "ch01_neuron" / "ch01_neuron.ipynb", b"{}")
    write(root / "bob" / "ch01_neuron" / "ch01_neuron.ipynb", b"{}")  # no ch02
    write(root / "cy" / "ch01_neuron" / "ch01_neuron.ipynb", b"{}")  # no ch02
    write(root / "cy" / "ch03_unrolling" / "notes.txt", b"later")
    write(root / "dan" / ASSIGNMENT / "notes.txt", b"forgot")  # tried, no notebook
    write(root / "eve" / NOTEBOOK, correct)  # without the assignment level
    write(root / "eve" / "drafts" / "old.txt", b"")
    write(root / "fay" / "readme.txt", b"forgot")  # flat layout, no notebook


def test_folders_without_this_assignment_are_listed_once_not_rows(
    course, tmp_path, release_path
):
    root = tmp_path / "submitted"
    multi_assignment_folder(course, root)
    found = intake.collect(
        root, ASSIGNMENT, NOTEBOOK, release_path, tmp_path / "staging"
    )
    rows = {submission.student: submission for submission in found}
    assert sorted(rows) == ["ann", "dan", "eve", "fay"]
    assert found.absent == ["bob", "cy"]
    assert rows["ann"].status is None and rows["eve"].status is None
    assert rows["dan"].status == rows["fay"].status == report.MISSING


def test_a_roster_student_without_this_assignment_gets_a_not_submitted_row(
    course, tmp_path, release_path
):
    root = tmp_path / "submitted"
    multi_assignment_folder(course, root)
    roster = ["ann", "bob", "dan", "eve", "fay"]
    found = intake.collect(
        root, ASSIGNMENT, NOTEBOOK, release_path, tmp_path / "staging", roster
    )
    rows = {submission.student: submission for submission in found}
    assert sorted(rows) == roster
    assert rows["bob"].status == report.MISSING
    assert rows["bob"].message.startswith("not submitted")
    assert found.absent == ["cy"]  # not in the roster and nothing for this assignment


def test_the_summary_names_the_folders_once():
    summary = GradeSummary([], None, None, absent=["bob", "cy", "dan"])
    lines = summary.lines(ASSIGNMENT)
    assert f"3 student folders have no {ASSIGNMENT}: bob, cy, dan" in lines
    many = GradeSummary([], None, None, absent=[f"s{i:02}" for i in range(30)])
    (line,) = [line for line in many.lines(ASSIGNMENT) if "student folders" in line]
    assert line.startswith(f"30 student folders have no {ASSIGNMENT}: s00, s01")
    assert line.endswith("s19 and 10 more")
