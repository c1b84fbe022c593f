"""``rnn-course grade``: grade every submission of an assignment, in parallel, sandboxed.

The main process finds and checks the submissions (:mod:`.intake`), prepares the release course copy
and the instructor's gradebook (:mod:`.gradebook`), hands the submissions to a pool of worker processes
(:mod:`.worker`, one per core by default), and as rows come back it alone writes them: the results
cache, the feedback pages, the gradebook, and finally the grade table (:mod:`.report`). A progress bar
shows graded/total and failures.

Folders used (``<course>`` is ``--course-root``, by default the current folder)::

    <course>/solutions/<assignment>/<notebook>.ipynb   source: the tests the grader runs (hidden ones too)
    <course>/exercises/<assignment>/<notebook>.ipynb   release: what each sandbox starts from
    <course>/gradebook.db                               the instructor's gradebook (nbgrader)
    <output> = <course>/graded/<assignment>/            grades.csv, feedback/, results/, logs/
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import skip_slow_imports

skip_slow_imports()  # before intake imports nbformat

from . import confinement, intake, report  # noqa: E402
from .sandbox import SandboxSettings, check_sandbox_available  # noqa: E402

UNCONFINED_WARNING = (
    "WARNING: --no-sandbox: student code runs unconfined, with your user's rights; it can read "
    "the hidden tests and solutions and change any file you can change, including the gradebook."
)


class GradingError(RuntimeError):
    """Grading cannot start (bad arguments, missing files, no sandbox); the message says what to do."""


@dataclass
class GradeOptions:
    assignment: str
    submissions: Path
    course_root: Path = Path(".")
    output: Path | None = None
    workers: int | None = None  # default: one per core
    force: bool = False  # regrade submissions already graded with the same files
    sandbox: bool = True
    roster: Path | None = None
    cell_timeout: float = 30.0
    submission_timeout: float = 300.0
    memory_mb: int = 4096
    progress: bool = True


@dataclass
class GradeSummary:
    rows: list[report.Row]
    table: Path
    output: Path
    counts: Counter = field(default_factory=Counter)
    enforcement: list[str] = field(
        default_factory=list
    )  # how each limit was enforced in this run
    uids: dict[str, int] = field(
        default_factory=dict
    )  # the sandbox uid of each submission graded now

    @property
    def grader_errors(self) -> int:
        return self.counts[report.GRADER_ERROR]


def _project_root() -> Path | None:
    """The source checkout the package was installed from (editable install), which holds solutions too."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() else None


def release_cache(course: Path) -> Path:
    """The grader's cache of release copies (under the course root: hidden from every sandbox)."""
    return course / ".rnn-course-cache" / "releases"


def _confinement(
    options: GradeOptions, course: Path, output: Path, scratch: Path
) -> dict:
    """What the sandbox hides, what it shows again, and what must never become visible."""
    submissions = options.submissions.resolve()
    submissions_folder = submissions if submissions.is_dir() else submissions.parent
    project = _project_root()
    hidden = [
        course,
        submissions_folder,
        output,
        scratch,
        Path.home(),
        Path("/root"),
        Path("/home"),
        Path("/tmp"),
        Path("/var/tmp"),
        Path("/srv"),
        Path("/mnt"),
        Path("/media"),
        Path.cwd(),
        Path(tempfile.gettempdir()),
    ]
    secrets = [
        course / "solutions",
        course / "gradebook.db",
        submissions,
        output,
        scratch,
    ]
    if project is not None:
        hidden.append(project)
        secrets += [project / "solutions", project / "gradebook.db"]
    bind_back = {
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        str(Path(__file__).resolve().parents[1]),
    }
    return {
        "hidden": [str(path) for path in hidden],
        "secrets": [str(path) for path in secrets],
        "bind_back": sorted(bind_back),
    }


