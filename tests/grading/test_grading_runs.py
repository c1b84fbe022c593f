"""The grading command end to end, beyond the fault and cheat suite: reruns, --force, zip files and rosters,
--no-sandbox, the summary, and the command line. Every assignment's source, blank and wrong-answer
notebooks are graded once, by tests/exercises/test_exercises.py (the round trip), not again here."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from pathlib import Path

from grading_course import ROOT, gradebook_scores
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


def honest_submissions(course: Path, folder: Path) -> None:
    release, source = load(course, "release"), load(course, "source")
    correct = answered(release, source)
    wrong = with_answer(correct, "memory_cell_step", WRONG_STEP)
    for student, nb in {"ann": correct, "bob": release, "cem": wrong}.items():
        target = folder / student / ASSIGNMENT
        target.mkdir(parents=True)
        (target / NOTEBOOK).write_bytes(to_bytes(nb))
    other = folder / "dan" / "ch01_neuron"  # a student with only another assignment
    other.mkdir(parents=True)
    (other / "ch01_neuron.ipynb").write_bytes(to_bytes(release))


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
    messages = {
        row["student"]: row["message"] for row in csv.DictReader(io.StringIO(table))
    }
    assert sorted(messages) == ["ann", "bob", "cem"]  # dan has no ch02: not a row
    assert messages["ann"] == ""
    assert messages["bob"] == (
        "test_memory_cell_step, test_run_memory_cell, test_predict_every_step: "
        "not answered: the function still raises NotImplementedError"
    )
    (line,) = messages["cem"].split("\n")  # one part lost, one line
    assert line.startswith("test_memory_cell_step: Likely mistake: W_h not transposed")
    summary = captured.out.splitlines()
    assert summary[0] == (
        "3 rows: 3 graded now, 0 reused from the cache, 0 decided at intake (not run); "
        "0 failed"
    )
    assert summary[1] == "1 student folder has no ch02_memory_cell: dan"


def test_unconfined_kernels_start_one_at_a_time(course, tmp_path):
    """--no-sandbox: the kernels share the host's network, where two starting at once
    can be handed the same free ports (one dies: a wrong "kernel died" row). So a
    kernel start waits while another start holds the lock: here, the test holds it."""
    import fcntl
    import threading

    submitted = tmp_path / "submitted"
    target = submitted / "ann" / ASSIGNMENT
    target.mkdir(parents=True)
    correct = answered(load(course, "release"), load(course, "source"))
    (target / NOTEBOOK).write_bytes(to_bytes(correct))
    options = GradeOptions(
        ASSIGNMENT, submitted, course, output=tmp_path / "graded", sandbox=False
    )
    summaries = []
    with open(sandbox.kernel_start_lock_path(), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another submission's kernel is starting
        run = threading.Thread(target=lambda: summaries.append(grade(options)))
        run.start()
        run.join(timeout=12)  # unlocked, the submission is graded in about 5 s
        assert run.is_alive(), "the kernel started while another start held the lock"
    run.join(timeout=120)
    (row,) = summaries[0].rows
    assert (row.status, row.score) == ("graded", 10), row.message


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
    assert (first.graded_now, first.reused, first.failed) == (3, 0, 0)
    assert first.absent == ["dan"]  # (only another assignment's folder)
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
    assert (again.graded_now, again.reused) == (0, 3)
    assert {
        path.name: path.stat().st_mtime_ns for path in (output / "results").iterdir()
    } == logs

    forced = grade(
        GradeOptions(**options, force=True)
    )  # --force: everything runs again
    assert forced.table.read_text() == table
    assert (forced.graded_now, forced.reused) == (3, 0)
    assert {
        path.name: path.stat().st_mtime_ns for path in (output / "results").iterdir()
    } != logs
    assert gradebook_scores(course) == {"ann": 10, "bob": 0, "cem": 6}

    resubmitted = (
        submitted / "bob" / ASSIGNMENT / NOTEBOOK
    )  # a new submission is graded without --force
    resubmitted.write_bytes((submitted / "ann" / ASSIGNMENT / NOTEBOOK).read_bytes())
    rerun = grade(GradeOptions(**options))
    assert (rerun.graded_now, rerun.reused) == (1, 2)
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
        zf.writestr("dan/ch01_neuron/x.ipynb", to_bytes(release))  # another assignment
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
    assert (summary.graded_now, summary.reused, summary.failed) == (2, 0, 2)
    assert summary.lines(ASSIGNMENT)[:2] == [
        "4 rows: 2 graded now, 0 reused from the cache, 2 decided at intake (not run); "
        "2 failed (1 missing notebook, 1 unknown student)",
        "1 student folder has no ch02_memory_cell: dan",
    ]
    assert "intruder" not in gradebook_scores(
        course
    )  # an unknown student is not added to the gradebook
    assert (
        "intruder,ch02_memory_cell,,10,,,,unknown student," in summary.table.read_text()
    )


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
