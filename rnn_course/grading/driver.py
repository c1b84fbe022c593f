"""Inside the sandbox: the execution pass of nbgrader's ``autograde`` on one
submission, with the probe cell appended.

Run as a script (``python -I driver.py CONFIG_JSON``), not as ``-m rnn_course...``:
importing the ``rnn_course`` package would import torch, which this process does not
need (the kernel does). Steps:

1. set the resource limits, then, when started as root inside bubblewrap, drop to the
   sandbox's unprivileged uid (as root, ``RLIMIT_NPROC`` would not be enforced); started
   by an ordinary user, the driver is already unprivileged, in a user namespace of its
   own, where the kernel counts ``RLIMIT_NPROC`` for this sandbox alone;
2. copy the submission into the private scratch folder: the grader has run nbgrader's
   sanitizing pass on it already (:mod:`.sanitize`: outputs cleared, test and locked
   cells as released, deleted ones put back, the release's kernelspec and files), so
   this process imports no nbgrader, no gradebook and no exporters, only ``nbformat``
   and ``nbclient`` (about 0.3 s of CPU instead of 0.9 s for each submission);
3. execute it as nbgrader's ``Execute`` preprocessor does (``nbclient``, a per-cell
   timeout that interrupts, errors allowed, ``NBGRADER_EXECUTION=autograde``) with the
   probe cell appended last (it serves the grader, see :mod:`probe`); that cell gets
   the whole submission's time, the instructor's setup cells before the first answer a
   generous one, each cell's output is capped, timeouts and a dead kernel are recorded,
   and the test cells do not run in the student's kernel: the grader runs them in its
   own process, where they cannot be faked;
4. write a short report (JSON) on the file descriptor the grader passed, and exit.

Everything in the report is advisory: the student's code runs with the same uid and
could forge it. It only names what went wrong (timeouts, a dead kernel, memory); scores
come from the grader's tests.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import secrets
import shutil
import sys
import time
import traceback

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

KERNEL_START_WAIT = 30.0
"""Unconfined runs: the longest a kernel start waits for another submission's (seconds)."""


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


def prepare_folder(config: dict) -> str:
    """The notebook's folder in the scratch folder, where the kernel runs; sets HOME,
    IPYTHONDIR, TMPDIR there. Returns the folder.

    The grader prepared the submission (:mod:`.sanitize`): the sanitized notebook and the
    files beside it, as ``autograded/<student>/<assignment>/`` of nbgrader's autograde."""
    work = config["work_dir"]
    folder = os.path.join(work, "course", "autograded", STUDENT, config["assignment"])
    shutil.copytree(config["submission_dir"], folder)
    for parent, _, files in os.walk(os.path.join(work, "course")):
        os.chmod(parent, 0o755)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o644)
    folders = {
        "HOME": os.path.join(work, "home"),
        "IPYTHONDIR": os.path.join(work, "home", ".ipython"),
        "TMPDIR": os.path.join(work, "tmp"),
        "JUPYTER_RUNTIME_DIR": os.path.join(work, "runtime"),
        "MPLCONFIGDIR": os.path.join(work, "home", ".config", "matplotlib"),
    }
    for path in folders.values():
        os.makedirs(path, exist_ok=True)
    os.environ.update(folders)
    os.environ["NBGRADER_EXECUTION"] = "autograde"  # (as nbgrader's autograde sets it)
    return folder


