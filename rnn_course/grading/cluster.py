"""The Dask executor of ``rnn-course grade --scheduler ADDRESS``: a task a submission.

The command's process (the client) stays the only writer of the gradebook, the grade
table, the feedback and the results cache; this module only moves work and rows::

    client (this module, in the command)        Dask worker, on any host
    ------------------------------------        ------------------------------------
    release folder, source notebook (bytes) ──> written once per worker (by digest)
    a task a submission, its files (bytes)  ──> claims an attempt, checks its sandbox,
                                                leases a uid of its own host, grades
    row (plain data)                        <── :func:`.worker.grade_submission`

A worker may be on another host, so a task carries everything as data, and the worker
works out its own confinement (its Python, its package, its temporary folders). A worker
that dies mid-task costs the submission one retry: each attempt is recorded on the
scheduler (an event topic per submission) before the student's code starts, and a third
start is refused, whatever the scheduler's ``allowed-failures`` setting; the row then
says "grader error" and why. ``distributed`` is imported only here, only when used.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from . import report, skip_slow_imports

skip_slow_imports()  # a worker unpickles the task function, importing this module first

ATTEMPTS = 2
"""Starts a submission may have: the first, and one retry after its worker died."""
MAX_SUBMITS = 4
"""Tasks sent for one submission, counting those lost before they started."""
CONNECT_TIMEOUT = 30.0
"""Seconds to reach the scheduler before the command gives up."""
_WORKER: dict = {}  # the package's digest; on a worker: scratch, releases, uids


# --------------------------------------------------------------------------------------
# The client side: in the command's process
# --------------------------------------------------------------------------------------


def release_data(config: dict) -> dict:
    """What every task of a run needs besides its submission, as plain data: the
    prepared release folder's files, the source notebook (its tests run in the worker's
    grading process, outside the sandbox), the settings and the command host's
    private folders. ``digest`` names the files, so a worker writes them once."""
    release_dir = Path(config["release_dir"])
    files = {
        path.relative_to(release_dir).as_posix(): path.read_bytes()
        for path in sorted(release_dir.rglob("*"))
        if path.is_file()
    }
    source = Path(config["source_notebook"])
    digest = hashlib.sha256()
    for name, data in [
        *files.items(),
        (f"solution/{source.name}", source.read_bytes()),
    ]:
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return {
        "digest": digest.hexdigest(),
        "release": files,
        "source_name": source.name,
        "source": source.read_bytes(),
        "assignment": config["assignment"],
        "package": package_digest(),
        "settings": dict(config["settings"]),
        "hidden": list(config["hidden"]),
        "secrets": list(config["secrets"]),
    }


def package_digest() -> str:
    """A hash of this ``rnn_course`` package's Python files: a worker grades only with
    the same code as the command (the same tests, the same rows)."""
    if "package" not in _WORKER:
        package = Path(__file__).resolve().parents[1]
        digest = hashlib.sha256()
        for path in sorted(package.rglob("*.py")):
            digest.update(f"{path.relative_to(package).as_posix()}\0".encode())
            digest.update(path.read_bytes())
        _WORKER["package"] = digest.hexdigest()
    return _WORKER["package"]


def _identity(data):
    """A task whose result is ``data``: kept by the scheduler's task graph, so it is
    computed again if the worker holding it dies (scattered data would be lost)."""
    return data


def error_row(job: dict, assignment: str, message: str) -> dict:
    """A "grader error" row, shaped as :mod:`.command` shapes its own."""
    return report.Row(
        job["student"],
        assignment,
        report.GRADER_ERROR,
        message,
        None,
        0.0,
        [],
        job["fingerprint"],
    ).to_dict()


def died_twice_message(starts: list[dict]) -> str:
    """Why a submission was given up, naming where each attempt ran."""
    where = "; then ".join(
        f"on host {start.get('host')} (worker {start.get('worker')})"
        for start in starts
    )
    return (
        f"the Dask worker grading this submission died twice ({where}); it was not "
        "graded: look at those workers' logs, then grade again"
    )


SCHEDULER_LOST_MESSAGE = (
    "the connection to the Dask scheduler was lost before this submission was graded: "
    "grade again when the scheduler is back (rows graded before are kept and reused)"
)


def _cancel_reason(future) -> str:
    """Why Dask cancelled ``future`` ("scheduler-connection-lost" when the client lost
    the scheduler; the executor's own cancels say "unknown")."""
    from distributed.client import FutureCancelledError

    try:
        future.result(timeout=10)
    except FutureCancelledError as error:
        return error.reason
    except Exception:  # noqa: BLE001 (any other answer: not a lost scheduler)
        pass
    return "unknown"


class DaskExecutor:
    """Sends each submission to a Dask cluster; looks like the local process pool to
    :func:`.command._run_jobs`: ``submit(grade_submission, config, job)`` returns a
    :class:`concurrent.futures.Future` that ends with the row as a dict."""

    def __init__(self, address: str | None = None, scheduler_file: str | None = None):
        from distributed import Client

        if not address and not scheduler_file:
            raise ValueError("a scheduler address or a scheduler file is needed")
        self.client = Client(
            address,
            scheduler_file=scheduler_file,
            timeout=CONNECT_TIMEOUT,
            set_as_default=False,
        )
        self.run = uuid.uuid4().hex[:12]
        self._release = None  # the release data's future, made at the first submit
        self._config: dict | None = None
        self._assignment = ""
        self._futures: set = set()  # held: Dask forgets a task nobody holds
        self._lock = threading.Lock()

    def topic(self, student: str) -> str:
        """The scheduler's event topic where a submission's attempts are recorded."""
        return f"rnn-course-grade-{self.run}-{student}"

    def starts(self, student: str) -> list[dict]:
        """The attempts that started grading ``student`` (host, worker, pid)."""
        return [message for _, message in self.client.get_events(self.topic(student))]

    def submit(self, function, config: dict, job: dict) -> concurrent.futures.Future:
        from .command import _grade_submission
        from .worker import grade_submission

        if function not in (grade_submission, _grade_submission):
            raise ValueError("the Dask executor runs grade_submission only")
        if self._config != config:
            data = release_data(config)
            self._release = self.client.submit(
                _identity, data, key=f"rnn-course-release-{self.run}-{data['digest']}"
            )
            self._config, self._assignment = config, config["assignment"]
        shipped = {key: value for key, value in job.items() if key != "uid"}
        shipped["files"] = {
            name: Path(path).read_bytes() for name, path in job["files"].items()
        }
        result: concurrent.futures.Future = concurrent.futures.Future()
        self._send(shipped, result, 1)
        return result

    def _send(self, job: dict, result: concurrent.futures.Future, number: int) -> None:
        future = self.client.submit(
            grade_task,
            self._release,
            job,
            self.topic(job["student"]),
            key=f"rnn-course-grade-{self.run}-{job['student']}-{number}",
            pure=False,
            retries=0,
        )
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(
            lambda future: self._finished(future, job, result, number)
        )

    def _finished(self, future, job: dict, result, number: int) -> None:
        """Runs in Dask's callback thread when a task ends: the row, a retry, or why
        there is none."""
        from distributed import KilledWorker

        with self._lock:
            self._futures.discard(future)
        if result.done():
            return
        try:
            if future.status == "finished":
                result.set_result(future.result())
            elif future.status == "cancelled":
                # A row, never a cancelled result: concurrent.futures.as_completed is
                # not woken by Future.cancel() and would wait for ever.
                reason = _cancel_reason(future)
                message = (
                    SCHEDULER_LOST_MESSAGE
                    if reason == "scheduler-connection-lost"
                    else f"Dask cancelled this submission's task (reason: {reason}); "
                    "it was not graded: grade again"
                )
                result.set_result(error_row(job, self._assignment, message))
            elif isinstance(future.exception(), KilledWorker):
                starts = self.starts(job["student"])
                if len(starts) < ATTEMPTS and number < MAX_SUBMITS:
                    self._send(job, result, number + 1)  # lost before its second start
                else:
                    message = died_twice_message(starts)
                    result.set_result(error_row(job, self._assignment, message))
            else:
                result.set_exception(future.exception())
        except Exception as error:  # noqa: BLE001 (becomes the row's grader error)
            if not result.done():
                result.set_exception(error)

    def shutdown(self, cancel_futures: bool = True) -> None:
        with self._lock:
            futures = list(self._futures)
        if cancel_futures and futures:
            self.client.cancel(futures)
        self.client.close()


def connect(address: str | None, scheduler_file: str | None) -> DaskExecutor:
    """The executor, or a ValueError that says which scheduler could not be reached."""
    try:
        return DaskExecutor(address, scheduler_file)
    except ImportError as error:
        raise ValueError(
            f"--scheduler needs the `distributed` package ({error}): pip install "
            "distributed, or grade without --scheduler"
        ) from None
    except (OSError, TimeoutError) as error:
        where = address or f"the scheduler file {scheduler_file}"
        raise ValueError(
            f"cannot reach the Dask scheduler at {where}: {error}"
        ) from None


def enforcement(sandbox: bool) -> list[str]:
    """The run's summary of limits when the work is done on the cluster's hosts."""
    if not sandbox:
        return [
            "confinement: none (--no-sandbox) on every Dask worker: student code runs "
            "with the rights of the worker's user"
        ]
    return [
        "confinement: each Dask worker sandboxes on its own host, with what that host "
        "enforces (its row's log names the host); a host that cannot sandbox refuses "
        "its submissions"
    ]


# --------------------------------------------------------------------------------------
# The worker side: in a Dask worker process, on any host
# --------------------------------------------------------------------------------------


def grade_task(release: dict, job: dict, topic: str) -> dict:
    """The Dask task: claim an attempt on the scheduler, then grade here; returns the
    row as a dict."""
    from distributed import get_client, get_worker

    client = get_client()
    starts = [message for _, message in client.get_events(topic)]
    if len(starts) >= ATTEMPTS:
        return error_row(job, release["assignment"], died_twice_message(starts))
    here = {"host": socket.gethostname(), "worker": get_worker().address}
    client.log_event(topic, {**here, "pid": os.getpid()})  # synchronous: recorded now
    return grade_here(release, job, _sandbox_threads(client, get_worker()))


def grade_here(release: dict, job: dict, threads: int = 1) -> dict:
    """Grade one submission in this process, which may be on any host: this host's
    sandbox check, scratch folder, confinement and uids."""
    host = socket.gethostname()
    settings = {**release["settings"], "threads": threads}
    use_bwrap = settings["use_bwrap"]
    if release.get("package", package_digest()) != package_digest():
        return error_row(
            job,
            release["assignment"],
            f"the Dask worker on host {host} has another version of the rnn_course "
            f"package ({Path(__file__).resolve().parents[1]}) than the command; "
            "install the same one on every worker",
        )
    if use_bwrap:
        problem = _sandbox_problem()
        if problem:
            return error_row(
                job,
                release["assignment"],
                f"the Dask worker on host {host} cannot sandbox student code, so it "
                f"refused this submission: {problem}",
            )
    paths = _prepared(release, use_bwrap)
    incoming = _scratch() / f"incoming-{uuid.uuid4().hex}"
    incoming.mkdir()
    try:
        files = {}
        for index, (name, data) in enumerate(job["files"].items()):
            path = incoming / str(index)
            path.write_bytes(data)
            files[name] = str(path)
        local = {**job, "files": files, "uid": _lease(use_bwrap)}
        config = {
            "source_notebook": str(paths["source"]),
            "release_dir": str(paths["release"]),
            "scratch": str(_scratch()),
            "assignment": release["assignment"],
            "settings": settings,
            **_confinement(release),
        }
        from .worker import grade_submission

        row = grade_submission(config, local)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    where = f"graded on host {host} by Dask worker process {os.getpid()}\n"
    row["log"] = where + row.get("log", "")
    return row


def _scratch() -> Path:
    """This worker process's private scratch folder (removed when it exits)."""
    if "scratch" not in _WORKER:
        folder = Path(tempfile.mkdtemp(prefix="rnn-course-dask-"))
        atexit.register(shutil.rmtree, folder, True)
        _WORKER["scratch"] = folder
    return _WORKER["scratch"]


def _prepared(release: dict, use_bwrap: bool) -> dict:
    """The release folder and the source notebook on this host, written once per
    worker process and release (by digest); the worker's imports, done once."""
    if _WORKER.get("initialised") != use_bwrap:
        from .worker import init_worker

        init_worker(use_bwrap)
        _WORKER["initialised"] = use_bwrap
    releases = _WORKER.setdefault("releases", {})
    digest = release["digest"]
    if digest not in releases:
        folder = _scratch() / f"release-{digest[:16]}"
        written = folder.with_name(folder.name + ".writing")
        shutil.rmtree(written, ignore_errors=True)
        for name, data in release["release"].items():
            target = written / "release" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (written / "solution").mkdir(parents=True)
        (written / "solution" / release["source_name"]).write_bytes(release["source"])
        for path in [written / "release", *(written / "release").rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)  # as prepare_release does
        os.replace(written, folder)
        releases[digest] = {
            "folder": folder,
            "release": folder / "release",
            "source": folder / "solution" / release["source_name"],
        }
    return releases[digest]


def _confinement(release: dict) -> dict:
    """The command host's private folders (they may be shared, e.g. an NFS home), plus
    this host's own: its home, temporary folders, this worker's scratch; and, shown
    again, this worker's own Python and package."""
    package = Path(__file__).resolve().parents[1]
    project = package.parent
    hidden = [*release["hidden"], str(Path.home()), os.getcwd(), tempfile.gettempdir()]
    secrets = [*release["secrets"], str(_scratch())]
    hidden.append(str(_scratch()))
    if (project / "pyproject.toml").exists():  # an editable install: a source checkout
        hidden.append(str(project))
        secrets += [str(project / "solutions"), str(project / "gradebook.db")]
    bind_back = {
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        str(package),
    }
    return {
        "hidden": sorted(set(hidden)),
        "secrets": sorted(set(secrets)),
        "bind_back": sorted(bind_back),
    }


def _sandbox_problem() -> str | None:
    """Why this host cannot sandbox (checked once per worker process), or None."""
    if "sandbox_problem" not in _WORKER:
        from .sandbox import SandboxError, check_sandbox_available

        try:
            check_sandbox_available()
            _WORKER["sandbox_problem"] = None
        except SandboxError as error:
            _WORKER["sandbox_problem"] = str(error)
    return _WORKER["sandbox_problem"]


def _lease(use_bwrap: bool) -> int | None:
    """A uid of this host for the submission (as root), or None: rootless (a user namespace
    of its own instead) or unconfined."""
    from .confinement import leases_uids

    return _uids().lease() if leases_uids(use_bwrap) else None


def _uids():
    """This host's uid pool, one per worker process (never shared across hosts)."""
    if "uids" not in _WORKER:
        from .confinement import UidPool

        _WORKER["uids"] = UidPool()
    return _WORKER["uids"]


def _sandbox_threads(client, worker) -> int:
    """CPU threads for one sandbox: this host's cores shared by the Dask threads of all
    workers on it (as the local pool shares them among its workers), at most 8."""
    if "threads" not in _WORKER or time.monotonic() > _WORKER["threads"][1]:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        host = worker.address.rsplit(":", 1)[0].split("://")[-1]
        busy = sum(info["nthreads"] for info in workers if info["host"] == host)
        threads = max(1, min(8, (os.cpu_count() or 1) // max(1, busy)))
        _WORKER["threads"] = (threads, time.monotonic() + 60.0)
    return _WORKER["threads"][0]
