"""A grading worker: one submission at a time, in its own sandbox; returns a row to the main process.

Each worker process (one per core) reads the source notebook's tests once, and for each submission
(which comes with a uid of its own, leased by the main process): prepares the files in a fresh folder
(nbgrader's sanitizing pass, :mod:`.sanitize`), starts the sandbox, waits for the probe,
runs the tests (:mod:`.runner`), collects the sandbox's report and decides the status. It writes
nothing outside its scratch folder: the row goes back to the main process.
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import resource
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from . import report, sanitize, skip_slow_imports

skip_slow_imports()  # before plan imports nbformat (a spawned worker imports this module first)

from .plan import TestPlan  # noqa: E402
from .sandbox import Sandbox, SandboxEnded, SandboxSettings, SandboxTimeout  # noqa: E402

if TYPE_CHECKING:
    from .runner import TestOutcome

_STATE: dict = {}


def init_worker(use_bwrap: bool) -> None:
    """Runs once in each worker process, while the main process prepares the run: the imports the
    first sandbox needs (nbgrader, for the sanitizing pass; for sandboxes, the system-call filter,
    compiled once). What the tests need (torch, the runner, torch._dynamo) waits until that sandbox
    runs (:func:`_import_for_the_tests`)."""
    import nbformat  # noqa: F401
    import nbgrader.converters  # noqa: F401

    if multiprocessing.parent_process() is not None:  # (a pool's worker, not a test)
        atexit.register(_exit_at_once)
    _STATE.clear()
    if use_bwrap:
        from .confinement import seccomp_program

        seccomp_program()


def _import_for_the_tests():
    """The runner (which imports torch) and torch._dynamo, which torch imports at the first
    meta-device operation and which would put 2 s of CPU inside a test's time. Imported once per
    worker, while its first sandbox runs the notebook (about 3 s, while the worker only waits), so
    that sandbox starts without waiting for them. Returns the runner module."""
    from . import runner

    if not _STATE.get("imported_for_tests"):
        import torch
        import torch._dynamo  # noqa: F401

        torch.set_num_threads(
            1
        )  # the tests' references are small: the cores are the sandboxes'
        runner.install_reference_recorder()
        _STATE["imported_for_tests"] = True
    return runner


def _exit_at_once() -> None:
    """Leave without tearing down torch's modules (about a second of CPU per worker): registered
    last, this runs first when the pool stops the worker, which by then has sent every result
    (synchronously) and closed every sandbox."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _configure(config: dict) -> None:
    """Read the run's configuration once per worker (the same for every job of a run)."""
    if _STATE.get("config") == config:
        return
    _STATE.update(config)
    _STATE["config"] = config
    _STATE["plan"] = TestPlan.from_source(Path(config["source_notebook"]))
    _STATE["settings"] = SandboxSettings(**config["settings"])
    _STATE["db_url"] = sanitize.release_gradebook_copy(
        Path(config["release_dir"]), Path(config["scratch"])
    )


def grade_submission(config: dict, job: dict) -> dict:
    """Grade one submission (a job made by :mod:`.command`); returns a :class:`report.Row` as a dict."""
    _configure(config)
    plan: TestPlan = _STATE["plan"]
    settings: SandboxSettings = _STATE["settings"]
    box = Path(_STATE["scratch"]) / f"box-{uuid.uuid4().hex}"
    files = box.with_name(box.name + "-files")
    try:
        try:
            sanitize.prepare_submission(
                job,
                Path(_STATE["release_dir"]),
                _STATE["assignment"],
                _STATE["db_url"],
                files,
            )
        except sanitize.SanitizeError as error:
            refused = {"nbgrader_ok": False, "executed": False, "errors": [str(error)]}
            log = f"nbgrader's sanitizing pass refused the notebook: {error}\n"
            return decide(
                job, plan, settings, None, NotRun(str(error)), refused, False, log
            ).to_dict()
        ready_error: BaseException | None = None
        outcome: TestOutcome | None = None
        with Sandbox(
            settings=settings,
            box=box,
            submission_dir=files,
            notebook=job["expected_notebook"],
            assignment=_STATE["assignment"],
            uid=job.get("uid"),
            hidden=_STATE["hidden"],
            bind_back=_STATE["bind_back"],
            secrets=_STATE["secrets"],
        ) as sandbox:
            times = [time.monotonic()]
            cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            sandbox.start()
            runner = _import_for_the_tests()
            try:
                sandbox.wait_ready()
            except (SandboxTimeout, SandboxEnded) as error:
                ready_error = error
            times.append(time.monotonic())
            if ready_error is None:
                outcome = runner.run_tests(plan, sandbox, settings.cell_timeout)
            times.append(time.monotonic())
            sandbox_report = sandbox.finish()
            times.append(time.monotonic())
            killed_at_deadline = sandbox.killed_at_deadline
            sandbox_report["cgroup_oom_kills"] = (
                sandbox.oom_kills
            )  # the grader's own reading of the cgroup
            log = _log(sandbox_report, sandbox.stderr_tail, times)
            cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_seconds = (
                cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
            )
            cpu_text = (
                "" if settings.use_bwrap else f", CPU time {cpu_seconds:.1f} s"
            )  # (bwrap hides it)
            log = (
                f"sandbox exit status: {sandbox.process.returncode}{cpu_text}, kernel's peak address space "
                f"{sandbox.goodbye.get('memory_peak_kb')} kB\n" + log
            )
            if ready_error is not None:
                log = (
                    f"before the tests: {type(ready_error).__name__}: {ready_error}\n"
                    + log
                )
        return decide(
            job,
            plan,
            settings,
            outcome,
            ready_error,
            sandbox_report,
            killed_at_deadline,
            log,
        ).to_dict()
    finally:
        shutil.rmtree(files, ignore_errors=True)