def run_notebook(config: dict, folder: str, report: dict) -> None:
    """Execute the notebook as nbgrader's autograde does, with the probe cell appended."""
    _mark("folder ready")
    sys.modules["rfc3987_syntax"] = None  # (see rnn_course.grading.skip_slow_imports)
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    _mark("nbclient imported")
    path = os.path.join(folder, config["notebook"])
    nb = nbformat.read(path, as_version=4)
    token = secrets.token_hex(8)
    probe = nbformat.v4.new_code_cell(
        "# Added by the grader (rnn-course grade): serves the grader's calls to your "
        "functions.\n"
        "import rnn_course.grading.probe as _rnn_course_probe\n"
        f"_rnn_course_probe.serve(globals(), {config['channel_dir']!r}, "
        f"warm_up={bool(config.get('warm_up'))})\n"
    )
    probe.metadata["rnn_course_probe"] = token
    nb.cells.append(probe)

    class GradingClient(NotebookClient):
        """nbgrader's ``Execute`` (nbgrader/preprocessors/execute.py): interrupt a cell at
        its timeout, go on after errors, record an error the kernel did not show; and
        ours: the probe cell gets the whole submission's time, the instructor's setup
        cells before the first answer a generous one, each cell's output is capped,
        timeouts and a dead kernel are recorded, and the test cells do not run in the
        student's kernel (the grader runs them in its own process, where they cannot
        be faked)."""

        def __init__(self, nb, **kwargs):
            super().__init__(nb, **kwargs)
            self.timeout_func = self._timeout_for
            self.on_cell_executed = _record_unshown_error
            self._output_bytes: dict[int, int] = {}
            self._start_lock: int | None = None  # see take_kernel_start_lock
            # The instructor's locked cells before the first answer cell (imports,
            # seeding) run before any student code could: they get a generous limit,
            # so a slow or busy machine cannot fail them.
            self._setup_cells: set[str] = set()
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

        async def async_start_new_kernel(self, **kwargs):
            self._start_lock = take_kernel_start_lock(config.get("kernel_start_lock"))
            await super().async_start_new_kernel(**kwargs)

        async def async_start_new_kernel_client(self):
            try:
                return await super().async_start_new_kernel_client()
            finally:  # the kernel answered (its ports are bound), or it failed
                if self._start_lock is not None:
                    os.close(self._start_lock)
                    self._start_lock = None

        def _timeout_for(self, cell):
            if cell.metadata.get("rnn_course_probe") == token:
                return int(config["submission_timeout"])
            if cell.get("id") in self._setup_cells:
                return max(self.timeout, 120)
            return self.timeout

        async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
            meta = cell.metadata.get("nbgrader", {})
            if (
                cell.cell_type == "code"
                and meta.get("grade")
                and not meta.get("solution")
            ):
                # A test cell: the grader runs the full tests itself, outside the
                # sandbox. Run here, in the student's kernel, they would prove nothing,
                # cost time, and a function that cannot be interrupted would stop the
                # notebook before the grader could test any part.
                cell.outputs = [
                    nbformat.v4.new_output(
                        "stream",
                        name="stdout",
                        text="[run by the grader, outside the notebook]\n",
                    )
                ]
                return cell
            result = await super().async_execute_cell(cell, cell_index, *args, **kwargs)
            _mark(f"cell {cell_index} {_cell_name(cell)}")
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
            limit = int(config["max_output_bytes"])
            if used > limit:
                if used - size <= limit:
                    _FACTS["truncated_output"].append(cell_index)
                    outs.append(
                        nbformat.v4.new_output(
                            "stream",
                            name="stderr",
                            text=f"\n[the grader kept only the first {limit} bytes "
                            "of output]\n",
                        )
                    )
                return None
            return super().output(outs, msg, display_id, cell_index)

    client = GradingClient(
        nb,
        resources={"metadata": {"path": folder}},
        timeout=int(config["cell_timeout"]),
        # nbgrader's Execute:
        interrupt_on_timeout=True,
        allow_errors=True,
        raise_on_iopub_timeout=True,
        error_on_timeout={
            "ename": "CellTimeoutError",
            "evalue": "",
            "traceback": [
                "\x1b[0;31mCellTimeoutError\x1b[0m: No reply from kernel before timeout"
            ],
        },
        shutdown_kernel="immediate",
        # After a timed-out cell is interrupted, how long to wait for the kernel to
        # settle (nbclient's default of 4 s fails a sound submission on a busy
        # machine); a kernel that ignores the interrupt stops the run.
        iopub_timeout=15,
    )
    report["stage"] = "execute"
    _FACTS["executed"] = True
    _mark("kernel starting")
    try:
        client.execute()
        report["nbgrader_ok"] = True
    except DeadKernelError as error:
        _FACTS["dead_kernel"] = True
        report["errors"].append(f"{type(error).__name__}: {error}"[-2000:])
    except Exception as error:  # noqa: BLE001 (a kernel that ignored an interrupt, ...)
        report["errors"].append(f"{type(error).__name__}: {error}"[-2000:])
    _mark("execution done")
    report.update(
        timeouts=_FACTS["timeouts"],
        dead_kernel=_FACTS["dead_kernel"],
        truncated_output=_FACTS["truncated_output"],
        executed=_FACTS["executed"],
        seconds=_FACTS["seconds"],
    )
    _read_outputs(nb, token, report)


def take_kernel_start_lock(path: str | None) -> int | None:
    """Unconfined runs (``--no-sandbox``) only: wait until no other submission's kernel
    is starting, and hold the lock (a file descriptor) until this one has answered.

    jupyter_client picks a kernel's TCP ports by asking the system for free ones, then
    lets them go for the kernel to bind a moment later; a kernel that another worker
    starts at that moment can be given the same ports, and one of the two dies ("Address
    already in use"), a wrong "kernel died" row. In a sandbox each kernel has a network
    namespace of its own, so the grader passes no ``path`` there. Returns None, and
    goes on unlocked, when the file cannot be used or the wait passes
    :data:`KERNEL_START_WAIT`."""
    if not path:
        return None
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        return None
    deadline = time.monotonic() + KERNEL_START_WAIT
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(handle)
                return None
            time.sleep(0.05)


def _record_unshown_error(cell, cell_index, execute_reply) -> None:
    """nbgrader's ``Execute.on_cell_executed``: an error the kernel replied with but did
    not show (a timeout) becomes an error output of the cell."""
    content = execute_reply["content"]
    if content["status"] != "error":
        return
    for output in cell.outputs:
        if output.output_type == "error" and output.ename == content["ename"]:
            return
    import nbformat

    cell.outputs.append(
        nbformat.v4.new_output(
            "error",
            ename=content["ename"],
            evalue=content["evalue"],
            traceback=content["traceback"]
            or ["ERROR: An error occurred while showtraceback was disabled"],
        )
    )


def _cell_name(cell) -> str:
    if cell is None:
        return "?"
    return str(
        cell.metadata.get("nbgrader", {}).get("grade_id") or cell.get("id") or "?"
    )


def _read_outputs(nb, token: str, report: dict) -> None:
    """What the executed notebook shows: errors per cell, memory errors, whether the probe cell ran."""
    report["memory_errors"] = []
    report["cell_errors"] = []
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
        folder = prepare_folder(config)
        run_notebook(config, folder, report)
    except BaseException as error:  # noqa: BLE001 (the report must go out whatever happened)
        report["errors"].append(
            "".join(traceback.format_exception_only(type(error), error))[-2000:]
        )
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    report["cpu_seconds"] = {
        "driver": round(own.ru_utime + own.ru_stime, 2),
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
