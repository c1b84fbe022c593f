"""nbgrader's sanitizing pass, run by the grader before the sandbox (issue 10, fast per
submission): the notebook the sandbox runs is the one ``nbgrader autograde`` would run,
and the sandbox's driver imports nothing of nbgrader.

The reference is nbgrader itself: its ``Autograde`` converter on the same submission in
a course of its own, with the execution pass's preprocessors removed, writes the
sanitized notebook to ``autograded/``.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from grading_course import make_course
from grading_submissions import ASSIGNMENT, NOTEBOOK, cell, load

from rnn_course.grading import gradebook, report, sanitize, worker
from rnn_course.grading.plan import TestPlan
from rnn_course.grading.sandbox import SandboxSettings


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """A course and the release folder the grader's workers get (notebook and
    gradebook), made once for this file's tests."""
    course = make_course(tmp_path_factory.mktemp("sanitize") / "course")
    plan = TestPlan.from_source(course / "solutions" / ASSIGNMENT / NOTEBOOK)
    writer = gradebook.GradebookWriter(course, ASSIGNMENT, NOTEBOOK)
    writer.ensure_assignment([part.grade_id for part in plan.parts])
    folder = course.parent / "release"
    gradebook.prepare_release(course, ASSIGNMENT, folder)
    return course, folder


@pytest.fixture
def course(made) -> Path:
    return made[0]


@pytest.fixture
def release(made, tmp_path) -> Path:
    """A copy of the release folder (a test may add files to it)."""
    shutil.copytree(made[1], tmp_path / "release")
    return tmp_path / "release"


def tampered(course) -> nbformat.NotebookNode:
    """A submission with what the sanitizing pass undoes: outputs, an edited locked
    cell, an edited test, a deleted test, a foreign kernelspec. (Duplicated cell ids are
    repaired at intake, deterministically: nbformat would pick random ones.)"""
    nb = load(course, "release")
    cell(nb, "setup").source = "import torch\nDEVICE = 'cpu'  # edited by the student"
    cell(nb, "setup").outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="old output\n")
    ]
    cell(nb, "setup").execution_count = 3
    cell(nb, "test_run_memory_cell").source = "assert True  # my own test"
    nb.cells.remove(cell(nb, "test_predict_every_step"))
    nb.metadata["kernelspec"] = {"name": "evil", "display_name": "x", "language": "sh"}
    return nb


def without_new_ids(nb: dict, submitted: nbformat.NotebookNode) -> dict:
    """``nb`` without the ids of the cells nbgrader put back (random ones)."""
    kept = {c.id for c in submitted.cells}
    nb = copy.deepcopy(nb)
    for c in nb["cells"]:
        if c["id"] not in kept:
            c["id"] = "(new)"
    return nb


