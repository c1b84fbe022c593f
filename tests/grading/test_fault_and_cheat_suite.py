"""The fault and cheat suite: every submission of submissions.py in ONE sandboxed grading call, 2 workers.

Each submission must end as one row with the right status and score; no cheat may score above the
blank submission; nothing a cheat looked for may reach its feedback; the course, the gradebook and the
other submissions must be intact afterwards; no process of a sandbox may outlive the run.
Small timeouts for the hang cases (10 s per cell, 45 s per submission); the whole suite takes about
two to four minutes on two cores.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import os
import re
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest
from grading_course import (
    ROOT,
    HostState,
    gradebook_scores,
    make_course,
    require_sandbox,
)
from grading_submissions import (
    ASSIGNMENT,
    NOTEBOOK,
    OTHER_STUDENT_MARKER,
    catalogue,
    write_submissions,
)

from rnn_course.grading import confinement, report
from rnn_course.grading.command import GradeOptions, grade
from rnn_course.grading.sandbox import UID_BASE


def unwrapped(row) -> str:
    """The row's part messages as one line: the checks wrap long messages at spaces
    (a newline and two spaces), which this undoes."""
    return " ".join(part.message.replace("\n  ", " ") for part in row.parts)


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class Listener:
    """A TCP server on the host's loopback: the network cheat tries to reach it."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, address = self.server.accept()
            except OSError:
                return
            self.connections.append(address)
            connection.close()


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    require_sandbox()
    base = tmp_path_factory.mktemp("suite")
    course = make_course(base / "course")
    submitted = base / "submitted"
    output = base / "graded"
    listener = Listener()
    # Another copy of the course's solutions in a folder the grader is never told about (as an instructor
    # may have one anywhere on the machine): the sandbox shows only what it allows, so this is absent too.
    decoy = Path(
        tempfile.mkdtemp(
            prefix="rnn-course-decoy-",
            dir="/var/cache" if os.access("/var/cache", os.W_OK) else None,
        )
    )
    shutil.copytree(ROOT / "solutions", decoy / "solutions")
    host = HostState(
        ignore=tmp_path_factory.getbasetemp()
    )  # (the decoy is the test's own)
    secret_paths = [
        str(decoy),
        str(course),
        str(submitted),
        str(output),
        str(ROOT / "solutions"),
        str(ROOT),
    ]
    write_paths = [
        str(course / "gradebook.db"),
        str(submitted / "correct" / ASSIGNMENT / NOTEBOOK),
        str(course / "solutions" / ASSIGNMENT / NOTEBOOK),
        str(output / "grades.csv"),
        str(output / "results" / "correct.json"),
    ]
    host_paths = [str(course), str(submitted), str(output)]
    cases = catalogue(
        course,
        secret_paths=secret_paths,
        host_paths=host_paths,
        write_paths=write_paths,
        port=listener.port,
    )
    write_submissions(cases, submitted)
    before = {
        "submitted": checksums(submitted),
        "course": checksums(course),
        "repository": checksums(ROOT / "solutions"),
    }
    summary = grade(
        GradeOptions(
            ASSIGNMENT,
            submitted,
            course,
            output=output,
            workers=2,
            cell_timeout=10,
            submission_timeout=45,
            progress=False,
        )
    )
    listener.server.close()
    yield {
        "cases": {case.student: case for case in cases},
        "summary": summary,
        "course": course,
        "output": output,
        "submitted": submitted,
        "before": before,
        "listener": listener,
        "decoy": decoy,
        "host": host,
        "rows": {row.student: row for row in summary.rows},
    }
    shutil.rmtree(decoy, ignore_errors=True)


CASE_NAMES = [
    "correct",
    "source",
    "blank",
    "wrong_step",
    "renamed_file",
    "empty_folder",
    "hang",
    "unstoppable",
    "slow",
    "os_exit",
    "sys_exit",
    "memory_hog",
    "fork_bomb",
    "disk_fill",
    "endless_print",
    "not_json",
    "renamed_cells",
    "edited_tests",
    "edited_tests_correct",
    "patched_helpers",
    "always_equal",
    "input_transformer",
    "event_hooks",
    "read_secrets",
    "write_secrets",
    "network",
    "detect_grader",
]


def test_the_catalogue_is_the_one_listed_here(suite):
    assert sorted(suite["cases"]) == sorted(CASE_NAMES)


@pytest.mark.parametrize("student", CASE_NAMES)
def test_each_submission_ends_as_one_row_with_its_status_and_score(suite, student):
    case, row = suite["cases"][student], suite["rows"][student]
    assert row.status in case.statuses, (
        f"{student}: {row.status} ({row.message}); log:\n{row.log[-3000:]}"
    )
    parts = [(part.grade_id, part.message) for part in row.parts]
    assert row.score == case.score, f"{student}: {row.score} points; parts: {parts}"
    assert row.max_score == 10


def test_one_row_per_submission_in_the_grade_table(suite):
    table = list(csv.reader(io.StringIO(suite["summary"].table.read_text())))
    assert table[0] == (
        "student,assignment,score,max_score,test_memory_cell_step,test_run_memory_cell,"
        "test_predict_every_step,status,message"
    ).split(",")
    assert sorted(fields[0] for fields in table[1:]) == sorted(CASE_NAMES)


