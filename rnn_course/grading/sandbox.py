"""One submission's sandbox: bubblewrap around the notebook's run + the student's kernel, and the channel to its probe.

The whole per-submission run (the execution pass of nbgrader's autograde in :mod:`.driver`, on the
notebook the grader sanitized with nbgrader (:mod:`.sanitize`), and the kernel it starts) runs in
ONE bubblewrap sandbox, so the two talk TCP over the sandbox's own loopback and a dead kernel is
noticed at once (with IPC transport it is not, see ``shared/research/toolchain.md``). Inside:

* an empty root with only the system folders of the host (/usr, /etc, /lib*, /bin, /sbin, /sys; see
  :data:`SYSTEM_PATHS`) read-only, and any of the grader's private folders that lie inside them
  emptied; then read-only binds of only what is needed: the Python installation and virtual
  environment, the ``rnn_course`` package, this submission's files (the sanitized notebook, the files
  beside it), and the channel folder. Homes, /tmp, /srv, /opt, /var, other
  checkouts of the course: absent (an allow-list, not a list of what to hide);
* a private, size-capped tmpfs as the only writable place besides /tmp and /dev/shm (also capped);
* new network (loopback only), PID, IPC and UTS namespaces; ``--die-with-parent``, ``--new-session``;
* the driver drops from root to an **unprivileged uid of this submission's own** (used by no other
  submission of the run, so neither ``RLIMIT_NPROC`` nor any per-uid kernel state is shared) after
  setting limits on memory, CPU time, processes, file size; a **system-call filter** and a **cgroup**
  for the whole submission come from :mod:`.confinement`;
* a wall-clock limit: the grader kills the sandbox (and with it the PID namespace) at the deadline;
* a clean environment (PATH, LANG, ...); the driver adds ``NBGRADER_EXECUTION`` as nbgrader does.

The channel is two FIFOs in a folder owned by root and bound read-only, created and opened by the
grader *before* the sandbox starts, so the student cannot swap them for links to other files. The
grader opens both ends read-write and non-blocking: it never blocks on them and never gets EOF; it
watches the sandbox process instead.

With ``use_bwrap=False`` (``--no-sandbox``) the same driver runs as a plain subprocess of the grader,
with the memory, CPU-time and file-size limits but no confinement at all; its kernels share the
host's network, so they start one at a time (:func:`kernel_start_lock_path`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import confinement

if (
    TYPE_CHECKING
):  # the methods import it themselves: it imports torch, which the main process
    from . import protocol  # (that only needs SandboxSettings and the check) never does
from .confinement import UID_BASE, processes_of  # noqa: F401 (re-exported for the tests)

SANDBOX_ROOT = "/tmp/grading"
"""Where the sandbox sees its inputs (read-only), its channel and its writable scratch folder."""
_DRIVER = Path(__file__).with_name("driver.py")
CALL_GRACE = 20.0
"""Seconds the grader waits past a call's own time limit before it kills the sandbox."""


class SandboxError(RuntimeError):
    """The sandbox cannot be set up (bubblewrap missing, not root, an unsafe layout...)."""


class SandboxEnded(RuntimeError):
    """The sandbox stopped (its kernel died, it was killed, or it broke the protocol)."""


class SandboxTimeout(RuntimeError):
    """The submission's wall-clock limit, or a call's own limit, ran out."""


@dataclass
class SandboxSettings:
    """Limits of one submission's run. Times in seconds, sizes in MiB."""

    cell_timeout: float = (
        30.0  # per notebook cell in nbgrader, and per test cell of the grader
    )
    submission_timeout: float = (
        300.0  # wall clock for the whole submission, kernel start included
    )
    memory_mb: int = (
        4096  # address space per process (RLIMIT_AS); torch + a kernel use about 1.5 GB
    )
    processes: int = 512  # tasks (threads count) of the sandbox's uid
    file_mb: int = 64  # largest file a process may write
    scratch_mb: int = 512  # the writable scratch folder (tmpfs)
    tmp_mb: int = 64  # /tmp and /dev/shm inside the sandbox (tmpfs each)
    max_output_bytes: int = 1 << 20  # output kept per notebook cell
    threads: int = 1  # CPU threads for torch in the kernel (OMP_NUM_THREADS): cores / workers, at most 8
    warm_up: bool = False  # the tests use the meta device: the probe imports torch._dynamo before "ready"
    use_bwrap: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def bwrap_path() -> str | None:
    """The bubblewrap executable, or None where it is not installed (e.g. macOS)."""
    return shutil.which("bwrap")