def nbgrader_sanitized(release: Path, submission: Path, tmp_path: Path) -> dict:
    """What nbgrader's own autograde writes after its sanitizing pass alone."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    root = tmp_path / "nbgrader-course"
    (root / "source").mkdir(parents=True)
    shutil.copytree(release / "source" / ASSIGNMENT, root / "source" / ASSIGNMENT)
    (root / "gradebook.db").write_bytes((release / "gradebook.db").read_bytes())
    target = root / "submitted" / "student" / ASSIGNMENT
    target.mkdir(parents=True)
    (target / NOTEBOOK).write_bytes(submission.read_bytes())
    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    config.CourseDirectory.assignment_id = ASSIGNMENT
    config.CourseDirectory.student_id = "student"
    config.OverwriteCells.add_missing_cells = True
    config.Autograde.autograde_preprocessors = []  # (the sanitizing pass only)
    app = Autograde(coursedir=CourseDirectory(config=config), config=config)
    app.force = True
    app.start()
    written = root / "autograded" / "student" / ASSIGNMENT / NOTEBOOK
    return json.loads(written.read_text())


def test_the_notebook_the_sandbox_runs_is_the_one_nbgrader_would_run(
    course, release, tmp_path
):
    submission = tmp_path / "in" / NOTEBOOK
    submission.parent.mkdir()
    submitted = tampered(course)
    nbformat.write(submitted, submission)
    folder = tmp_path / "prepared"
    job = {
        "files": {NOTEBOOK: str(submission)},
        "notebook": NOTEBOOK,
        "expected_notebook": NOTEBOOK,
    }
    db_url = sanitize.release_gradebook_copy(release, tmp_path)
    sanitize.prepare_submission(job, release, ASSIGNMENT, db_url, folder)
    ours = json.loads((folder / NOTEBOOK).read_text())
    reference = nbgrader_sanitized(release, submission, tmp_path)
    assert without_new_ids(ours, submitted) == without_new_ids(reference, submitted)
    # and it did undo what the student changed (the reference is not a no-op)
    released = load(course, "release")
    ours_nb = nbformat.reads(json.dumps(ours), as_version=4)
    for grade_id in ("setup", "test_run_memory_cell", "test_predict_every_step"):
        # (nbgrader heads a cell it put back with a comment that says so)
        assert cell(ours_nb, grade_id).source.endswith(cell(released, grade_id).source)
    assert cell(ours_nb, "setup").outputs == []
    assert ours_nb.metadata.kernelspec.name == released.metadata.kernelspec.name
    assert len({c.id for c in ours_nb.cells}) == len(ours_nb.cells)


def test_the_students_files_go_along_and_the_releases_files_win(
    course, release, tmp_path
):
    (release / "source" / ASSIGNMENT / "data.csv").write_text("released\n")
    student = tmp_path / "student"
    student.mkdir()
    nbformat.write(load(course, "release"), student / "mine.ipynb")
    (student / "data.csv").write_text("the student's version\n")
    (student / "notes.txt").write_text("my notes\n")
    (student / "other.ipynb").write_text("{}")
    job = {
        "files": {
            name: str(student / name)
            for name in ("mine.ipynb", "data.csv", "notes.txt", "other.ipynb")
        },
        "notebook": "mine.ipynb",
        "expected_notebook": NOTEBOOK,  # (a renamed notebook, graded under its name)
    }
    folder = tmp_path / "prepared"
    db_url = sanitize.release_gradebook_copy(release, tmp_path)
    sanitize.prepare_submission(job, release, ASSIGNMENT, db_url, folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "ch02_memory_cell.ipynb",
        "data.csv",
        "notes.txt",
    ]
    assert (folder / "data.csv").read_text() == "released\n"
    assert (folder / "notes.txt").read_text() == "my notes\n"


def test_a_notebook_nbgrader_refuses_is_an_invalid_row_and_never_runs(made, tmp_path):
    """The worker itself, on a notebook nbgrader's sanitizing pass refuses: no sandbox
    starts (none is needed here), the row says why, the log has nbgrader's words."""
    course, release = made
    nb = load(course, "release")
    broken = copy.deepcopy(cell(nb, "memory_cell_step"))
    broken.id = "another-id"
    nb.cells.append(broken)  # two answer cells of one grade_id: nbgrader refuses
    submission = tmp_path / NOTEBOOK
    nbformat.write(nb, submission)
    db_url = sanitize.release_gradebook_copy(release, tmp_path)
    with pytest.raises(sanitize.SanitizeError, match="KeyError"):  # (nbgrader's words)
        sanitize.sanitized(submission, NOTEBOOK, ASSIGNMENT, db_url)

    (tmp_path / "scratch").mkdir()
    config = {
        "source_notebook": str(course / "solutions" / ASSIGNMENT / NOTEBOOK),
        "release_dir": str(release),
        "scratch": str(tmp_path / "scratch"),
        "assignment": ASSIGNMENT,
        "settings": SandboxSettings().to_dict(),
    }
    job = {
        "student": "ann",
        "files": {NOTEBOOK: str(submission)},
        "notebook": NOTEBOOK,
        "expected_notebook": NOTEBOOK,
        "fingerprint": "f",
    }
    row = report.Row.from_dict(worker.grade_submission(config, job))
    assert (row.status, row.score) == (report.INVALID, 0)
    assert "nbgrader could not process the notebook" in row.message
    assert "sanitizing pass refused the notebook: KeyError" in row.log
    assert [part.points for part in row.parts] == [0, 0, 0]


DRIVER_IMPORTS = """
import json, runpy, sys
driver = runpy.run_path({driver!r})
config = json.loads({config!r})
folder = driver["prepare_folder"](config)
report = {{"errors": []}}
driver["run_notebook"](config, folder, report)
heavy = sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("nbgrader", "sqlalchemy", "nbconvert", "torch")
)
print("REPORT", json.dumps(report))
print("HEAVY", heavy)
"""


def test_the_sandboxs_driver_runs_the_notebook_without_importing_nbgrader(tmp_path):
    """The driver alone (no sandbox: its imports are the point): it executes the
    notebook with nbclient, and nbgrader, its gradebook (sqlalchemy) and nbconvert
    stay out."""
    submission = tmp_path / "submission"
    submission.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import os\nopen('seen.txt', 'w').write(os.environ['NBGRADER_EXECUTION'])"
        ),
        nbformat.v4.new_code_cell("1 / 0"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, submission / NOTEBOOK)
    config = {
        "assignment": ASSIGNMENT,
        "notebook": NOTEBOOK,
        "work_dir": str(tmp_path / "work"),
        "submission_dir": str(submission),
        "channel_dir": str(
            tmp_path / "no-channel"
        ),  # (the probe cell fails: no grader)
        "cell_timeout": 60,
        "submission_timeout": 120,
        "max_output_bytes": 1 << 20,
    }
    driver = Path(worker.__file__).with_name("driver.py")
    script = DRIVER_IMPORTS.format(driver=str(driver), config=json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    ran = json.loads(lines["REPORT"])
    assert ran["executed"] and ran["nbgrader_ok"], ran
    assert [e["error"] for e in ran["cell_errors"]] == [
        "ZeroDivisionError: division by zero"
    ]
    assert "FileNotFoundError" in ran["probe_error"]  # the probe cell ran last
    assert lines["HEAVY"] == "[]"
    ran_in = tmp_path / "work" / "course" / "autograded" / "student" / ASSIGNMENT
    assert (ran_in / "seen.txt").read_text() == "autograde"  # (as nbgrader sets it)
