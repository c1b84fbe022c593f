"""Benchmark (not a test): plain ``nbgrader autograde`` against ``rnn-course grade``.

In one run, for N = 4 and N = 24 submissions of one assignment (half correct, one
blank, the rest with one part wrong, in turn), three modes side by side on the same
submissions:

1. plain nbgrader: ``nbgrader autograde`` (serial, add_missing_cells on);
2. ``rnn-course grade --workers W`` with the sandbox;
3. ``rnn-course grade --workers W --no-sandbox``.

For each it prints the wall-clock seconds, the start-up (seconds from the command's
start until its first submission starts: plain nbgrader's first kernel, our first
sandbox's driver), the CPU-seconds of every process the command started (sandboxes
included), in all and per submission, and the speed ratio plain / ours; then the
sandbox's overhead (sandbox / no-sandbox - 1) and whether all three agree on every
score. Targets on 2 cores, 2 workers: ratio > 1.0 at N = 4, >= 2.0 at N = 24,
overhead <= 15%.

CPU is read from a cpuacct (cgroup v1) or cpu (cgroup v2) group made for each command
where this process may make one (root); elsewhere from ``RUSAGE_CHILDREN``, which
misses what the sandboxes' PID namespaces reap (the output says which). Each command
runs as a subprocess, imports included, after the gradebooks know the assignment
(``nbgrader generate_assignment``) and the grader's release cache is filled (both once
per release, not timed). Run it on an otherwise idle machine: the load average is
printed with each table.

    .venv/bin/python benchmarks/grading_speed.py             # N = 4 and 24, W = 2
    .venv/bin/python benchmarks/grading_speed.py --submissions 12 --workers 2

The sandboxed mode needs root and bubblewrap; without them, pass --skip-sandbox.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FIRST_SUBMISSION = {
    "plain": "ipykernel_launcher",
    "ours": "rnn_course/grading/driver.py",
}
"""What each command's first submission starts (in its process tree's command lines)."""


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
    """Half correct, the first one blank, the others with one part wrong (its function
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
        kind = "blank" if index == 0 else ("correct", "wrong")[index % 2]
        nb = copy.deepcopy(release if kind == "blank" else correct)
        if kind == "wrong":
            cells = answer_cells(nb)
            broken = cells[(index // 2) % len(cells)]
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


@dataclass
class Measured:
    wall: float  # seconds
    start_up: float | None  # seconds until the first submission started
    cpu: float  # CPU-seconds of every process the command started


class CpuGroup:
    """A cgroup counting the CPU time of a command and of everything it starts."""

    def __init__(self, folder: Path, usage):
        self.folder, self.usage = folder, usage

    @classmethod
    def make(cls) -> CpuGroup | None:
        name = f"grading-benchmark-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        own = {}
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                own[controller] = path
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            before, _, after = line.partition(" - ")
            kind, _, options = (after.split() + ["", "", ""])[:3]
            mount = Path(before.split()[4])
            if (
                kind == "cgroup"
                and "cpuacct" in options.split(",")
                and "cpuacct" in own
            ):
                folder = mount / own["cpuacct"].lstrip("/") / name
                usage = lambda f: int((f / "cpuacct.usage").read_text()) / 1e9  # noqa: E731
            elif kind == "cgroup2" and "" in own:
                folder = mount / own[""].lstrip("/") / name
                usage = lambda f: _v2_usage(f)  # noqa: E731
            else:
                continue
            try:
                folder.mkdir()
                usage(folder)
            except OSError:
                continue
            return cls(folder, usage)
        return None

    @classmethod
    def make_probe(cls) -> bool:
        """Whether a group can be made here (made and removed at once)."""
        group = cls.make()
        if group is not None:
            group.remove()
        return group is not None

    def join_command(self) -> None:
        (self.folder / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self) -> float:
        return self.usage(self.folder)

    def remove(self) -> None:
        for _ in range(100):  # the last processes may still be leaving
            try:
                self.folder.rmdir()
                return
            except OSError:
                time.sleep(0.05)


def _v2_usage(folder: Path) -> float:
    for line in (folder / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise OSError("no usage_usec")


def _descendants_run(pid: int, marker: str) -> bool:
    """Whether a process below ``pid`` has ``marker`` in its command line."""
    parents, commands = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            commands[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
    for child, command in commands.items():
        if marker.encode() not in command:
            continue
        ancestor = child
        while ancestor in parents and ancestor > 1:
            ancestor = parents[ancestor]
            if ancestor == pid:
                return True
    return False


def measured(command: list[str], cwd: Path, marker: str) -> Measured:
    """Run ``command``: its wall-clock time, start-up and CPU time (see the top)."""
    group = CpuGroup.make()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=group.join_command if group else None,
    )
    found: list[float] = []

    def watch() -> None:
        while process.poll() is None and not found:
            if _descendants_run(process.pid, marker):
                found.append(time.perf_counter() - start)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    watcher.join()
    if process.returncode not in (0, 1):
        print(stdout[-3000:], stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{command[:4]} failed with exit status {process.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if group is not None:
        cpu = group.seconds()
        group.remove()
    else:
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Measured(wall, found[0] if found else None, cpu)


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


def fill_release_cache(course: Path, assignment: str) -> None:
    """What the grader's first run on a release does once (not timed)."""
    from rnn_course.grading.command import release_cache
    from rnn_course.grading.gradebook import prepare_release

    with tempfile.TemporaryDirectory() as folder:
        prepare_release(course, assignment, Path(folder) / "r", release_cache(course))


def compare(args, count: int, work: Path) -> dict:
    """Grade ``count`` submissions in each mode; print the table; return the ratios."""
    plain = course_copy(work / "plain")
    ours = course_copy(work / "ours")
    submitted = work / "submissions"
    make_submissions(plain, args.assignment, count, submitted)
    shutil.copytree(submitted, plain / "submitted")
    generate(plain, args.assignment)
    shutil.copy(plain / "gradebook.db", ours / "gradebook.db")
    fill_release_cache(ours, args.assignment)

    runs: dict[str, Measured] = {}
    runs["plain nbgrader (serial)"] = measured(
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
        FIRST_SUBMISSION["plain"],
    )
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
    modes = [("sandbox", [])] if not args.skip_sandbox else []
    modes.append(("no sandbox", ["--no-sandbox"]))
    for mode, extra in modes:
        output = work / f"out-{mode.replace(' ', '-')}"
        runs[f"rnn-course grade, {mode}"] = measured(
            command + extra + ["--output", str(output)], ours, FIRST_SUBMISSION["ours"]
        )
        results[mode] = our_scores(output / "grades.csv")

    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(
        f"\nN = {count} submissions of {args.assignment}, {args.workers} workers, "
        f"{os.cpu_count()} cores (load average after: {load})"
    )
    print(
        f"{'mode':30s} {'wall s':>8s} {'start-up s':>11s} {'CPU s':>8s} "
        f"{'CPU s/sub':>10s} {'plain/ours':>11s}"
    )
    plain_wall = runs["plain nbgrader (serial)"].wall
    ratios = {}
    for name, run in runs.items():
        start_up = (
            f"{run.start_up:11.1f}" if run.start_up is not None else f"{'?':>11s}"
        )
        ratio = plain_wall / run.wall
        ratios[name] = ratio
        print(
            f"{name:30s} {run.wall:8.1f} {start_up} {run.cpu:8.1f} "
            f"{run.cpu / count:10.2f} {ratio:11.2f}"
        )
    if not args.skip_sandbox:
        overhead = (
            runs["rnn-course grade, sandbox"].wall
            / runs["rnn-course grade, no sandbox"].wall
            - 1
        )
        print(f"sandbox overhead (sandbox / no sandbox - 1): {100 * overhead:6.1f} %")
    students = sorted(results["plain"])
    disagreements = [
        student
        for student in students
        if len({round(scores.get(student, -1), 6) for scores in results.values()}) != 1
    ]
    print(
        f"scores: {sum(results['plain'].values()):g} points in all; "
        f"{len(disagreements)} submissions graded differently"
        + (f": {disagreements}" if disagreements else "")
    )
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="ch02_memory_cell")
    parser.add_argument(
        "--submissions", type=int, nargs="+", default=[4, 24], help="N (one or more)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--skip-sandbox", action="store_true", help="no root or no bubblewrap here"
    )
    args = parser.parse_args()
    print(
        "CPU counted by "
        + (
            "a cgroup per command"
            if CpuGroup.make_probe()
            else "RUSAGE_CHILDREN (what the sandboxes' PID namespaces reap is missed)"
        )
    )
    for count in args.submissions:
        work = Path(tempfile.mkdtemp(prefix="grading-benchmark-"))
        try:
            compare(args, count, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(
        "targets on 2 cores: plain/ours > 1.0 at N = 4, >= 2.0 at N = 24; sandbox "
        "overhead <= 15 %"
    )


if __name__ == "__main__":
    main()