def test_no_cheat_scores_above_a_blank_submission(suite):
    blank = suite["rows"]["blank"].score
    assert blank == 0
    cheats = [name for name, case in suite["cases"].items() if case.cheat]
    assert len(cheats) >= 12
    assert {
        name: suite["rows"][name].score
        for name in cheats
        if suite["rows"][name].score > blank
    } == {}


def test_cheats_saw_nothing_and_reached_nothing(suite):
    feedback = {name: unwrapped(suite["rows"][name]) for name in suite["rows"]}
    scan = re.search(r"SCAN: files=(\d+) found=(\[.*?\])", feedback["read_secrets"])
    assert scan and int(scan.group(1)) > 100, feedback[
        "read_secrets"
    ]  # it looked around...
    assert (
        scan.group(2) == "[]"
    )  # ...and found no hidden test, solution or other submission
    assert "WRITE: attempts=5 succeeded=[]" in feedback["write_secrets"]
    assert "NET: reached=[]" in feedback["network"]
    assert suite["listener"].connections == []
    forks = re.search(r"FORK: started=(\d+)", feedback["fork_bomb"])
    assert forks and 50 < int(forks.group(1)) < 512, feedback[
        "fork_bomb"
    ]  # stopped by the process limit


def test_the_grader_is_no_more_visible_than_plain_nbgrader(suite):
    message = unwrapped(suite["rows"]["detect_grader"])
    environment = dict(
        ast.literal_eval(re.search(r"ENV: (\[.*\]) uid=", message).group(1))
    )
    assert environment["NBGRADER_EXECUTION"] == "autograde"  # as under plain nbgrader
    assert not {
        "PYTEST_CURRENT_TEST",
        "CI",
        "GITHUB_ACTIONS",
        "RNN_COURSE_SANDBOX_UID_BASE",
    } & set(environment)
    leaked = [
        value
        for value in environment.values()
        if str(suite["course"]) in value
        or str(suite["submitted"]) in value
        or str(suite["output"]) in value
    ]
    assert leaked == []
    uid = int(re.search(r"uid=(\d+)", message).group(1))
    if confinement.rootless():
        assert (
            uid == os.getuid() != 0
        )  # the instructor's own uid, in a namespace of its own
    else:
        assert uid >= UID_BASE  # an unprivileged uid, not root


def test_feedback_shows_no_hidden_test_and_no_traceback(suite):
    hidden_lines = set()
    for cell in (
        __import__("nbformat")
        .read(suite["course"] / "solutions" / ASSIGNMENT / NOTEBOOK, as_version=4)
        .cells
    ):
        if "### BEGIN HIDDEN TESTS" in cell.source:
            hidden = cell.source.split("### BEGIN HIDDEN TESTS")[1].split(
                "### END HIDDEN TESTS"
            )[0]
            hidden_lines |= {
                line.strip() for line in hidden.splitlines() if len(line.strip()) > 25
            }
    assert len(hidden_lines) > 10
    pages = sorted((suite["output"] / "feedback").glob("*.html"))
    assert len(pages) == len(CASE_NAMES)
    for page in pages:
        text = page.read_text()
        assert (
            "Traceback" not in text
            and "BEGIN HIDDEN" not in text
            and 'File "' not in text
        ), page.name
        assert not [line for line in hidden_lines if line in text], page.name
    assert OTHER_STUDENT_MARKER not in "".join(
        page.read_text() for page in pages if page.name != "correct.html"
    )


def test_a_wrong_answer_gets_partial_credit_and_its_hint(suite):
    page = (suite["output"] / "feedback" / "wrong_step.html").read_text()
    assert "W_h not transposed?" in page
    assert suite["rows"]["wrong_step"].score == 6


def test_course_submissions_and_repository_are_intact(suite):
    before = suite["before"]
    assert checksums(suite["submitted"]) == before["submitted"]
    assert checksums(ROOT / "solutions") == before["repository"]
    after = checksums(suite["course"])
    assert {
        name: digest for name, digest in after.items() if name in before["course"]
    } == before["course"]
    new = set(after) - set(before["course"])
    cache = {name for name in new if name.startswith(".rnn-course-cache/releases/")}
    assert new - cache <= {"gradebook.db"}  # besides the grader's cache: the gradebook
    released = (suite["course"] / "exercises" / ASSIGNMENT / NOTEBOOK).read_bytes()
    assert sorted(name.split("/", 3)[3] for name in cache) == [
        "gradebook.db",
        f"source/{ASSIGNMENT}/{NOTEBOOK}",
    ]  # one release copy, whose notebook is the released one
    assert all(
        (suite["course"] / name).read_bytes() == released
        for name in cache
        if name.endswith(NOTEBOOK)
    )


def test_the_gradebook_holds_exactly_the_table(suite):
    stored = gradebook_scores(suite["course"], check_integrity=True)
    expected = {
        name: row.score for name, row in suite["rows"].items() if row.score is not None
    }
    assert stored == expected


def test_no_process_of_a_sandbox_is_left_nor_anything_else_of_its_uid(suite):
    uids = set(suite["summary"].uids.values())
    if confinement.rootless():
        assert uids == set()  # a user namespace per submission instead
    else:
        assert len(uids) == len(suite["summary"].uids) > 20  # one uid per submission
    assert suite["host"].left(uids) == {}


def test_every_status_is_a_known_one(suite):
    assert {row.status for row in suite["summary"].rows} <= set(report.STATUSES)
    assert suite["summary"].grader_errors == 0
