"""Confinement pieces on their own (issue 9): the system-call filter inside a real bubblewrap, the
uid pool, the cleaning of a uid, and the submission cgroup. The trust suite (test_trust.py) checks
the same from inside graded submissions."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time

import pytest
from grading_course import require_sandbox

from rnn_course.grading import confinement
from rnn_course.grading.sandbox import bwrap_path

# Inside the sandbox: try each call the filter must deny (by x86_64 number, with harmless arguments)
# and a few it must allow; print {name: errno or 0}.
PROBE = r"""
import ctypes, json, os, threading
libc = ctypes.CDLL(None, use_errno=True)
def attempt(number, *args):
    ctypes.set_errno(0)
    result = libc.syscall(number, *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return ctypes.get_errno() if result == -1 else 0
CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x40000000, 17
found = {
    "add_key": attempt(248, b"user", b"probe", b"secret", 6, -4),
    "request_key": attempt(249, b"user", b"probe", None, 0),
    "keyctl": attempt(250, 0, -4, 0),               # KEYCTL_GET_KEYRING_ID of the user keyring
    "unshare": attempt(272, CLONE_NEWUSER),
    "clone(CLONE_NEWUSER)": attempt(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
    "clone(CLONE_NEWNET)": attempt(56, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0),
    "clone3": attempt(435, None, 0),
    "setns": attempt(308, -1, 0),
    "mount": attempt(165, b"none", b"/tmp", b"tmpfs", 0, None),
    "ptrace": attempt(101, 16, os.getppid(), 0, 0),  # PTRACE_ATTACH
    "process_vm_readv": attempt(310, os.getppid(), None, 0, None, 0, 0),
    "bpf": attempt(321, 0, None, 0),
    "perf_event_open": attempt(298, None, 0, -1, -1, 0),
    "userfaultfd": attempt(323, 0),
    "io_uring_setup": attempt(425, 1, None),
    "kcmp": attempt(312, os.getpid(), os.getpid(), 0, 0, 0),
    "open_by_handle_at": attempt(304, -1, None, 0),
    "syslog": attempt(103, 10, None, 0),
}
pid = os.fork()  # an ordinary clone must still work (processes, threads)
if pid == 0:
    os._exit(7)
found["fork works"] = os.waitpid(pid, 0)[1] >> 8 == 7
thread = threading.Thread(target=lambda: None)
thread.start()
thread.join()
found["threads work"] = True
print(json.dumps(found))
"""

DENIED_WITH_EPERM = [
    "add_key",
    "request_key",
    "keyctl",
    "unshare",
    "clone(CLONE_NEWUSER)",
    "clone(CLONE_NEWNET)",
    "setns",
    "mount",
    "ptrace",
    "process_vm_readv",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "kcmp",
    "open_by_handle_at",
    "syslog",
]


def run_in_bwrap(code: str, *, with_filter: bool) -> dict:
    fds = []
    command = [
        bwrap_path(),
        "--die-with-parent",
        "--unshare-pid",
        "--unshare-net",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
    ]  # the host's /tmp stays visible (read-only): the course may be checked out there
    if with_filter:
        fds.append(confinement.seccomp_fd())
        command += ["--seccomp", str(fds[0])]
    try:
        done = subprocess.run(
            command + ["--", sys.executable, "-I", "-c", code],
            capture_output=True,
            text=True,
            pass_fds=fds,
            timeout=120,
        )
    finally:
        for fd in fds:
            os.close(fd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_filter_denies_what_container_runtimes_deny_and_allows_processes_and_threads():
    require_sandbox()
    found = run_in_bwrap(PROBE, with_filter=True)
    assert {name: found[name] for name in DENIED_WITH_EPERM} == {
        name: errno.EPERM for name in DENIED_WITH_EPERM
    }
    assert (
        found["clone3"] == errno.ENOSYS
    )  # so that glibc falls back to clone, whose flags the filter reads
    assert found["fork works"] and found["threads work"]


def test_without_the_filter_the_keyring_is_reachable_in_the_same_sandbox():
    """The reference point of the test above: bubblewrap's namespaces alone leave the keyrings open."""
    require_sandbox()
    keyring_only = PROBE.split("found = {")[0] + (
        'print(json.dumps({"keyctl": attempt(250, 0, -4, 0), '
        '"add_key": attempt(248, b"user", b"probe", b"secret", 6, -4)}))\n'
    )
    found = run_in_bwrap(keyring_only, with_filter=False)
    assert found == {"keyctl": 0, "add_key": 0}


def test_the_filter_names_every_call_the_issue_lists():
    listed = {
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "kcmp",
        "mount",
        "umount2",
        "pivot_root",
        "unshare",
        "setns",
        "open_by_handle_at",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "kexec_file_load",
        "syslog",
        "acct",
        "swapon",
        "reboot",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    }
    assert listed <= set(confinement.DENIED_SYSCALLS)
    assert (
        len(confinement.seccomp_program()) % 8 == 0
        and len(confinement.seccomp_program()) > 8 * 40
    )


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="uids are leased and cleaned only as root (rootless: namespaces)",
)
def test_a_pool_gives_each_submission_its_own_uid_and_a_second_run_other_uids():
    require_sandbox()
    first, second = confinement.UidPool(), confinement.UidPool()
    try:
        uids = [first.lease() for _ in range(5)]
        others = [second.lease() for _ in range(5)]
    finally:
        first.release()
        second.release()
    assert len(set(uids)) == 5 and not set(uids) & set(
        others
    )  # concurrent runs never share a uid
    assert min(uids + others) >= confinement.UID_BASE
    third = confinement.UidPool()
    try:
        assert (
            third.lease() == uids[0]
        )  # after the run, its block is free again (and cleaned on lease)
    finally:
        third.release()


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="uids are leased and cleaned only as root (rootless: namespaces)",
)
def test_cleaning_a_uid_removes_its_keys_and_processes():
    require_sandbox()
    uid = (
        confinement.UID_BASE + confinement.UID_BLOCK * (confinement.UID_BLOCKS - 1) + 17
    )  # far from the others
    plant = (
        "import ctypes, sys, time\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.syscall(248, b'user', b'left-behind', b'x', 1, -4) > 0\n"  # add_key to the user keyring
        "print('planted', flush=True)\ntime.sleep(600)\n"
    )
    child = subprocess.Popen(
        ["/usr/bin/python3", "-c", plant],
        user=uid,
        group=uid,
        extra_groups=[],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert child.stdout.readline().strip() == "planted"
        assert confinement.traces_on_host({uid}).keys() == {"processes", "keys"}
        confinement.clean_uid(uid)
        assert confinement.traces_on_host({uid}) == {}
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="files of another uid are made with chown, as root (the root run tests this)",
)
def test_traces_are_looked_for_wherever_the_uid_could_have_gone(tmp_path):
    """traces_on_host walks every folder the uid may enter (so: a world-writable folder
    inside root's folders, its own, its group's); folders it cannot enter are not walked
    (nothing there can be its doing, and the host's /tmp may hold 10^5 files)."""
    require_sandbox()
    uid = (
        confinement.UID_BASE + confinement.UID_BLOCK * (confinement.UID_BLOCKS - 1) + 18
    )
    os.chmod(tmp_path, 0o755)  # (pytest's is private)
    shared = tmp_path / "roots" / "open-to-all"
    shared.mkdir(parents=True)
    os.chmod(tmp_path / "roots", 0o755)  # enterable, not writable by the uid
    os.chmod(shared, 0o777)
    own = shared / "made-by-the-uid"
    (own / "deeper").mkdir(parents=True)
    left = own / "deeper" / "left.txt"
    left.write_text("x")
    group = tmp_path / "roots" / "group-only"
    group.mkdir()
    os.chmod(group, 0o770)
    (group / "g.txt").write_text("x")
    private = tmp_path / "roots" / "private"
    private.mkdir()
    os.chmod(private, 0o700)
    (private / "cannot-be-the-uids.txt").write_text("x")
    for path in (own, own / "deeper", left, group / "g.txt"):
        os.chown(path, uid, uid)
    os.chown(group, 0, uid)
    os.chown(private / "cannot-be-the-uids.txt", uid, uid)  # (root put it there)
    found = confinement.traces_on_host({uid}, folders=(str(tmp_path),))
    assert sorted(found["files"]) == sorted(
        map(str, [own, own / "deeper", left, group / "g.txt"])
    )
    os.chmod(tmp_path, 0o700)


