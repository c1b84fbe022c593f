"""``rnn-course grade``: grade every submission of an assignment, in parallel, sandboxed.

The main process finds and checks the submissions (:mod:`.intake`), prepares the release course copy
and the instructor's gradebook (:mod:`.gradebook`), hands the submissions to a pool of worker processes
(:mod:`.worker`, one per core by default; with ``--scheduler``, to a Dask cluster: :mod:`.cluster`),
and as rows come back it alone writes them: the results
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
    scheduler: str | None = None  # a Dask scheduler's address: grade on that cluster
    scheduler_file: Path | None = None  # or the scheduler file it wrote (e.g. Slurm)

    @property
    def on_cluster(self) -> bool:
        return bool(self.scheduler or self.scheduler_file)


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
    graded_now: int = 0  # rows whose notebook ran in this run
    reused: int = 0  # rows kept from the results cache (same files as before)
    absent: list[str] = field(default_factory=list)  # folders without the assignment

    @property
    def grader_errors(self) -> int:
        return self.counts[report.GRADER_ERROR]

    @property
    def failed(self) -> int:
        """Rows whose status is a failure (what the progress bar counts)."""
        return sum(row.status not in report.NOT_FAILURES for row in self.rows)

    def lines(self, assignment: str) -> list[str]:
        """The command's summary: how many rows were graded now, reused, failed, and
        the student folders that have nothing for this assignment."""
        decided = len(self.rows) - self.graded_now - self.reused
        failures = Counter(
            row.status for row in self.rows if row.status not in report.NOT_FAILURES
        )
        by_status = ", ".join(
            f"{count} {status}" for status, count in sorted(failures.items())
        )
        lines = [
            f"{len(self.rows)} row{'' if len(self.rows) == 1 else 's'}:"
            f" {self.graded_now} graded now, {self.reused} reused"
            f" from the cache, {decided} decided at intake (not run); {self.failed}"
            f" failed{f' ({by_status})' if by_status else ''}"
        ]
        if self.absent:
            names = ", ".join(self.absent[:20])
            more = f" and {len(self.absent) - 20} more" if len(self.absent) > 20 else ""
            folders = "folder has" if len(self.absent) == 1 else "folders have"
            lines.append(
                f"{len(self.absent)} student {folders} no {assignment}: {names}{more}"
            )
        return lines


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
    from .plan import TestPlan

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
    if options.workers is not None and options.on_cluster:
        raise GradingError(
            "--workers sets the size of the local process pool; with --scheduler the "
            "cluster's workers grade, one submission per thread: start as many as you "
            "want there (e.g. `dask worker ADDRESS --nworkers 8 --nthreads 1`)"
        )
    if options.workers is not None and options.workers < 1:
        raise GradingError(f"--workers must be 1 or more (got {options.workers})")
    if options.sandbox and not options.on_cluster:  # (each Dask worker checks its own)
        check_sandbox_available()
        confinement.enable_v2_delegation()  # (a systemd user scope: see the README)
        confinement.remove_stale_cgroups()  # (left by a grader killed mid-run)
    elif not options.sandbox:
        print(UNCONFINED_WARNING, file=sys.stderr)
    enforcement = _enforcement(options)
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
    uids = (
        confinement.UidPool()
        if confinement.leases_uids(options.sandbox) and not options.on_cluster
        else None
    )  # rootless: a user namespace per submission; on a cluster: each worker's own host
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
        reused = 0
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
                reused += 1
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
            pool = _start_executor(
                options, workers
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
        len(jobs),
        reused,
        submissions.absent,
    )


def _ungraded_row(submission: intake.Submission, assignment: str, plan) -> report.Row:
    """A row for a submission that cannot run: 0 points (or no score at all for an unknown student)."""
    points = None if submission.status == report.UNKNOWN else 0.0
    parts = [
        report.PartFeedback(
            part.grade_id, part.description, points, part.points, report.NOT_GRADED
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


def _enforcement(options: GradeOptions) -> list[str]:
    """How each limit is enforced: on this host, or on each Dask worker's host."""
    if options.on_cluster:
        from .cluster import enforcement

        return enforcement(options.sandbox)
    return confinement.enforcement(
        options.memory_mb, SandboxSettings.processes, options.sandbox
    )


def _start_executor(options: GradeOptions, workers: int):
    """Where the tasks run: the local process pool, or a Dask cluster (--scheduler)."""
    if not options.on_cluster:
        return _start_pool(workers, options.sandbox)
    from .cluster import connect

    scheduler_file = options.scheduler_file and str(options.scheduler_file)
    try:
        return connect(options.scheduler, scheduler_file)
    except ValueError as error:
        raise GradingError(str(error)) from None


def _init_worker(use_bwrap: bool) -> None:
    """In a worker process: :func:`.worker.init_worker` (imported there, not here: the worker
    module imports torch, which the main process never needs)."""
    from .worker import init_worker

    init_worker(use_bwrap)


def _grade_submission(config: dict, job: dict) -> dict:
    """In a worker process: :func:`.worker.grade_submission`, imported there."""
    from .worker import grade_submission

    return grade_submission(config, job)


def _start_pool(
    workers: int, use_bwrap: bool
) -> concurrent.futures.ProcessPoolExecutor:
    pool = concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
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
        {pool.submit(_grade_submission, config, job): job for job in jobs}
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
        "--workers",
        type=int,
        help="parallel workers (default: one per core; with --scheduler, the cluster's)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on a Dask cluster: its scheduler's address, e.g. tcp://host:8786",
    )
    parser.add_argument(
        "--scheduler-file",
        type=Path,
        help="grade on the Dask cluster whose scheduler wrote this file (dask scheduler "
        "--scheduler-file)",
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
        scheduler=args.scheduler,
        scheduler_file=args.scheduler_file,
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
    for line in summary.lines(args.assignment):
        print(report.printable(line))
    counts = ", ".join(
        f"{count} {status}" for status, count in sorted(summary.counts.items())
    )
    print(f"statuses: {counts}")
    print("limits: " + "; ".join(summary.enforcement))
    print(f"grade table: {report.printable(str(summary.table))}")
    print(f"feedback: {report.printable(str(summary.output / 'feedback'))}")
    return 1 if summary.grader_errors else 0
