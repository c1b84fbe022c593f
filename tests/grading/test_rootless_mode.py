"""Grading as an ordinary user (issue 10): what only the rootless mode has to show.

The fault-and-cheat suite and the trust suite run in this mode too (test_rootless.py runs them as an
ordinary user, in a cgroup delegated to it); this file adds what differs without root:

* without any cgroup, the process limit is still one submission's own: a fork bomb that holds
  nearly all of its 512 processes does not keep another worker's sandbox from starting (the kernel
  counts ``RLIMIT_NPROC`` per user namespace), and the run says memory is limited per process only;
* where user namespaces are refused, ``rnn-course grade`` refuses with the cause and the fix.

The first test needs an ordinary user; the last two run in either mode.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from grading_course import ROOT, make_course, require_sandbox
from grading_submissions import (
    ASSIGNMENT,
    NOTEBOOK,
    answered,
    load,
    to_bytes,
    with_cell_after,
)

from rnn_course.grading import confinement, report
from rnn_course.grading.command import GradeOptions, grade

HOLD_SECONDS = 25
FORK_AND_HOLD = f"""import subprocess, time
held = []
for _ in range(5000):
    try:
        held.append(subprocess.Popen(["sleep", "3600"]))
    except OSError:
        break
time.sleep({HOLD_SECONDS})  # the other worker starts its sandboxes meanwhile
"""


def _rootless_only() -> None:
    if not confinement.rootless():
        pytest.skip("runs as an ordinary user (test_rootless.py runs it so in CI)")
    require_sandbox()


def test_without_a_cgroup_one_fork_bomb_does_not_stop_another_sandbox(tmp_path):
    _rootless_only()
    if confinement.memory_cgroup_problem() is None:
        pytest.skip(
            "a cgroup is delegated here; this case is about running without one"
        )
    course = make_course(tmp_path / "course")
    source, release = load(course, "source"), load(course, "release")
    correct = answered(release, source)
    submissions = {
        "a_bomb": with_cell_after(correct, "setup", FORK_AND_HOLD),
        "b_witness": correct,
        "c_witness": correct,
        "d_witness": correct,
    }
    for student, nb in submissions.items():
        (tmp_path / "submitted" / student / ASSIGNMENT).mkdir(parents=True)
        (tmp_path / "submitted" / student / ASSIGNMENT / NOTEBOOK).write_bytes(
            to_bytes(nb)
        )
    summary = grade(
        GradeOptions(
            ASSIGNMENT,
            tmp_path / "submitted",
            course,
            output=tmp_path / "graded",
            workers=2,
            cell_timeout=HOLD_SECONDS + 30,
            submission_timeout=240,
            progress=False,
        )
    )
    rows = {row.student: (row.status, row.score) for row in summary.rows}
    # the witnesses start (kernel, nbgrader, probe) while the bomb holds its processes
    assert rows == {name: (report.GRADED, 10.0) for name in submissions}, rows
    lines = " ".join(summary.enforcement)
    assert "per process only" in lines and "own user namespace" in lines, lines


def test_where_user_namespaces_are_refused_grading_says_why_and_how_to_fix(tmp_path):
    """A sandbox that forbids nested user namespaces (bubblewrap --disable-userns) is a machine
    that refuses them, as Ubuntu's AppArmor or a container's seccomp profile does."""
    require_sandbox()
    if not confinement.rootless():
        pytest.skip("as root no user namespace is needed")
    bwrap = shutil.which("bwrap")
    (tmp_path / "submitted").mkdir()
    command = [
        bwrap,
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--bind",
        str(tmp_path),
        str(tmp_path),
        "--",
        sys.executable,
        "-m",
        "rnn_course.cli",
        "grade",
        ASSIGNMENT,
        str(tmp_path / "submitted"),
        "--course-root",
        str(ROOT),
        "--output",
        str(tmp_path / "graded"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    error = " ".join(done.stderr.split())
    assert "refuses one" in error and "Cause:" in error and "Fix:" in error, error
    assert "max_user_namespaces" in error and "--no-sandbox" in error, error
    assert not (tmp_path / "graded").exists()  # refused before touching anything


@pytest.mark.parametrize(
    "setting, value, named",
    [
        ("kernel/apparmor_restrict_unprivileged_userns", "1", "AppArmor"),
        ("kernel/unprivileged_userns_clone", "0", "unprivileged_userns_clone=1"),
        ("user/max_user_namespaces", "0", "user.max_user_namespaces=15000"),
    ],
)
def test_each_known_cause_of_refused_user_namespaces_is_named_with_its_fix(
    tmp_path, setting, value, named
):
    proc = tmp_path / "proc"
    (proc / "sys" / setting).parent.mkdir(parents=True)
    (proc / "sys" / setting).write_text(value + "\n")
    cause, fix = confinement.user_namespace_blocker(proc)
    assert named in cause + fix, (cause, fix)
    untouched = tmp_path / "other"
    (untouched / "sys/user").mkdir(parents=True)
    (untouched / "sys/user/max_user_namespaces").write_text("15000\n")
    if not Path("/.dockerenv").exists() and not os.path.exists("/run/.containerenv"):
        assert "unknown" in confinement.user_namespace_blocker(untouched)[0]