def grade(options: GradeOptions) -> GradeSummary:
    """Grade every submission of ``options.assignment``; returns the rows and where the table is."""
    from .gradebook import GradebookWriter, prepare_release
    from .runner import TestPlan

    course = Path(options.course_root).resolve()
    assignment = options.assignment
    if not intake.STUDENT_ID.fullmatch(assignment):
        raise GradingError(f"not an assignment name: {assignment!r}")
    sources = sorted((course / "solutions" / assignment).glob("*.ipynb"))
    if len(sources) != 1:
        raise GradingError(
            f"{course / 'solutions' / assignment} must hold exactly one source notebook "
            f"(found {len(sources)}); is --course-root right?"
        )
    if not options.submissions.exists():
        raise GradingError(f"{options.submissions} does not exist")
    if options.sandbox:
        check_sandbox_available()
    else:
        print(UNCONFINED_WARNING, file=sys.stderr)
    enforcement = confinement.enforcement(
        options.memory_mb, SandboxSettings.processes, options.sandbox
    )
    print(
        "rnn-course grade: " + "\n  ".join(["limits of this run:", *enforcement]),
        file=sys.stderr,
    )
    release_notebooks = sorted((course / "exercises" / assignment).glob("*.ipynb"))
    if [path.name for path in release_notebooks] != [sources[0].name]:
        raise GradingError(
            f"{course / 'exercises' / assignment} must hold the released {sources[0].name} and no "
            "other notebook: run `make exercises`?"
        )
    notebook = sources[0].name
    output = Path(options.output or course / "graded" / assignment).resolve()
    output.mkdir(parents=True, exist_ok=True)
    folder = report.OutputFolder(output)
    roster = intake.read_roster(options.roster) if options.roster else None
    plan = TestPlan.from_source(sources[0])
    grade_ids = [part.grade_id for part in plan.parts]
    writer = GradebookWriter(course, assignment, notebook)
    scratch = Path(tempfile.mkdtemp(prefix="rnn-course-grading-"))
    pool = None
    uids = confinement.UidPool() if options.sandbox else None
    try:
        submissions = intake.collect(
            options.submissions,
            assignment,
            notebook,
            release_notebooks[0],
            scratch / "staging",
            roster,
        )
        rows: list[report.Row] = []
        jobs = []
        for submission in submissions:
            cached = folder.cached(submission.student)
            if submission.status is not None:
                row = _ungraded_row(submission, assignment, plan)
                folder.save(row)
                rows.append(row)
            elif (
                not options.force
                and cached is not None
                and cached.fingerprint == submission.fingerprint
                and cached.status != report.GRADER_ERROR
            ):
                rows.append(cached)  # graded before from the same files: kept as it is
            else:
                jobs.append(
                    {
                        "student": submission.student,
                        "files": {n: str(p) for n, p in submission.files.items()},
                        "notebook": submission.notebook,
                        "expected_notebook": notebook,
                        "renamed_from": submission.renamed_from,
                        "tampered": submission.tampered,
                        "fingerprint": submission.fingerprint,
                        "uid": uids.lease() if uids is not None else None,
                    }
                )  # its own, for it alone
        workers = max(1, min(options.workers or os.cpu_count() or 1, len(jobs)))
        if jobs:
            pool = _start_pool(
                workers, options.sandbox
            )  # the workers import torch while this process prepares
        writer.ensure_assignment(grade_ids)  # (nbgrader's API: imports for a second)
        for row in rows:
            writer.write(
                row
            )  # (again, for kept rows: the gradebook may have been replaced since)
        release_dir = scratch / "release"
        prepare_release(course, assignment, release_dir, cache=release_cache(course))
        settings = SandboxSettings(
            cell_timeout=options.cell_timeout,
            submission_timeout=options.submission_timeout,
            memory_mb=options.memory_mb,
            threads=max(1, min(8, (os.cpu_count() or 1) // workers)),
            use_bwrap=options.sandbox,
            warm_up=plan.uses_meta_device,
        )
        config = {
            "source_notebook": str(sources[0]),
            "release_dir": str(release_dir),
            "scratch": str(scratch),
            "assignment": assignment,
            "settings": settings.to_dict(),
            **_confinement(options, course, output, scratch),
        }
        rows += _run_jobs(
            pool, jobs, config, options, len(submissions), rows, folder, writer
        )
        table = folder.write_table(rows, grade_ids)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if uids is not None:
            uids.release()
        shutil.rmtree(scratch, ignore_errors=True)
    if not options.sandbox:
        print(UNCONFINED_WARNING, file=sys.stderr)
    return GradeSummary(
        sorted(rows, key=lambda row: row.student),
        table,
        output,
        Counter(row.status for row in rows),
        enforcement,
        {job["student"]: job["uid"] for job in jobs if job["uid"] is not None},
    )


def _ungraded_row(submission: intake.Submission, assignment: str, plan) -> report.Row:
    """A row for a submission that cannot run: 0 points (or no score at all for an unknown student)."""
    points = None if submission.status == report.UNKNOWN else 0.0
    parts = [
        report.PartFeedback(
            part.grade_id, part.description, points, part.points, "not graded"
        )
        for part in plan.parts
    ]
    return report.Row(
        submission.student,
        assignment,
        submission.status,
        submission.message,
        points,
        plan.max_score,
        parts,
        submission.fingerprint,
    )


def _start_pool(
    workers: int, use_bwrap: bool
) -> concurrent.futures.ProcessPoolExecutor:
    from .worker import init_worker

    pool = concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(use_bwrap,),
    )
    for _ in range(workers):
        pool.submit(int)  # start every worker now, not at the first job
    return pool


def _run_jobs(
    pool,
    jobs: list[dict],
    config: dict,
    options: GradeOptions,
    total: int,
    done: list,
    folder,
    writer,
) -> list:
    """Grade the jobs in the worker processes; the main process writes each row as it arrives."""
    from tqdm import tqdm

    from .worker import grade_submission

    failures = sum(row.status not in report.NOT_FAILURES for row in done)
    bar = tqdm(
        total=total,
        initial=total - len(jobs),
        desc=f"grading {options.assignment}",
        unit="submission",
        disable=not options.progress,
        file=sys.stderr,
    )
    bar.set_postfix(failures=failures)
    rows = []
    futures = (
        {pool.submit(grade_submission, config, job): job for job in jobs}
        if jobs
        else {}
    )
    for future in concurrent.futures.as_completed(futures):
        job = futures[future]
        try:
            row = report.Row.from_dict(future.result())
        except Exception as error:  # noqa: BLE001 (a grader failure: recorded, never silent)
            row = report.Row(
                job["student"],
                options.assignment,
                report.GRADER_ERROR,
                f"the grader failed on this submission: {type(error).__name__}: {error}",
                None,
                0.0,
                [],
                job["fingerprint"],
            )
        folder.save(row)
        writer.write(row)
        rows.append(row)
        failures += row.status not in report.NOT_FAILURES
        bar.set_postfix(failures=failures)
        bar.update(1)
    bar.close()
    return rows


def add_arguments(parser) -> None:
    """The ``grade`` sub-command's options (used by :mod:`rnn_course.cli`)."""
    parser.add_argument("assignment", help="assignment name, e.g. ch02_memory_cell")
    parser.add_argument(
        "submissions",
        type=Path,
        help="folder with one folder per student (nbgrader's submitted/ layout), or a zip file",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="output folder (default: <course>/graded/<assignment>)",
    )
    parser.add_argument(
        "--workers", type=int, help="parallel workers (default: one per core)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="regrade submissions already graded with the same files",
    )
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run student code without bubblewrap (where it is missing, e.g. macOS): UNCONFINED",
    )
    parser.add_argument(
        "--roster",
        type=Path,
        help="student ids, one per line (or a CSV with an 'id' column)",
    )
    parser.add_argument(
        "--cell-timeout",
        type=float,
        default=30.0,
        help="seconds per cell and per test (30)",
    )
    parser.add_argument(
        "--submission-timeout",
        type=float,
        default=300.0,
        help="seconds per submission, all included (300)",
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=4096,
        help="MiB per submission (all its processes together) and per process (4096)",
    )
    parser.add_argument(
        "--course-root",
        type=Path,
        default=Path("."),
        help="the course folder, holding solutions/, exercises/ and gradebook.db (default: .)",
    )


def run(args) -> int:
    """Run the ``grade`` sub-command from parsed arguments; returns the exit status."""
    from .sandbox import SandboxError

    options = GradeOptions(
        args.assignment,
        args.submissions,
        args.course_root,
        args.output,
        args.workers,
        args.force,
        not args.no_sandbox,
        args.roster,
        args.cell_timeout,
        args.submission_timeout,
        args.memory,
    )
    try:
        summary = grade(options)
    except (
        GradingError,
        SandboxError,
        confinement.ConfinementError,
        ValueError,
    ) as error:
        print(f"rnn-course grade: {report.printable(str(error))}", file=sys.stderr)
        return 2
    counts = ", ".join(
        f"{count} {status}" for status, count in sorted(summary.counts.items())
    )
    print(f"{len(summary.rows)} submissions: {counts}")
    print("limits: " + "; ".join(summary.enforcement))
    print(f"grade table: {report.printable(str(summary.table))}")
    print(f"feedback: {report.printable(str(summary.output / 'feedback'))}")
    return 1 if summary.grader_errors else 0
