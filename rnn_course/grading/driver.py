"""Inside the sandbox: nbgrader's own ``autograde`` of one submission, with the probe cell appended.

Run as a script (``python -I driver.py CONFIG_JSON``), not as ``-m rnn_course...``: importing the
``rnn_course`` package would import torch, which this process does not need (the kernel does). Steps:

1. set the resource limits, then, when started as root inside bubblewrap, drop to the sandbox's
   unprivileged uid (as root, ``RLIMIT_NPROC`` would not be enforced); started by an ordinary user,
   the driver is already unprivileged, in a user namespace of its own, where the kernel counts
   ``RLIMIT_NPROC`` for this sandbox alone;
2. build a course in the private scratch folder: the *release* gradebook and notebook (no hidden test,
   no solution) and the student's files as ``submitted/student/<assignment>/``;
3. run nbgrader's ``Autograde`` converter (sanitizing, checksums, ``OverwriteCells`` restoring
   edited and deleted test cells, execution with a per-cell timeout, its gradebook) with two changes
   around its ``Execute``: ``AppendProbe`` adds the last cell, which serves the grader (see
   :mod:`probe`); ``GradingExecute`` gives that cell the whole submission's time, gives the
   instructor's setup cells before the first answer a generous one, caps each cell's output, records
   timeouts and a dead kernel, and does not run the test cells in the student's kernel: the grader
   runs them in its own process, where they cannot be faked;
4. write a short report (JSON) on the file descriptor the grader passed, and exit.

Everything in the report is advisory: the student's code runs with the same uid and could forge it.
It only names what went wrong (timeouts, a dead kernel, memory); scores come from the grader's tests.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import secrets
import shutil
import sys
import time
import traceback
import types

STUDENT = "student"
"""The submission's student id inside the sandbox: the real one is not needed there."""

_FACTS = {
    "timeouts": [],
    "dead_kernel": False,
    "truncated_output": [],
    "executed": False,
    "seconds": {},
}
_START = time.monotonic()


def _mark(step: str) -> None:
    """Note when a step ended (seconds since the driver started), for the grading log."""
    _FACTS["seconds"][step] = round(time.monotonic() - _START, 2)


def limit_resources(limits: dict, strict: bool) -> None:
    """Per-process limits, inherited by the kernel and anything it starts.

    ``strict`` (in the sandbox): every limit must hold. Without the sandbox (e.g. on macOS, which lacks
    some of them) they are best effort.
    """

    def cap(which: int, soft: int, hard: int | None = None) -> None:
        try:
            resource.setrlimit(which, (soft, soft if hard is None else hard))
        except (ValueError, OSError):
            if strict:
                raise

    memory = int(limits["memory_mb"]) << 20
    # RLIMIT_AS counts every mapping (also shared memory); CUDA reserves huge address ranges, so with a
    # GPU inside the sandbox the grader asks for RLIMIT_DATA (private writable memory) instead.
    cap(
        resource.RLIMIT_DATA
        if limits.get("memory_kind") == "data"
        else resource.RLIMIT_AS,
        memory,
    )
    cap(resource.RLIMIT_CPU, int(limits["cpu_seconds"]), int(limits["cpu_seconds"]) + 5)
    cap(resource.RLIMIT_FSIZE, int(limits["file_mb"]) << 20)
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NOFILE, 1024)
    if limits.get("processes"):
        cap(resource.RLIMIT_NPROC, int(limits["processes"]))


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good (no supplementary groups); refuse to go on if root remains."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
        raise SystemExit("could not drop privileges")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise SystemExit("still able to become root after dropping privileges")


def prepare_course(config: dict) -> str:
    """A throw-away course in the scratch folder; sets HOME, IPYTHONDIR, TMPDIR there. Returns its root."""
    work = config["work_dir"]
    course = os.path.join(work, "course")
    release = config["release_dir"]
    assignment = config["assignment"]
    shutil.copytree(os.path.join(release, "source"), os.path.join(course, "source"))
    shutil.copyfile(
        os.path.join(release, "gradebook.db"), os.path.join(course, "gradebook.db")
    )
    submitted = os.path.join(course, "submitted", STUDENT, assignment)
    shutil.copytree(config["submission_dir"], submitted)
    for folder, _, files in os.walk(course):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    environment = {
        "HOME": os.path.join(work, "home"),
        "IPYTHONDIR": os.path.join(work, "home", ".ipython"),
        "TMPDIR": os.path.join(work, "tmp"),
        "JUPYTER_RUNTIME_DIR": os.path.join(work, "runtime"),
        "MPLCONFIGDIR": os.path.join(work, "home", ".config", "matplotlib"),
    }
    for path in environment.values():
        os.makedirs(path, exist_ok=True)
    os.environ.update(environment)
    return course