def test_a_submission_cgroup_has_the_limit_counts_its_processes_and_goes_away():
    require_sandbox()
    if confinement.memory_cgroup_problem():
        if os.environ.get("CI"):
            pytest.fail(
                f"CI must test the memory cgroup: {confinement.memory_cgroup_problem()}"
            )
        pytest.skip(confinement.memory_cgroup_problem())
    group = confinement.SubmissionCgroup.create(256 << 20, 64)
    assert group is not None
    version, folder = group.folders["memory"]
    limit = (
        (folder / ("memory.limit_in_bytes" if version == "v1" else "memory.max"))
        .read_text()
        .strip()
    )
    assert int(limit) == 256 << 20
    hog = "x = b'x' * (600 << 20)\nprint('held')"  # 600 MB in one process: over the group's 256 MiB
    done = subprocess.run(
        ["/bin/sh", "-c", confinement.JOIN_CGROUP, "sh", "/usr/bin/python3", "-c", hog],
        env={
            "RNN_COURSE_CGROUP_PROCS": " ".join(group.procs_files),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "held" not in done.stdout and done.returncode != 0
    assert group.oom_kills() >= 1 or "MemoryError" in done.stderr
    group.remove()
    assert not folder.exists()


def test_cgroups_left_by_a_dead_grader_are_removed_and_a_live_ones_kept():
    require_sandbox()
    if confinement.memory_cgroup_problem():
        pytest.skip(confinement.memory_cgroup_problem())
    finished = subprocess.run(["true"])  # a pid that no longer exists
    dead = subprocess.Popen(["true"])
    dead.wait()
    parents = {folder for _, folder in confinement._parents().values()}
    stale = [parent / f"rnn-course-{dead.pid}-left0behind0" for parent in parents]
    live = [parent / f"rnn-course-{os.getpid()}-still0running" for parent in parents]
    for folder in stale + live:
        folder.mkdir()
    sleeper = subprocess.Popen(  # a process still in the dead grader's cgroups
        ["/bin/sh", "-c", confinement.JOIN_CGROUP, "sh", "sleep", "600"],
        env={
            "RNN_COURSE_CGROUP_PROCS": " ".join(str(f / "cgroup.procs") for f in stale),
            "PATH": "/usr/bin:/bin",
        },
    )
    try:
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline and not (stale[0] / "cgroup.procs").read_text()
        ):
            time.sleep(0.05)
        removed = confinement.remove_stale_cgroups()
        assert {str(folder) for folder in stale} <= set(
            removed
        )  # (and any real leftovers)
        assert not {str(folder) for folder in live} & set(removed)
        assert sleeper.wait(timeout=30) != 0  # killed
        assert all(folder.exists() for folder in live)
    finally:
        sleeper.kill()
        for folder in stale + live:
            if folder.exists():
                folder.rmdir()
    assert finished.returncode == 0
