"""Benchmark (not a test): plain serial ``nbgrader autograde`` against ``rnn-course
grade``.

In one run, on N submissions of one assignment (a mix of correct, blank and wrong
answers):

1. plain nbgrader: ``nbgrader autograde`` (serial, add_missing_cells on) in a temporary
   course copy;
2. ``rnn-course grade --workers W`` with the sandbox;
3. ``rnn-course grade --workers W --no-sandbox``.

Prints the wall-clock times, the speed ratio plain / ours (target >= 1.7 with 2 workers
on 2 cores), the sandbox's overhead (sandbox / no-sandbox - 1, target <= 15%), and
whether all three agree on every score. Each command runs as a subprocess, imports
included, after the gradebooks already know the assignment (``nbgrader
generate_assignment``, not timed).

    .venv/bin/python benchmarks/grading_speed.py            # N = 24, W = 2,
    ch02_memory_cell
    .venv/bin/python benchmarks/grading_speed.py --submissions 12 --workers 2
    --assignment ch01_neuron

The sandboxed run needs root and bubblewrap; without them, pass --skip-sandbox.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def environment() -> dict:
    env = dict(os.environ)
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env.pop("NBGRADER_EXECUTION", None)
    return env


def course_copy(target: Path) -> Path:
    target.mkdir(parents=True)
    for folder in ("solutions", "exercises"):
        shutil.copytree(ROOT / folder, target / folder)
    shutil.copy(ROOT / "nbgrader_config.py", target)
    return target


def answer_cells(nb) -> list:
    return [
        cell
        for cell in nb.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
        and not cell.metadata.get("nbgrader", {}).get("grade")
    ]


def strip_markers(source: str) -> str:
    return "\n".join(
        line
        for line in source.splitlines()
        if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line
    )


def make_submissions(course: Path, assignment: str, count: int, folder: Path) -> None:
    """A third correct, a third blank, a third with one part wrong (its function
    raises), in turn.
    """
    notebook = f"{assignment}.ipynb"
    source = nbformat.read(course / "solutions" / assignment / notebook, as_version=4)
    release = nbformat.read(course / "exercises" / assignment / notebook, as_version=4)
    solutions = {
        cell.metadata.nbgrader["grade_id"]: strip_markers(cell.source)
        for cell in answer_cells(source)
    }
    correct = copy.deepcopy(release)
    for cell in answer_cells(correct):
        cell.source = solutions[cell.metadata.nbgrader["grade_id"]]
    for index in range(count):
        kind = ("correct", "blank", "wrong")[index % 3]
        nb = copy.deepcopy(release if kind == "blank" else correct)
        if kind == "wrong":
            cells = answer_cells(nb)
            broken = cells[(index // 3) % len(cells)]
            broken.source = (
                broken.source.split("\n")[0]
                + "\n    raise ValueError('wrong on purpose')\n"
            )
        target = folder / f"student{index:03d}" / assignment
        target.mkdir(parents=True)
        nbformat.write(nb, target / notebook)


def generate(course: Path, assignment: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "nbgrader",
            "generate_assignment",
            assignment,
            "--force",
        ],
        cwd=course,
        env=environment(),
        check=True,
        capture_output=True,
    )


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, env=environment(), capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 1):
        print(result.stdout[-3000:], result.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{command[:4]} failed with exit status {result.returncode}")
    return elapsed


def plain_scores(course: Path, assignment: str) -> dict[str, float]:
    with sqlite3.connect(course / "gradebook.db") as db:
        rows = db.execute(
            "SELECT student.id, SUM(COALESCE(grade.auto_score, 0)) FROM grade "
            "JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
            "JOIN submitted_assignment ON submitted_notebook.assignment_id = "
            "submitted_assignment.id "
            "JOIN student ON submitted_assignment.student_id = student.id "
            "JOIN assignment ON submitted_assignment.assignment_id = assignment.id "
            "WHERE assignment.name = ? GROUP BY student.id",
            (assignment,),
        ).fetchall()
    return {student: float(score) for student, score in rows}


def our_scores(table: Path) -> dict[str, float]:
    with open(table, newline="") as handle:
        return {
            row["student"]: float(row["score"] or 0) for row in csv.DictReader(handle)
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="ch02_memory_cell")
    parser.add_argument("--submissions", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--skip-sandbox", action="store_true", help="no root or no bubblewrap here"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="grading-benchmark-"))
    try:
        plain = course_copy(work / "plain")
        ours = course_copy(work / "ours")
        submitted = work / "submissions"
        make_submissions(plain, args.assignment, args.submissions, submitted)
        shutil.copytree(submitted, plain / "submitted")
        generate(plain, args.assignment)
        shutil.copy(plain / "gradebook.db", ours / "gradebook.db")
        print(
            f"{args.submissions} submissions of {args.assignment} ({os.cpu_count()} "
            "cores)"
        )

        plain_seconds = timed(
            [
                sys.executable,
                "-m",
                "nbgrader",
                "autograde",
                args.assignment,
                "--force",
                "--OverwriteCells.add_missing_cells=True",
                "--Execute.timeout=30",
            ],
            plain,
        )
        print(f"plain nbgrader autograde (serial):        {plain_seconds:7.1f} s")
        results = {"plain": plain_scores(plain, args.assignment)}
        command = [
            str(BIN / "rnn-course"),
            "grade",
            args.assignment,
            str(submitted),
            "--workers",
            str(args.workers),
            "--force",
        ]
        sandbox_seconds = None
        if not args.skip_sandbox:
            sandbox_seconds = timed(
                command + ["--output", str(work / "out-sandbox")], ours
            )
            print(
                f"rnn-course grade, {args.workers} workers, sandbox:     "
                f"{sandbox_seconds:7.1f} s"
            )
            results["sandbox"] = our_scores(work / "out-sandbox" / "grades.csv")
        free_seconds = timed(
            command + ["--no-sandbox", "--output", str(work / "out-free")], ours
        )
        print(
            f"rnn-course grade, {args.workers} workers, no sandbox:  "
            f"{free_seconds:7.1f} s"
        )
        results["no sandbox"] = our_scores(work / "out-free" / "grades.csv")

        if sandbox_seconds is not None:
            print(
                "speed ratio plain / ours (sandbox):       "
                f"{plain_seconds / sandbox_seconds:7.2f}   (target >= 1.7)"
            )
            print(
                "sandbox overhead (sandbox / no sandbox):  "
                f"{100 * (sandbox_seconds / free_seconds - 1):6.1f} %"
                "   (target <= 15%)"
            )
        print(
            "speed ratio plain / ours (no sandbox):    "
            f"{plain_seconds / free_seconds:7.2f}"
        )
        students = sorted(results["plain"])
        disagreements = [
            student
            for student in students
            if len({round(scores.get(student, -1), 6) for scores in results.values()})
            != 1
        ]
        print(
            f"scores: {sum(results['plain'].values()):g} points in all; "
            f"{len(disagreements)} submissions graded differently"
            + (f": {disagreements}" if disagreements else "")
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