def check_sandbox_available() -> None:
    """Raise :class:`SandboxError` with a clear message when sandboxed grading cannot run here.

    As root, each sandbox starts as root and drops to a uid of its own; as an ordinary user, each
    sandbox gets a user namespace of its own (bubblewrap ``--unshare-user``), which the machine must
    allow: where it does not, the message names the cause and the fix.
    """
    if bwrap_path() is None:
        raise SandboxError(
            "bubblewrap (bwrap) is not installed, so student code cannot be confined. Install it "
            "(Debian/Ubuntu: apt-get install bubblewrap) or, knowing that student code will then run "
            "with your rights, pass --no-sandbox."
        )
    try:
        confinement.seccomp_program()
    except confinement.ConfinementError as error:
        raise SandboxError(
            f"{error}; or, knowing that student code will then run with your rights, pass "
            "--no-sandbox."
        ) from None
    trial = subprocess.run(
        [bwrap_path(), *_trial_arguments(), "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if trial.returncode == 0:
        return
    said = trial.stderr.strip()[:300]
    if confinement.rootless():
        cause, fix = confinement.user_namespace_blocker(said=said)
        raise SandboxError(
            f"as an ordinary user, each sandbox needs a user namespace of its own, and this machine "
            f"refuses one (bubblewrap said: {said}). Cause: {cause}. Fix: {fix}. Or grade as root, "
            "or, knowing that student code will then run with your rights, pass --no-sandbox."
        )
    raise SandboxError(
        f"bubblewrap is installed but cannot make a sandbox here ({said}); in a "
        "container it needs the right to create namespaces and mounts. Fix that, or pass --no-sandbox."
    )


def _trial_arguments() -> list[str]:
    """A minimal sandbox with the namespaces of the real ones (a user namespace when rootless)."""
    user = ["--unshare-user", "--disable-userns"] if confinement.rootless() else []
    return [
        *user,
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
    ]


# ---------------------------------------------------------------------------------------------
# The bubblewrap command line
# ---------------------------------------------------------------------------------------------

SYSTEM_PATHS = (
    "/usr",
    "/etc",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/sys",
)
"""The only parts of the host's file system a sandbox sees, read-only (besides what is bound back): the
system, never users' files. Anything else (other checkouts of the course, /srv, /opt, /work, /var, /mnt...)
is simply absent, so a copy of the solutions the grader does not know about cannot leak either."""


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def bwrap_mounts(
    hidden: list[str],
    bind_back: list[str],
    secrets: list[str],
    settings: SandboxSettings,
    system: tuple[str, ...] = SYSTEM_PATHS,
) -> list[str]:
    """The mount arguments: an empty root, the ``system`` folders read-only (``hidden`` folders inside them
    emptied), and ``bind_back`` (the Python installation, the virtual environment, the package) read-only.

    Refuses (SandboxError) a ``bind_back`` folder that would expose one of ``secrets`` (e.g. a virtual
    environment that contains the course's solutions or gradebook).
    """
    arguments = []
    shown: list[str] = []  # host folders visible at the same path inside
    for path in system:
        if os.path.islink(path):
            arguments += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            arguments += ["--ro-bind", path, path]
            shown.append(os.path.realpath(path))
    arguments += [
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--size",
        str(settings.tmp_mb << 20),
        "--perms",
        "1777",
        "--tmpfs",
        "/dev/shm",
        "--size",
        str(settings.tmp_mb << 20),
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
    ]
    # private folders that would be visible through a system folder: emptied (each only once)
    hidden = sorted(
        {os.path.realpath(path) for path in hidden if path and os.path.isdir(path)},
        key=lambda path: (path.count("/"), path),
    )
    hidden = [
        path
        for path in hidden
        if any(_inside(path, folder) and path != folder for folder in shown)
    ]
    hidden = [
        path
        for index, path in enumerate(hidden)
        if not any(_inside(path, other) for other in hidden[:index])
    ]
    for path in hidden:
        arguments += ["--tmpfs", path]

    def visible(path: str) -> bool:
        real = os.path.realpath(path)
        return any(_inside(real, folder) for folder in shown) and not any(
            _inside(real, folder) for folder in hidden
        )

    secrets = [os.path.realpath(path) for path in secrets if path]
    targets: list[tuple[str, str]] = []  # (source, target)
    for path in bind_back:
        if not path or not os.path.exists(path):
            continue
        for source, target in {
            (os.path.realpath(path), os.path.realpath(path)),
            (os.path.realpath(path), os.path.abspath(path)),
        }:
            for secret in secrets:
                if _inside(secret, target) or _inside(secret, source):
                    raise SandboxError(
                        f"{path} would show {secret} to student code: keep the virtual "
                        "environment and the package outside the course's private folders"
                    )
            if not visible(target) and (source, target) not in targets:
                targets.append((source, target))
    targets.sort(key=lambda pair: (pair[1].count("/"), pair[1]))
    made = {"/tmp", "/dev", "/proc"}  # mount points made above: never made again
    for source, target in targets:
        if any(_inside(target, other) and target != other for _, other in targets):
            continue  # shown with a folder above it
        # the folders leading to it: made (bwrap would make them 0700, closed to the sandbox's uid)
        parts = Path(target).parts[1:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/" + "/".join(parts[:depth])
            if folder not in made and not visible(folder):
                made.add(folder)
                arguments += ["--perms", "0755", "--dir", folder]
        arguments += ["--ro-bind", source, target]
    return arguments


def kernel_start_lock_path() -> Path:
    """The lock that unconfined kernels of this user take while they start (see
    ``driver.take_kernel_start_lock``): one per user, shared by every run."""
    return confinement._lock_folder() / f"rnn-course-kernel-start-{os.getuid()}.lock"


def gpu_devices() -> list[str]:
    """NVIDIA device files to pass through, so that CUDA works in the sandbox where the host has it."""
    return sorted(
        str(path) for path in Path("/dev").glob("nvidia*") if not path.is_dir()
    )


# ---------------------------------------------------------------------------------------------
# One sandbox
# ---------------------------------------------------------------------------------------------


class Sandbox:
    """Runs one submission; the grader then calls its functions with :meth:`call`.

    Use as a context manager: ``start()``, ``wait_ready()``, calls, ``finish()``; leaving the block
    kills whatever is left and removes the folder ``box``.
    """

    def __init__(
        self,
        *,
        settings: SandboxSettings,
        box: Path,
        submission_dir: Path,
        notebook: str,
        assignment: str,
        uid: int | None,
        hidden: list[str] = (),
        bind_back: list[str] = (),
        secrets: list[str] = (),
    ):
        self.settings = settings
        self.box = Path(box)
        self.submission_dir = Path(submission_dir)
        self.notebook = notebook
        self.assignment = assignment
        self.uid = uid
        self.hidden, self.bind_back, self.secrets = (
            list(hidden),
            list(bind_back),
            list(secrets),
        )
        self.process: subprocess.Popen | None = None
        self.report: dict = {}
        self.stderr_tail = b""
        self.started = self.deadline = 0.0
        self.killed_at_deadline = False
        self.cgroup: confinement.SubmissionCgroup | None = None
        self.oom_kills = 0  # processes the kernel killed at the submission's memory limit (its cgroup)
        self._fds: list[int] = []
        self._threads: list[threading.Thread] = []
        self._report_bytes = bytearray()
        self._next_id = 0
        self._channel = None
        self._fifos: dict[str, int] = {}

    # -- life cycle --------------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self) -> None:
        channel_dir = self.box / "channel"
        channel_dir.mkdir(parents=True)
        os.chmod(self.box, 0o755)
        os.chmod(channel_dir, 0o755)
        fifos = {}
        for name in ("to_probe", "from_probe"):
            path = channel_dir / name
            os.mkfifo(path)
            os.chmod(path, 0o666)
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                raise SandboxError("the channel is not a FIFO")
            self._fds.append(fd)
            fifos[name] = fd
        report_read, report_write = os.pipe()
        self._fds.append(report_read)
        config = {
            "assignment": self.assignment,
            "notebook": self.notebook,
            "report_fd": report_write,
            "warm_up": self.settings.warm_up,
            "cell_timeout": self.settings.cell_timeout,
            "submission_timeout": self.settings.submission_timeout,
            "max_output_bytes": self.settings.max_output_bytes,
            "limits": {
                "memory_mb": self.settings.memory_mb,
                "file_mb": self.settings.file_mb,
                "cpu_seconds": int(self.settings.submission_timeout) + 30,
                "processes": self.settings.processes
                if self.settings.use_bwrap
                else None,
                "memory_kind": "data"
                if self.settings.use_bwrap and gpu_devices()
                else "as",
            },
        }
        pass_fds = [report_write]
        environment = self._environment(self.settings.threads)
        if self.settings.use_bwrap:
            config.update(
                submission_dir=f"{SANDBOX_ROOT}/submission",
                channel_dir=f"{SANDBOX_ROOT}/channel",
                work_dir=f"{SANDBOX_ROOT}/work",
                uid=self.uid,
                gid=self.uid,
                strict=True,
            )
            # The mount list names the grader's folders: pass it through a file descriptor (bwrap --args),
            # so that it is not on the command line, which /proc shows inside the sandbox.
            arguments_fd = os.memfd_create("bwrap-arguments")
            arguments = self._bwrap_arguments(channel_dir)
            os.write(
                arguments_fd,
                b"".join(argument.encode() + b"\0" for argument in arguments),
            )
            os.lseek(arguments_fd, 0, os.SEEK_SET)
            filter_fd = (
                confinement.seccomp_fd()
            )  # installed by bwrap right before it starts the driver
            self._fds += [arguments_fd, filter_fd]
            pass_fds += [arguments_fd, filter_fd]
            command = [
                bwrap_path() or "bwrap",
                "--args",
                str(arguments_fd),
                "--seccomp",
                str(filter_fd),
                "--",
                sys.executable,
                "-I",
                str(_DRIVER),
                json.dumps(config),
            ]
            self.cgroup = confinement.SubmissionCgroup.create(
                self.settings.memory_mb << 20, self.settings.processes
            )
            if (
                self.cgroup is not None
            ):  # joined before bwrap starts: every process of the sandbox is in it
                environment["RNN_COURSE_CGROUP_PROCS"] = " ".join(
                    self.cgroup.procs_files
                )
                command = ["/bin/sh", "-c", confinement.JOIN_CGROUP, "sh", *command]
        else:
            work = self.box / "work"
            work.mkdir(mode=0o700)
            config.update(
                submission_dir=str(self.submission_dir),
                channel_dir=str(channel_dir),
                work_dir=str(work),
                uid=None,
                # kernels share the host's network here: one starts at a time
                kernel_start_lock=str(kernel_start_lock_path()),
            )
            command = [sys.executable, "-I", str(_DRIVER), json.dumps(config)]
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=pass_fds,
                start_new_session=True,
                env=environment,
                cwd="/",
            )
        finally:
            os.close(report_write)
        self.started = time.monotonic()
        self.deadline = self.started + self.settings.submission_timeout
        self._drain(self.process.stderr, tail=64 << 10)
        self._drain_report(report_read)
        self._fifos = fifos

    @property
    def channel(self):
        """The channel to the probe, made at its first use: :mod:`.protocol` imports torch,
        which a worker imports while its first sandbox starts (never the main process)."""
        if self._channel is None:
            from . import protocol

            self._channel = protocol.Channel(
                self._fifos["from_probe"],
                self._fifos["to_probe"],
                blocking=False,
                alive=self.running,
            )
        return self._channel

    def _bwrap_arguments(self, channel_dir: Path) -> list[str]:
        command = [
            "--die-with-parent",
            "--new-session",
            "--unsetenv",
            "RNN_COURSE_CGROUP_PROCS",
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "sandbox",
            "--cap-drop",
            "ALL",
        ]
        if (
            self.uid is None
        ):  # rootless: a user namespace of its own, no capability in it
            command[:0] = ["--unshare-user", "--disable-userns"]
        else:  # as root: the driver drops to the submission's own uid
            command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        command += bwrap_mounts(
            self.hidden,
            self.bind_back + [str(_DRIVER.parent.parent)],
            self.secrets,
            self.settings,
        )
        command += [
            "--perms",
            "0755",
            "--dir",
            SANDBOX_ROOT,
            "--ro-bind",
            str(self.submission_dir),
            f"{SANDBOX_ROOT}/submission",
            "--ro-bind",
            str(channel_dir),
            f"{SANDBOX_ROOT}/channel",
            "--size",
            str(self.settings.scratch_mb << 20),
            "--perms",
            "1777",
            "--tmpfs",
            f"{SANDBOX_ROOT}/work",
        ]
        for device in gpu_devices():
            command += ["--dev-bind", device, device]
        command += ["--remount-ro", "/", "--chdir", f"{SANDBOX_ROOT}/work"]
        return command

    @staticmethod
    def _environment(threads: int) -> dict:
        """A clean environment: nothing of the grader's (paths, CI variables, tokens) reaches student code.

        The thread count keeps parallel sandboxes from oversubscribing the cores: OpenMP threads that
        spin-wait for work would burn the CPU time the other workers need.
        """
        environment = {
            "PATH": os.pathsep.join(
                [os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]
            ),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            # glibc reserves 64 MiB of address space per thread arena: keep that from
            # counting against the memory limit (RLIMIT_AS) on machines with many cores
            "MALLOC_ARENA_MAX": "2",
        }
        for name in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
            if name in os.environ:
                environment[name] = os.environ[name]
        return environment

    def _drain(self, stream, tail: int) -> None:
        def keep_tail():
            while True:
                chunk = (
                    stream.read1(65536)
                    if hasattr(stream, "read1")
                    else stream.read(65536)
                )
                if not chunk:
                    break
                self.stderr_tail = (self.stderr_tail + chunk)[-tail:]

        thread = threading.Thread(target=keep_tail, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _drain_report(self, fd: int) -> None:
        def read_report():
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                if len(self._report_bytes) < (1 << 20):
                    self._report_bytes += chunk

        thread = threading.Thread(target=read_report, daemon=True)
        thread.start()
        self._threads.append(thread)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait_ready(self) -> None:
        """Wait for the probe's "ready" (the notebook has run); SandboxTimeout / SandboxEnded otherwise."""
        from . import protocol  # (imports torch: never in the main process)

        try:
            kind, body, _ = self.channel.receive(deadline=self.deadline)
        except protocol.ChannelTimeout:
            self.kill(at_deadline=True)
            raise SandboxTimeout(
                "the submission ran out of time before all its cells had run"
            ) from None
        except protocol.ProtocolError as error:
            self.kill()
            raise SandboxEnded(
                f"the notebook stopped before the grader could call its functions ({error})"
            ) from None
        if (
            kind != "ready"
            or not isinstance(body, dict)
            or body.get("version") != protocol.VERSION
        ):
            self.kill()
            raise SandboxEnded("the grader's cell did not start as written")

    # -- calls -------------------------------------------------------------------------------------
    def call(
        self,
        name: str,
        args: tuple,
        kwargs: dict,
        *,
        references: dict | None,
        replaced: dict,
        timeout: float,
        student_name,
        run_callback,
    ) -> tuple[dict, protocol.Decoder, protocol.Encoder]:
        """Ask the probe to call the student's function ``name``; returns (reply, decoder, encoder).

        ``replaced`` maps student function names to the grader's objects bound to them in the test's
        namespace; ``run_callback(function, args, kwargs)`` runs a grader function the sandbox asked for.
        The reply's values are decoded by the caller with the returned decoder; ``encoder.tensors`` are
        the grader's tensor arguments, by the reference numbers the reply's ``after`` list uses.
        """
        from . import protocol  # (imports torch: never in the main process)

        callbacks: list = []
        encoder = protocol.Encoder(callbacks=callbacks, student_name=student_name)
        call_id = self._next_id
        self._next_id += 1
        body = {
            "id": call_id,
            "name": name,
            "args": encoder.encode(list(args)),
            "kwargs": encoder.encode(dict(kwargs)),
            "references": references,
            "timeout": timeout,
        }
        body["replaced"] = {}
        for replaced_name, obj in replaced.items():
            callbacks.append(obj)
            body["replaced"][replaced_name] = len(callbacks) - 1
        # The probe stops the call itself after `timeout`; the grader waits longer (one-time imports before
        # the call, a slow machine) and kills the sandbox only when the probe could not stop it.
        deadline = min(time.monotonic() + timeout + CALL_GRACE, self.deadline)
        try:
            self.channel.send("call", body, encoder.blobs, deadline=deadline)
            while True:
                kind, reply, blobs = self.channel.receive(deadline=deadline)
                if (
                    kind == "result"
                    and isinstance(reply, dict)
                    and reply.get("id") == call_id
                ):
                    return reply, protocol.Decoder(blobs), encoder
                if kind == "callback" and isinstance(reply, dict):
                    self._answer_callback(
                        reply, blobs, callbacks, student_name, run_callback, deadline
                    )
                    continue
                raise protocol.ProtocolError(f"unexpected message {str(kind)[:40]!r}")
        except protocol.ChannelTimeout:
            at_deadline = deadline >= self.deadline
            self.kill(at_deadline=at_deadline)
            raise SandboxTimeout(
                "the submission ran out of time"
                if at_deadline
                else f"{name} did not return within the time limit and could not be interrupted"
            ) from None
        except protocol.ProtocolError as error:
            self.kill()
            raise SandboxEnded(str(error)) from None

    def _answer_callback(
        self, request: dict, blobs, callbacks, student_name, run_callback, deadline
    ) -> None:
        from . import protocol  # (imports torch: never in the main process)

        index = request.get("callback")
        encoder = protocol.Encoder(callbacks=callbacks, student_name=student_name)
        answer = {"id": request.get("id")}
        try:
            if type(index) is not int or not 0 <= index < len(callbacks):
                raise protocol.ProtocolError("unknown callback")
            decoder = protocol.Decoder(blobs)
            args = decoder.decode(request.get("args"))
            kwargs = decoder.decode(request.get("kwargs"))
            if (
                type(args) is not list
                or type(kwargs) is not dict
                or not all(type(key) is str for key in kwargs)
            ):
                raise protocol.ProtocolError("malformed callback arguments")
            answer.update(
                ok=True,
                value=encoder.encode(run_callback(callbacks[index], args, kwargs)),
            )
        except protocol.ProtocolError:
            raise
        except Exception as error:  # noqa: BLE001 (the grader's function raised: the student's code sees it)
            encoder.blobs.clear()
            answer.update(ok=False, error=protocol.describe_exception(error))
        self.channel.send("callback_result", answer, encoder.blobs, deadline=deadline)

    # -- the end -----------------------------------------------------------------------------------
    def finish(self, grace: float = 30.0) -> dict:
        """Say "bye", let nbgrader finish, collect the driver's report. Kills the sandbox if it lingers."""
        from . import protocol  # (imports torch: never in the main process)

        self.goodbye: dict = {}
        if self.running():
            deadline = min(time.monotonic() + grace, self.deadline)
            try:
                self.channel.send("bye", {}, deadline=deadline)
                kind, body, _ = self.channel.receive(deadline=deadline)
                if kind == "bye" and isinstance(body, dict):
                    self.goodbye = body  # advisory, like the report
                self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except (protocol.ProtocolError, subprocess.TimeoutExpired):
                pass
        self.kill(at_deadline=self.running() and time.monotonic() >= self.deadline)
        if self.cgroup is not None:
            self.oom_kills = self.cgroup.oom_kills()
        for thread in self._threads:
            thread.join(timeout=5.0)
        try:
            self.report = (
                json.loads(bytes(self._report_bytes)) if self._report_bytes else {}
            )
        except ValueError:
            self.report = {"errors": ["the sandbox's report was not readable"]}
        if not isinstance(self.report, dict):
            self.report = {}
        return self.report

    def kill(self, at_deadline: bool = False) -> None:
        """Kill the sandbox (bubblewrap takes its whole PID namespace with it) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.killed_at_deadline = self.killed_at_deadline or at_deadline
        if not self.settings.use_bwrap:
            _kill_descendants(self.process.pid)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.kill()
        self.process.wait()

    def close(self) -> None:
        self.kill()
        if self.cgroup is not None:
            self.oom_kills = max(self.oom_kills, self.cgroup.oom_kills())
            self.cgroup.remove()  # kills whatever is left in it first
            self.cgroup = None
        if self.uid is not None and self.settings.use_bwrap:
            confinement.kill_processes_of(self.uid)
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        shutil.rmtree(self.box, ignore_errors=True)


def _kill_descendants(pid: int) -> None:
    """Without a PID namespace (--no-sandbox), kill the driver's process tree (the kernel has its own session)."""
    if not os.path.isdir("/proc"):
        return  # e.g. macOS: the process group is all we can kill
    for child in confinement.descendants(pid):
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
