"""The grading suites again, as an ordinary user (issue 10): the rootless sandbox holds them too.

Run as root (as ``make test`` runs in CI), this test sets up a copy of the checkout in an ordinary
user's home with the distribution's own Python (``.ci/ordinary-user``, the README's set-up as an
instructor without root would do it), then runs there, as that user:

1. in a cgroup delegated to the user (memory and pids, as an administrator would delegate one once):
   the fault-and-cheat suite, the trust suite, the confinement and layout tests and the rootless-mode
   tests — the same files the root run of ``make test`` runs, now in the rootless mode;
2. with no cgroup at all: the rootless-mode test of per-process limits (a fork bomb that must not
   stop another worker's sandbox).

The set-up and both runs start in the background when collection ends (``conftest.py``), and
go on beside the root suites; the test waits for them (:class:`Harness`).

The user is ``RNN_COURSE_TEST_USER`` (default ``rnn-ci``), made by ``.ci/run``; without it the test
is skipped, except in CI, where it fails. As an ordinary user already, the suites run directly
(this file has nothing to add) and this test is skipped.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from grading_course import ROOT

from rnn_course.grading import confinement

USER = os.environ.get("RNN_COURSE_TEST_USER", "rnn-ci")
SUITES = [
    "tests/grading/test_fault_and_cheat_suite.py",
    "tests/grading/test_trust.py",
    "tests/grading/test_confinement.py",
    "tests/grading/test_sandbox_layout.py",
    "tests/grading/test_rootless_mode.py",
]
WITHOUT_CGROUP = [
    "tests/grading/test_rootless_mode.py::"
    "test_without_a_cgroup_one_fork_bomb_does_not_stop_another_sandbox"
]


def _user_or_skip() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip(
            "already an ordinary user: the suites run here in the rootless mode"
        )
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        problem = (
            f"no user {USER!r} to run the suites as an ordinary user "
            "(.ci/run makes it: useradd --create-home rnn-ci)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the rootless suites, but there is {problem}")
        pytest.skip(problem)


class DelegatedCgroup:
    """Memory and pids cgroups made under this process's own and given to ``user`` (chown), as
    an administrator delegates a subtree once; removed afterwards."""

    def __init__(self, user: pwd.struct_passwd):
        own, mounts = confinement._own_cgroups(), confinement._mounts()
        name = f"rnn-course-delegated-{uuid.uuid4().hex[:8]}"
        self.folders: list[Path] = []
        for controller in ("memory", "pids"):
            if controller in mounts and controller in own:  # cgroup v1
                parent = Path(mounts[controller] + own[controller].rstrip("/"))
                self._make(parent / name, user)
        if (
            not self.folders and "" in mounts
        ):  # cgroup v2: one folder, controllers enabled
            parent = Path(mounts[""] + own.get("", "/").rstrip("/"))
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
            self._make(parent / name, user)
            (self.folders[0] / "cgroup.subtree_control").write_text("+memory +pids")

    def _make(self, folder: Path, user: pwd.struct_passwd) -> None:
        folder.mkdir()
        self.folders.append(folder)
        for path in [folder, *folder.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)

    @property
    def procs_files(self) -> str:
        return " ".join(str(folder / "cgroup.procs") for folder in self.folders)

    def remove(self) -> None:
        """Remove the folders (and any submission cgroup left in them); the kernel may take a
        moment to let go of a cgroup whose last process just exited."""
        for folder in self.folders:
            children = [p for p in folder.iterdir() if (p / "cgroup.procs").exists()]
            for path in [*children, folder]:
                for _ in range(100):
                    try:
                        path.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)


def test_the_grading_suites_pass_as_an_ordinary_user_with_the_distributions_python(
    rootless_harness,
):
    user = _user_or_skip()
    harness = rootless_harness or Harness(user)  # (started when collection ended)
    setup, *runs = harness.results(timeout=3600)
    assert setup.returncode == 0, (setup.stdout + setup.stderr)[-3000:]
    delegated, bare = runs
    assert delegated.returncode == 0, (
        delegated.stdout[-6000:] + delegated.stderr[-2000:]
    )
    assert " passed" in delegated.stdout and " failed" not in delegated.stdout
    assert bare.returncode == 0, bare.stdout[-6000:] + bare.stderr[-2000:]
    assert "1 passed" in bare.stdout, bare.stdout[-3000:]


class Harness:
    """The set-up and the two runs as ``user``, in a thread of this pytest process.

    conftest.py starts it when collection ends (:func:`start_in_background`), so that it
    runs beside the root suites instead of after them: it is another user's copy, whose
    sandboxes leave traces only under that user's uid, which no root test looks at
    (and no rootless check here looks at root's), and many root tests spend seconds
    waiting on a timeout with the cores idle. The test above only waits for it.
    """

    def __init__(self, user: pwd.struct_passwd):
        self.user = user
        self.processes: list[subprocess.Popen] = []
        self._results: list[subprocess.CompletedProcess] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _call(self, command, **options) -> subprocess.CompletedProcess:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # stop() ends it and all it started
            **options,
        )
        self.processes.append(process)
        stdout, stderr = process.communicate(timeout=2400)
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

    def _run(self) -> None:
        try:
            checkout = Path(self.user.pw_dir) / "rnn-course"
            setup = self._call(
                [str(ROOT / ".ci" / "ordinary-user"), self.user.pw_name, str(checkout)]
            )
            self._results.append(setup)
            if setup.returncode != 0:
                return
            cgroup = DelegatedCgroup(self.user)
            try:
                self._results.append(
                    self._as_user(checkout, SUITES, cgroup.procs_files)
                )
            finally:
                cgroup.remove()
            self._results.append(self._as_user(checkout, WITHOUT_CGROUP))
        except BaseException as error:  # noqa: BLE001 (the test reports it)
            self._error = error

    def _as_user(self, checkout: Path, tests: list[str], procs_files: str = ""):
        environment = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "RNN_COURSE_PROCS": procs_files,
            **{
                name: os.environ[name]
                for name in os.environ
                if name == "CI" or name.startswith(("PIP_", "RNN_COURSE_SANDBOX"))
            },
        }
        join = 'for file in $RNN_COURSE_PROCS; do echo $$ > "$file" || exit 125; done; '
        command = [
            "/bin/sh",
            "-c",
            join + 'user=$1; shift; exec "$0" -u "$user" -- "$@"',
            shutil.which("runuser") or "/usr/sbin/runuser",
            self.user.pw_name,
            "env",
            "-u",
            "RNN_COURSE_PROCS",
            ".venv/bin/python",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rfEs",
            *tests,
        ]
        return self._call(command, cwd=checkout, env=environment)

    def results(self, timeout: float):
        """[set-up, delegated run, bare run] once the thread has ended (the set-up alone
        if it failed)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.stop()
            pytest.fail(f"the runs as {self.user.pw_name} took over {timeout:.0f} s")
        if self._error is not None:
            raise self._error
        return self._results

    def stop(self) -> None:
        """Kill what still runs (pytest ended before the test waited for it)."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


def start_in_background(items) -> Harness | None:
    """Called by conftest.py when collection ends: the harness, started, if this
    session runs its test as root with the user there (else the test skips or fails
    itself, and None)."""
    test = (
        "test_the_grading_suites_pass_as_an_ordinary_user_with_the_distributions_python"
    )
    if os.geteuid() != 0 or not any(item.name == test for item in items):
        return None
    try:
        return Harness(pwd.getpwnam(USER))
    except KeyError:
        return None