def _import_nbgrader_quickly() -> None:
    """Skip two imports nbgrader's autograde never uses: about 4 s of CPU per submission.

    * ``rfc3987_syntax`` builds a grammar at import (3 s) for jsonschema's "iri" format, which the
      notebook schema does not use; jsonschema imports it inside ``suppress(ImportError)``;
    * ``nbgrader/__init__`` imports its Jupyter server extensions (and jupyter_server) only to offer
      them to a notebook server.
    """
    sys.modules["rfc3987_syntax"] = None
    for name in ("assignment_list", "course_list", "validate_assignment", "formgrader"):
        module = types.ModuleType(f"nbgrader.server_extensions.{name}")
        module.load_jupyter_server_extension = lambda app: None
        sys.modules[module.__name__] = module


def run_autograde(config: dict, course: str, report: dict) -> None:
    """nbgrader's Autograde converter on the one submission, with the probe appended before Execute."""
    _mark("course ready")
    _import_nbgrader_quickly()
    import nbformat
    from nbclient.exceptions import DeadKernelError
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        Execute,
        IgnorePattern,
        LimitOutput,
        NbGraderPreprocessor,
        SaveAutoGrades,
    )
    from traitlets import Integer
    from traitlets.config import Config

    _mark("nbgrader imported")
    token = secrets.token_hex(8)
    probe_source = (
        "# Added by the grader (rnn-course grade): serves the grader's calls to your functions.\n"
        "import rnn_course.grading.probe as _rnn_course_probe\n"
        f"_rnn_course_probe.serve(globals(), {config['channel_dir']!r}, warm_up={bool(config.get('warm_up'))})\n"
    )

    class AppendProbe(NbGraderPreprocessor):
        """Append the probe cell (runs last, after every cell of the student's notebook)."""

        def preprocess(self, nb, resources):
            cell = nbformat.v4.new_code_cell(probe_source)
            cell.metadata["rnn_course_probe"] = token
            nb.cells.append(cell)
            return nb, resources

    class GradingExecute(Execute):
        """nbgrader's Execute; the probe cell gets ``probe_timeout``, outputs are capped per cell."""

        probe_timeout = Integer(600).tag(config=True)
        setup_timeout = Integer(120).tag(config=True)
        max_output_bytes = Integer(1 << 20).tag(config=True)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.timeout_func = self._timeout_for
            self._output_bytes: dict[int, int] = {}
            self._setup_cells: set[str] = set()

        def _timeout_for(self, cell):
            if cell.metadata.get("rnn_course_probe") == token:
                return self.probe_timeout
            if cell.get("id") in self._setup_cells:
                return max(self.timeout, self.setup_timeout)
            return self.timeout

        def preprocess(self, nb, resources=None, km=None):
            _FACTS["executed"] = True
            # The instructor's locked cells before the first answer cell (imports, seeding) run before any
            # student code could: they get a generous limit, so a slow or busy machine cannot fail them.
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader", {})
                if meta.get("solution"):
                    break
                if (
                    cell.cell_type == "code"
                    and meta.get("locked")
                    and not meta.get("grade")
                ):
                    self._setup_cells.add(cell.get("id"))
            _mark("sanitized")
            try:
                return super().preprocess(nb, resources, km=km)
            except DeadKernelError:
                _FACTS["dead_kernel"] = True
                raise

        def preprocess_cell(self, cell, resources, index):
            meta = cell.metadata.get("nbgrader", {})
            if (
                cell.cell_type == "code"
                and meta.get("grade")
                and not meta.get("solution")
            ):
                # A test cell: the grader runs the full tests itself, outside the sandbox. Run here, in the
                # student's kernel, they would prove nothing, cost time, and a function that cannot be
                # interrupted would stop the notebook before the grader could test any part.
                cell.outputs = [
                    nbformat.v4.new_output(
                        "stream",
                        name="stdout",
                        text="[run by the grader, outside the notebook]\n",
                    )
                ]
                return cell, resources
            result = super().preprocess_cell(cell, resources, index)
            _mark(f"cell {index} {_cell_name(cell)}")
            return result

        async def _async_handle_timeout(self, timeout, cell=None):
            _FACTS["timeouts"].append(_cell_name(cell))
            return await super()._async_handle_timeout(timeout, cell)

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            size = len(str(content.get("text", ""))) + sum(
                len(str(v)) for v in content.get("data", {}).values()
            )
            size += sum(len(str(line)) for line in content.get("traceback", []))
            used = self._output_bytes.get(cell_index, 0) + size
            self._output_bytes[cell_index] = used
            limit = self.max_output_bytes
            if used > limit:
                if used - size <= limit:
                    _FACTS["truncated_output"].append(cell_index)
                    outs.append(
                        nbformat.v4.new_output(
                            "stream",
                            name="stderr",
                            text=f"\n[the grader kept only the first {limit} bytes of output]\n",
                        )
                    )
                return None
            return super().output(outs, msg, display_id, cell_index)

    c = Config()
    c.CourseDirectory.root = course
    c.CourseDirectory.source_directory = "source"
    c.CourseDirectory.submitted_directory = "submitted"
    c.CourseDirectory.autograded_directory = "autograded"
    c.CourseDirectory.db_url = "sqlite:///" + os.path.join(course, "gradebook.db")
    c.CourseDirectory.assignment_id = config["assignment"]
    c.CourseDirectory.student_id = STUDENT
    c.OverwriteCells.add_missing_cells = True
    c.Autograde.autograde_preprocessors = [
        AppendProbe,
        GradingExecute,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]
    c.GradingExecute.timeout = int(config["cell_timeout"])
    c.GradingExecute.probe_timeout = int(config["submission_timeout"])
    c.GradingExecute.max_output_bytes = int(config["max_output_bytes"])
    c.GradingExecute.shutdown_kernel = "immediate"
    # After a timed-out cell is interrupted, how long to wait for the kernel to settle (nbclient's default
    # of 4 s fails a sound submission on a busy machine); a kernel that ignores the interrupt stops the run.
    c.GradingExecute.iopub_timeout = 15

    errors = report["errors"]

    class KeepErrors(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.ERROR and len(errors) < 20:
                errors.append(self.format(record)[-2000:])

    coursedir = CourseDirectory(config=c)
    app = Autograde(coursedir=coursedir, config=c)
    app.log.addHandler(KeepErrors())
    app.force = True
    app.create_student = True
    report["stage"] = "autograde"
    try:
        app.start()
        report["nbgrader_ok"] = True
    except Exception as error:  # noqa: BLE001 (NbGraderException and anything else: report it)
        report["nbgrader_ok"] = False
        errors.append(f"{type(error).__name__}: {error}"[-2000:])
    _mark("autograde done")
    report.update(
        timeouts=_FACTS["timeouts"],
        dead_kernel=_FACTS["dead_kernel"],
        truncated_output=_FACTS["truncated_output"],
        executed=_FACTS["executed"],
        seconds=_FACTS["seconds"],
    )
    _read_outputs(
        os.path.join(course, "autograded", STUDENT, config["assignment"]), token, report
    )


def _cell_name(cell) -> str:
    if cell is None:
        return "?"
    return str(
        cell.metadata.get("nbgrader", {}).get("grade_id") or cell.get("id") or "?"
    )


def _read_outputs(folder: str, token: str, report: dict) -> None:
    """What the executed notebook shows: errors per cell, memory errors, whether the probe cell ran."""
    import nbformat

    report["memory_errors"] = []
    report["cell_errors"] = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith(".ipynb"):
            continue
        nb = nbformat.read(os.path.join(folder, name), as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            for output in cell.get("outputs", []):
                if output.get("output_type") != "error":
                    continue
                text = f"{output.get('ename', '')}: {output.get('evalue', '')}"
                if cell.metadata.get("rnn_course_probe") == token:
                    report["probe_error"] = text[:500]
                    continue
                report["cell_errors"].append(
                    {"cell": _cell_name(cell), "error": text[:500]}
                )
                lowered = text.lower()
                if (
                    "memoryerror" in lowered
                    or "out of memory" in lowered
                    or "can't allocate memory" in lowered
                    or "cannot allocate memory" in lowered
                ):
                    report["memory_errors"].append(_cell_name(cell))


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    report_fd = int(config["report_fd"])
    os.set_inheritable(
        report_fd, False
    )  # the kernel must not inherit the report's pipe
    report = {"stage": "start", "errors": [], "nbgrader_ok": False}
    try:
        limit_resources(config["limits"], strict=bool(config.get("strict")))
        if config.get("uid") is not None:
            drop_privileges(int(config["uid"]), int(config["gid"]))
        report["stage"] = "prepare"
        course = prepare_course(config)
        run_autograde(config, course, report)
    except BaseException as error:  # noqa: BLE001 (the report must go out whatever happened)
        report["errors"].append(
            "".join(traceback.format_exception_only(type(error), error))[-2000:]
        )
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    report["cpu_seconds"] = {
        "nbgrader": round(own.ru_utime + own.ru_stime, 2),
        "kernel": round(children.ru_utime + children.ru_stime, 2),
    }
    data = json.dumps(report).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(report_fd, view) :]
    os.close(report_fd)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