class NotRun(Exception):
    """No code of the submission ran: nbgrader refused the notebook before (:mod:`.sanitize`)."""


def _log(sandbox_report: dict, stderr_tail: bytes, times: list[float]) -> str:
    steps = ", ".join(
        f"{name} {end - start:.1f} s"
        for name, start, end in zip(
            ("notebook run until the probe was ready", "tests", "finish"),
            times,
            times[1:],
        )
    )
    return (
        f"times: {steps}\n\nsandbox report:\n"
        + json.dumps(sandbox_report, indent=1, sort_keys=True)
        + "\n\nsandbox stderr (last part):\n"
        + stderr_tail.decode("utf-8", "replace")
    )


def decide(
    job: dict,
    plan: TestPlan,
    settings: SandboxSettings,
    outcome: TestOutcome | None,
    ready_error: BaseException | None,
    sandbox_report: dict,
    killed_at_deadline: bool,
    log: str,
) -> report.Row:
    """The row: scores from the grader's own tests; the status from what the grader saw, refined by the
    sandbox's (advisory) report. Statuses in priority order: the worst thing that happened wins."""
    errors = " ".join(str(error) for error in sandbox_report.get("errors", []))
    dead_kernel = (
        bool(sandbox_report.get("dead_kernel"))
        or "DeadKernelError" in errors
        or "Kernel died" in errors
    )
    cgroup_oom = bool(
        sandbox_report.get("cgroup_oom_kills")
    )  # set by the grader, not the sandbox
    memory = (
        cgroup_oom
        or bool(sandbox_report.get("memory_errors"))
        or bool(outcome and outcome.memory_error)
    )
    cell_timeouts = bool(sandbox_report.get("timeouts")) or bool(
        outcome and outcome.call_timed_out
    )
    submission_timeout = (
        killed_at_deadline
        or isinstance(ready_error, SandboxTimeout)
        or bool(outcome and outcome.submission_timed_out)
    )
    stopped_early = isinstance(ready_error, (SandboxEnded, NotRun)) or bool(
        outcome and outcome.stopped
    )

    if outcome is not None:
        parts = outcome.parts
    else:
        from .runner import PartResult

        reason = (
            "the notebook ran out of time before the grader could call its functions"
            if submission_timeout
            else "the grader could not call the notebook's functions"
        )
        parts = [
            PartResult(part.grade_id, 0.0, part.points, False, f"not graded: {reason}")
            for part in plan.parts
        ]

    if submission_timeout:
        status, message = (
            report.TIMED_OUT_SUBMISSION,
            (
                f"the submission ran out of the {settings.submission_timeout:g} s it may take; parts not tested by "
                "then score 0"
            ),
        )
    elif stopped_early and memory:
        status, message = (
            report.OUT_OF_MEMORY,
            "the kernel ran out of memory and stopped",
        )
    elif (
        stopped_early
        and not sandbox_report.get("executed")
        and sandbox_report.get("nbgrader_ok") is False
    ):
        status, message = (
            report.INVALID,
            "nbgrader could not process the notebook (see the grading log)",
        )
    elif stopped_early and dead_kernel:
        status, message = (
            report.KERNEL_DIED,
            (
                "the kernel died (os._exit, a crash, or a limit on CPU time or processes); parts not tested by then "
                "score 0"
            ),
        )
    elif stopped_early and cell_timeouts:
        status, message = (
            report.TIMED_OUT_CELL,
            (
                f"a cell or a test ran out of the {settings.cell_timeout:g} s it may take and did not stop when "
                "interrupted, so the notebook was stopped there; parts not tested by then score 0"
            ),
        )
    elif stopped_early and not sandbox_report.get("nbgrader_ok"):
        status, message = (
            report.KERNEL_DIED,
            (
                "the notebook's run stopped before the grader could call its functions (see the grading log)"
            ),
        )
    elif memory:
        status, message = (
            report.OUT_OF_MEMORY,
            (
                f"the submission's processes together hit the memory limit of {settings.memory_mb} MiB"
                if cgroup_oom
                else f"the notebook hit the memory limit of {settings.memory_mb} MiB"
            ),
        )
    elif cell_timeouts:
        status, message = (
            report.TIMED_OUT_CELL,
            (
                f"a cell or a test ran out of the {settings.cell_timeout:g} s it may take; that part scores 0"
            ),
        )
    elif stopped_early:
        status, message = (
            report.GRADED,
            (
                "the grader's last cell did not run as written (does the notebook change how cells run?): "
                "no part could be tested"
            ),
        )
    elif job.get("tampered"):
        status, message = report.TAMPERED, ""
    elif job.get("renamed_from"):
        status, message = report.RENAMED, ""
    else:
        status, message = report.GRADED, ""
    notes = []
    if job.get("tampered"):
        notes.append("test or locked cells restored: " + ", ".join(job["tampered"]))
    if job.get("renamed_from"):
        notes.append(f"graded {job['renamed_from']} as {job['expected_notebook']}")
    message = "; ".join(text for text in [message, *notes] if text)
    descriptions = {part.grade_id: part.description for part in plan.parts}
    feedback = [
        report.PartFeedback(
            part.grade_id,
            descriptions.get(part.grade_id, ""),
            part.points,
            part.max_points,
            part.message,
        )
        for part in parts
    ]
    return report.Row(
        job["student"],
        _STATE.get("assignment", ""),
        status,
        message,
        sum(part.points for part in parts),
        plan.max_score,
        feedback,
        job.get("fingerprint", ""),
        log,
    )
