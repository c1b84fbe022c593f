"""The grading command end to end, beyond the fault and cheat suite: reruns, --force, zip files and rosters,
--no-sandbox, every assignment's source, blank and wrong-answer notebooks, and the command line."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from grading_course import ROOT, gradebook_scores, make_course
from grading_submissions import (
    ASSIGNMENT,
    NOTEBOOK,
    WRONG_STEP,
    answered,
    load,
    to_bytes,
    with_answer,
)

from rnn_course.cli import main
from rnn_course.grading import report, sandbox
from rnn_course.grading.command import UNCONFINED_WARNING, GradeOptions, grade

sys.path.insert(0, str(ROOT / "tests" / "exercises"))
from wrong_answers import WRONG_ANSWERS, answered_with  # noqa: E402  (the nbgrader round trip's realistic mistakes)

ASSIGNMENTS = sorted(
    path.name for path in (ROOT / "solutions").iterdir() if any(path.glob("*.ipynb"))
)


def honest_submissions(course: Path, folder: Path) -> None:
    release, source = load(course, "release"), load(course, "source")
    correct = answered(release, source)
    wrong = with_answer(correct, "memory_cell_step", WRONG_STEP)
    for student, nb in {"ann": correct, "bob": release, "cem": wrong}.items():
        target = folder / student / ASSIGNMENT
        target.mkdir(parents=True)
        (target / NOTEBOOK).write_bytes(to_bytes(nb))


def test_without_bubblewrap_it_refuses_unless_told_no_sandbox(
    course, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    (tmp_path / "submitted").mkdir()
    status = main(
        ["grade", ASSIGNMENT, str(tmp_path / "submitted"), "--course-root", str(course)]
    )
    error = capsys.readouterr().err
    assert status == 2
    assert "bubblewrap (bwrap) is not installed" in error and "--no-sandbox" in error
    assert not (course / "gradebook.db").exists()  # refused before touching anything


def test_no_sandbox_grades_and_says_each_time_that_code_ran_unconfined(
    course, tmp_path, capsys
):
    submitted = tmp_path / "submitted"
    honest_submissions(course, submitted)
    output = tmp_path / "graded"
    status = main(
        [
            "grade",
            ASSIGNMENT,
            str(submitted),
            "--course-root",
            str(course),
            "--output",
            str(output),
            "--no-sandbox",
            "--workers",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0
    assert (
        captured.err.count(UNCONFINED_WARNING) == 2
    )  # when it starts and when it ends
    table = (output / "grades.csv").read_text()
    assert "ann,ch02_memory_cell,10,10,4,3,3,graded," in table
    assert "bob,ch02_memory_cell,0,10,0,0,0,graded," in table
    assert "cem,ch02_memory_cell,6,10,0,3,3,graded," in table


def test_grading_twice_gives_identical_results_and_force_regrades(
    sandbox_required, course, tmp_path
):
    submitted, output = tmp_path / "submitted", tmp_path / "graded"
    honest_submissions(course, submitted)
    options = dict(
        assignment=ASSIGNMENT,
        submissions=submitted,
        course_root=course,
        output=output,
        workers=2,
        progress=False,
    )
    first = grade(GradeOptions(**options))
    table = first.table.read_text()
    assert [(row.student, row.score, row.status) for row in first.rows] == [
        ("ann", 10, report.GRADED),
        ("bob", 0, report.GRADED),
        ("cem", 6, report.GRADED),
    ]
    logs = {
        path.name: path.stat().st_mtime_ns for path in (output / "results").iterdir()
    }

    again = grade(
        GradeOptions(**options)
    )  # nothing changed: the rows are reused, nothing runs again
    assert again.table.read_text() == table
    assert {
        path.name: path.stat().st_mtime_ns for path in (output / "results").iterdir()
    } == logs

    forced = grade(
        GradeOptions(**options, force=True)
    )  # --force: everything runs again
    assert forced.table.read_text() == table
    assert {
        path.name: path.stat().st_mtime_ns for path in (output / "results").iterdir()
    } != logs
    assert gradebook_scores(course) == {"ann": 10, "bob": 0, "cem": 6}

    resubmitted = (
        submitted / "bob" / ASSIGNMENT / NOTEBOOK
    )  # a new submission is graded without --force
    resubmitted.write_bytes((submitted / "ann" / ASSIGNMENT / NOTEBOOK).read_bytes())
    rerun = grade(GradeOptions(**options))
    assert {row.student: row.score for row in rerun.rows} == {
        "ann": 10,
        "bob": 10,
        "cem": 6,
    }
    assert gradebook_scores(course) == {"ann": 10, "bob": 10, "cem": 6}


def test_a_zip_export_and_a_roster(sandbox_required, course, tmp_path):
    release, source = load(course, "release"), load(course, "source")
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"ann_4711_{NOTEBOOK}", to_bytes(answered(release, source)))
        zf.writestr("bob_4712_my_homework.ipynb", to_bytes(release))
        zf.writestr("intruder_4713_x.ipynb", to_bytes(release))
    roster = tmp_path / "roster.txt"
    roster.write_text("ann\nbob\nzoe\n")
    summary = grade(
        GradeOptions(
            ASSIGNMENT,
            archive,
            course,
            output=tmp_path / "graded",
            workers=2,
            roster=roster,
            progress=False,
        )
    )
    rows = {row.student: (row.score, row.status) for row in summary.rows}
    assert rows == {
        "ann": (10, report.GRADED),
        "bob": (0, report.RENAMED),
        "intruder": (None, report.UNKNOWN),
        "zoe": (0, report.MISSING),
    }
    assert "intruder" not in gradebook_scores(
        course
    )  # an unknown student is not added to the gradebook
    assert (
        "intruder,ch02_memory_cell,,10,,,,unknown student," in summary.table.read_text()
    )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_assignment_grades_like_plain_nbgrader(
    sandbox_required, tmp_path, assignment
):
    """The source gets full marks, the blank release zero, and each realistic wrong answer of
    tests/exercises/wrong_answers.py (whose scores plain nbgrader's round trip checks) loses exactly
    the parts it loses there, with the same hint in the feedback. So every assignment's tests, hidden
    ones included, work through the sandbox: plain data in, plain data out, in-place changes seen."""
    course = make_course(tmp_path / "course")
    notebook = f"{assignment}.ipynb"
    source, release = (
        (course / "solutions" / assignment / notebook),
        (course / "exercises" / assignment / notebook),
    )
    submissions = {"source": source.read_bytes(), "blank": release.read_bytes()}
    wrongs = {f"wrong-{wrong.name}": wrong for wrong in WRONG_ANSWERS[assignment]}
    for student, wrong in wrongs.items():
        submissions[student] = to_bytes(answered_with(release, source, wrong))
    for student, data in submissions.items():
        target = tmp_path / "submitted" / student / assignment
        target.mkdir(parents=True)
        (target / notebook).write_bytes(data)
    summary = grade(
        GradeOptions(
            assignment,
            tmp_path / "submitted",
            course,
            output=tmp_path / "graded",
            workers=2,
            progress=False,
        )
    )
    rows = {row.student: row for row in summary.rows}
    assert sorted(rows) == sorted(submissions)
    expected = {
        **dict.fromkeys(submissions, report.GRADED),
        "source": report.TAMPERED,
    }  # (its hidden tests)
    assert {student: row.status for student, row in rows.items()} == expected
    failed = {
        student: {
            part.grade_id: part.message
            for part in row.parts
            if part.points != part.max_points
        }
        for student, row in rows.items()
    }
    assert rows["source"].score == rows["source"].max_score > 0, failed["source"]
    assert rows["blank"].score == 0
    for student, wrong in wrongs.items():
        assert set(failed[student]) == wrong.fails, f"{student}: {failed[student]}"
        for grade_id in wrong.fails:
            message = failed[student][grade_id]
            assert wrong.found_in(message), f"{student}, {grade_id}: {message}"


def test_the_command_line_and_the_make_target():
    help_text = subprocess.run(
        [str(Path(sys.executable).parent / "rnn-course"), "grade", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in (
        "--output",
        "--workers",
        "--force",
        "--no-sandbox",
        "--roster",
        "--cell-timeout",
        "--submission-timeout",
        "--memory",
    ):
        assert option in help_text
    dry_run = subprocess.run(
        ["make", "-n", "grade", "ASSIGNMENT=ch02_memory_cell", "SUBMISSIONS=submitted"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "rnn-course grade ch02_memory_cell submitted" in dry_run
