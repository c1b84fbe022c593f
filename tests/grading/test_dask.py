"""Grading on a Dask cluster (``rnn-course grade --scheduler``), with real worker
processes on loopback (``distributed.LocalCluster``): the same table and feedback as the
local pool, unchanged submissions reused, a worker killed mid-task retried once and then
given up, and a host that cannot sandbox (or has other code) refusing its
submissions."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from grading_course import gradebook_scores, make_course, require_sandbox
from grading_submissions import (
    ASSIGNMENT,
    NOTEBOOK,
    WRONG_STEP,
    answered,
    load,
    to_bytes,
    with_answer,
)

from rnn_course.grading import cluster, report, sandbox
from rnn_course.grading.command import GradeOptions, GradingError, add_arguments, grade

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def dask_cluster():
    """Two worker processes of one thread each, as `dask worker` would start them."""
    require_sandbox()
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as local:
        with distributed.Client(local, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
            yield local, client


@pytest.fixture(scope="module")
def module_course(tmp_path_factory) -> Path:
    return make_course(tmp_path_factory.mktemp("dask") / "course")


def write(folder: Path, notebooks: dict) -> None:
    for student, nb in notebooks.items():
        target = folder / student / ASSIGNMENT
        target.mkdir(parents=True, exist_ok=True)
        (target / NOTEBOOK).write_bytes(to_bytes(nb))


def graded_students(client, before: set) -> set:
    """Students whose grading started on the cluster since ``before`` (event topics)."""
    return {
        topic.rsplit("-", 1)[1]
        for topic in client.get_events()
        if topic.startswith("rnn-course-grade-") and topic not in before
    }


def test_the_cluster_grades_like_the_local_pool_and_reuses_unchanged_rows(
    dask_cluster, module_course, tmp_path
):
    local_cluster, client = dask_cluster
    course = module_course
    release, source = load(course, "release"), load(course, "source")
    correct = answered(release, source)
    submitted = tmp_path / "submitted"
    wrong = with_answer(correct, "memory_cell_step", WRONG_STEP)
    write(submitted, {"ann": correct, "cem": wrong})
    options = dict(
        assignment=ASSIGNMENT, submissions=submitted, course_root=course, progress=False
    )
    here = grade(GradeOptions(**options, output=tmp_path / "local", workers=2))
    before = set(client.get_events())
    there = grade(
        GradeOptions(
            **options,
            output=tmp_path / "dask",
            scheduler=local_cluster.scheduler_address,
        )
    )
    assert graded_students(client, before) == {"ann", "cem"}
    assert [(row.student, row.score, row.status) for row in there.rows] == [
        ("ann", 10, report.GRADED),
        ("cem", 6, report.GRADED),
    ]
    assert there.table.read_bytes() == here.table.read_bytes()
    for page in sorted((tmp_path / "local" / "feedback").iterdir()):
        assert (tmp_path / "dask" / "feedback" / page.name).read_bytes() == (
            page.read_bytes()
        )
    without_log = [
        {**row.to_dict(), "log": ""} for row in here.rows
    ]  # the logs hold times and hosts
    assert [{**row.to_dict(), "log": ""} for row in there.rows] == without_log
    assert "graded on host" in (tmp_path / "dask" / "logs" / "ann.log").read_text()

    results = tmp_path / "dask" / "results"
    written = {path.name: path.stat().st_mtime_ns for path in results.iterdir()}
    write(submitted, {"cem": correct})  # a resubmission
    before = set(client.get_events())
    rerun = grade(
        GradeOptions(
            **options,
            output=tmp_path / "dask",
            scheduler=local_cluster.scheduler_address,
        )
    )
    assert graded_students(client, before) == {"cem"}
    assert {row.student: row.score for row in rerun.rows} == {"ann": 10, "cem": 10}
    now = {path.name: path.stat().st_mtime_ns for path in results.iterdir()}
    assert {name for name in now if now[name] != written[name]} == {"cem.json"}
    assert gradebook_scores(course) == {"ann": 10, "cem": 10}
    lines = rerun.table.read_text().splitlines()
    assert len(lines) == 3 and lines[:2] == here.table.read_text().splitlines()[:2]


def kill_on_starts(client, kills: dict, stop: threading.Event) -> None:
    """Kill (SIGKILL) the worker process of each student's first ``kills[student]``
    attempts, shortly after each attempt is recorded."""
    killed: dict = {}
    while not stop.is_set():
        for topic, events in client.get_events().items():
            if not topic.startswith("rnn-course-grade-"):
                continue
            student = topic.rsplit("-", 1)[1]
            starts = [message for _, message in events]
            while killed.setdefault(topic, 0) < min(len(starts), kills.get(student, 0)):
                time.sleep(0.5)  # into the sandbox's start
                try:
                    os.kill(starts[killed[topic]]["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
                killed[topic] += 1
        time.sleep(0.1)


@pytest.mark.parametrize("allowed_failures", [0, 3])
def test_a_killed_worker_costs_one_retry_then_a_grader_error(
    dask_cluster, module_course, tmp_path, allowed_failures
):
    """Whatever the scheduler's own retry setting (0: it gives up at once; 3, Dask's
    default: it would run the task four times), a submission starts at most twice."""
    local_cluster, client = dask_cluster
    local_cluster.scheduler.allowed_failures = allowed_failures
    course = module_course
    correct = answered(load(course, "release"), load(course, "source"))
    submitted = tmp_path / "submitted"
    write(submitted, {"dan": correct, "eve": correct})
    stop = threading.Event()
    killer = threading.Thread(
        target=kill_on_starts, args=(client, {"dan": 1, "eve": 9}, stop)
    )
    before = set(client.get_events())
    killer.start()
    try:
        summary = grade(
            GradeOptions(
                ASSIGNMENT,
                submitted,
                course,
                tmp_path / "graded",
                progress=False,
                scheduler=local_cluster.scheduler_address,
            )
        )
    finally:
        stop.set()
        killer.join()
        local_cluster.scheduler.allowed_failures = 3
    rows = {row.student: row for row in summary.rows}
    assert sorted(rows) == ["dan", "eve"]
    assert (rows["dan"].status, rows["dan"].score) == (report.GRADED, 10)
    assert rows["eve"].status == report.GRADER_ERROR
    assert "died twice" in rows["eve"].message
    assert rows["eve"].message.count("on host ") == 2
    lines = summary.table.read_text().splitlines()
    assert len(lines) == 3 and sum(line.startswith("eve,") for line in lines) == 1
    topics = {
        topic.rsplit("-", 1)[1]: [message for _, message in events]
        for topic, events in client.get_events().items()
        if topic.startswith("rnn-course-grade-") and topic not in before
    }
    assert len(topics["eve"]) == 2  # never a third start
    first, second = topics["dan"][-2:]
    assert first["worker"] != second["worker"]  # retried elsewhere


def started(command: list[str], log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)


def test_a_lost_scheduler_ends_every_row_and_says_so(module_course, tmp_path):
    """The scheduler dies (SIGKILL) once the first submission is graded: that row is
    kept, each of the others is one "grader error" row that says why, and the command
    returns instead of waiting for a scheduler that is gone."""
    require_sandbox()
    course = module_course
    correct = answered(load(course, "release"), load(course, "source"))
    submitted = tmp_path / "submitted"
    write(submitted, {name: correct for name in ("ann", "bea", "cem")})
    file = tmp_path / "scheduler.json"
    python = [sys.executable, "-m"]
    scheduler = started(
        [
            *python,
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
        + ["--no-dashboard", "--scheduler-file", str(file)],
        tmp_path / "scheduler.log",
    )
    worker = (
        started(  # (no nanny: stopping this process stops the worker and its sandbox)
            [*python, "distributed.cli.dask_worker", "--scheduler-file", str(file)]
            + [
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--death-timeout",
                "20",
            ],
            tmp_path / "worker.log",
        )
    )
    output = tmp_path / "graded"

    def kill_after_the_first_row() -> None:
        while scheduler.poll() is None:
            if list((output / "results").glob("*.json")):
                scheduler.kill()
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_the_first_row)
    try:
        for _ in range(600):
            if file.exists():
                break
            time.sleep(0.1)
        killer.start()
        options = GradeOptions(
            ASSIGNMENT, submitted, course, output, progress=False, scheduler_file=file
        )
        outcome: dict = {}
        command = threading.Thread(
            target=lambda: outcome.update(summary=grade(options)), daemon=True
        )
        command.start()
        command.join(timeout=300)  # (about 15 s on a busy 2-core machine)
        assert not command.is_alive(), "the command kept waiting for a lost scheduler"
        summary = outcome["summary"]
    finally:
        scheduler.kill()
        killer.join()
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    rows = {row.student: row for row in summary.rows}
    assert sorted(rows) == ["ann", "bea", "cem"]
    graded = [row for row in rows.values() if row.status == report.GRADED]
    lost = [row for row in rows.values() if row.status == report.GRADER_ERROR]
    assert len(graded) == 1 and graded[0].score == 10
    assert len(lost) == 2
    assert all(cluster.SCHEDULER_LOST_MESSAGE == row.message for row in lost)
    lines = summary.table.read_text().splitlines()
    assert len(lines) == 4


def test_a_host_that_cannot_sandbox_or_has_other_code_refuses_and_says_why(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.delitem(cluster._WORKER, "sandbox_problem", raising=False)
    release = {"assignment": ASSIGNMENT, "settings": {"use_bwrap": True}}
    job = {"student": "ann", "fingerprint": "f", "files": {}}
    row = report.Row.from_dict(cluster.grade_here(release, job))
    monkeypatch.delitem(cluster._WORKER, "sandbox_problem")
    assert row.status == report.GRADER_ERROR and row.score is None
    assert f"on host {os.uname().nodename}" in row.message
    assert "bubblewrap (bwrap) is not installed" in row.message
    assert "--no-sandbox" in row.message
    other = {**release, "package": "another digest"}  # another version of rnn_course
    row = report.Row.from_dict(cluster.grade_here(other, job))
    assert row.status == report.GRADER_ERROR
    assert "another version of the rnn_course package" in row.message


def test_the_command_line_and_an_unreachable_scheduler(monkeypatch):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [ASSIGNMENT, "submitted", "--scheduler", "tcp://127.0.0.1:9"]
    )
    assert args.scheduler == "tcp://127.0.0.1:9" and args.scheduler_file is None
    args = parser.parse_args([ASSIGNMENT, "s", "--scheduler-file", "scheduler.json"])
    assert args.scheduler_file == Path("scheduler.json")
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2.0)
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler at tcp://"):
        cluster.connect("tcp://127.0.0.1:9", None)


def test_workers_with_a_scheduler_is_refused_and_says_what_sizes_a_cluster(
    course, tmp_path
):
    """--workers sizes the local pool only: with --scheduler it would be ignored, so the
    command refuses it (before reaching any scheduler) and says what to do instead."""
    (tmp_path / "submitted").mkdir()
    base = {"assignment": ASSIGNMENT, "submissions": tmp_path / "submitted"}
    with pytest.raises(
        GradingError, match=r"--workers .* `dask worker ADDRESS --nworkers"
    ):
        grade(
            GradeOptions(**base, course_root=course, workers=3, scheduler="tcp://x:9")
        )
    with pytest.raises(GradingError, match=r"--workers must be 1 or more \(got 0\)"):
        grade(GradeOptions(**base, course_root=course, workers=0, sandbox=False))


def test_local_grading_never_imports_dask():
    code = (
        "import sys\nfrom rnn_course.cli import main\n"
        "import rnn_course.grading.command\n"
        "assert 'distributed' not in sys.modules and 'dask' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
