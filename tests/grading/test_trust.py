"""The grader's trust model against a determined, cooperating class (issue 9), in real sandboxes.

One grading run (2 workers) holds: a correct submission that leaves its code in every per-uid or
machine-wide place it can reach ("stash"), blank submissions graded after it on either worker that
look for that code and run it ("look"), and one submission per remaining hole: a sandbox that reports
made-up numbers to stretch its own deadline, a function that zeroes its arguments in place, a request
that makes the grader build a 1 GiB tensor, an unreadable (deeply nested) message, and processes that
together hold more memory than ``--memory``. A second run, as the next class's would, grades another
looker. Afterwards nothing of any sandbox may be left on the host.
"""

from __future__ import annotations

import base64
import os
import re

import pytest
from grading_course import HostState, make_course, require_sandbox
from grading_submissions import (
    ASSIGNMENT,
    FUNCTIONS,
    NOTEBOOK,
    answered,
    load,
    solution_code,
    to_bytes,
    with_answer,
    with_cell_after,
)

from rnn_course.grading import report
from rnn_course.grading.command import GradeOptions, grade

STASH_NAME = "rnn-course-stash"
KEY_DESCRIPTION = b"rnn-course-stash"
SHM_KEY = 0x524E4E43  # "RNNC"
ABSTRACT_SOCKET = "\0rnn-course-stash"

# x86_64 system call numbers (the sandbox's filter works by name; the cheats call by number, as ctypes must)
STASH = '''import base64, ctypes, os, socket, subprocess, sys
CODE = base64.b64decode("@CODE@")
libc = ctypes.CDLL(None, use_errno=True)
STORED = []
for ring in (-4, -5, -3):  # the user, user-session and session keyrings
    if libc.syscall(248, b"user", b"@KEY@", CODE, len(CODE), ring) > 0:  # add_key
        STORED.append(f"keyring {ring}")
segment = libc.shmget(@SHM@, 1 << 16, 0o1666)  # SysV shared memory, IPC_CREAT
if segment >= 0:
    libc.shmat.restype = ctypes.c_void_p
    address = libc.shmat(segment, None, 0)
    if address not in (None, ctypes.c_void_p(-1).value):
        ctypes.memmove(address, CODE + b"\\0", len(CODE) + 1)
        STORED.append("sysv shm")
server = """import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("@SOCKET@")
s.listen(8)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[1].encode())
    c.close()
"""
subprocess.Popen([sys.executable, "-c", server, CODE.decode()], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
folders = {"/dev/shm", "/tmp", "/var/tmp", os.getcwd(), os.path.expanduser("~"), os.environ.get("TMPDIR", "/tmp")}
for top in ("/",):
    for folder, subfolders, _ in os.walk(top):
        if folder.startswith(("/proc", "/sys", "/dev")) and folder != "/dev/shm":
            subfolders[:] = []
            continue
        if os.access(folder, os.W_OK):
            folders.add(folder)
for folder in sorted(folders):
    try:
        with open(os.path.join(folder, "@NAME@.py"), "wb") as handle:
            handle.write(CODE)
        STORED.append(folder)
    except OSError:
        pass
'''

LOOK = """import ctypes, os, socket
def _look():
    libc = ctypes.CDLL(None, use_errno=True)
    for ring in (-4, -5, -3):
        key = libc.syscall(250, 10, ring, b"user", b"@KEY@", 0)  # keyctl(KEYCTL_SEARCH)
        if key > 0:
            buffer = ctypes.create_string_buffer(1 << 16)
            size = libc.syscall(250, 11, key, buffer, len(buffer))  # keyctl(KEYCTL_READ)
            if size > 0:
                return buffer.raw[:size].decode()
    segment = libc.shmget(@SHM@, 0, 0)
    if segment >= 0:
        libc.shmat.restype = ctypes.c_void_p
        address = libc.shmat(segment, None, 0)
        if address not in (None, ctypes.c_void_p(-1).value):
            return ctypes.string_at(address).decode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(2)
            client.connect("@SOCKET@")
            return client.recv(1 << 16).decode()
    except OSError:
        pass
    for folder, subfolders, files in os.walk("/"):
        if folder.startswith(("/proc", "/sys")):
            subfolders[:] = []
            continue
        if "@NAME@.py" in files:
            try:
                with open(os.path.join(folder, "@NAME@.py")) as handle:
                    return handle.read()
            except OSError:
                pass
    return None
FOUND = _look()
if FOUND:
    exec(FOUND, globals())  # the other student's answers, as if written here
"""

# Stretch the deadline: the probe stops nothing and reports 99 s of "overhead" for each call.
DEADLINE_PATCH = """import rnn_course.grading.probe as _probe
class _NoLimit:
    def __init__(self, seconds):
        pass
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False
_probe._time_limit = _NoLimit
_probe._warm_up = lambda *args, **kwargs: 99.0
"""

SLOW_FIRST_CALL = """import time
_SLEPT = []
def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    if not _SLEPT:  # the first call runs past the test cell's 10 s, later ones are quick
        _SLEPT.append(1)
        time.sleep(13)
    return torch.tanh(h_prev @ W_h.T + x_t @ W_x.T + b)
"""

ZERO_IN_PLACE = """def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    with torch.no_grad():
        for tensor in (x_t, h_prev, W_x, W_h, b):
            tensor.zero_()  # every argument zeroed in place: a reference computed from them agrees with zeros
    return torch.zeros_like(h_prev)
"""

# While run_memory_cell's test replaces memory_cell_step by the grader's reference, ask the grader
# for one step whose broadcast output is 16384 x 16384 floats (1 GiB) from 200 KB of arguments.
HUGE_REQUEST = """def run_memory_cell(xs, W_x, W_h, b, h0=None):
    try:
        memory_cell_step(torch.ones(16384, 1), torch.zeros(16384, 1), torch.ones(16384, 1),
                         torch.zeros(1, 1), torch.zeros(1))
    except Exception:
        pass  # the student's code swallows the refusal: the part must fail all the same
    h = xs.new_zeros(xs.shape[1], W_h.shape[0]) if h0 is None else h0
    states = []
    for x_t in xs:
        h = torch.tanh(h @ W_h.T + x_t @ W_x.T + b)
        states.append(h)
    return torch.stack(states)
"""

# Every message the probe sends, the "ready" included, is nested 200000 lists deep.
NESTED_MESSAGE = """import struct, rnn_course.grading.protocol as _protocol
def _nested_send(self, kind, body, blobs=(), deadline=None):
    header = b'{"kind":"ready","body":' + b"[" * 200000 + b"]" * 200000 + b',"blobs":[]}'
    self._write(_protocol.MAGIC + struct.pack(">I", len(header)) + header, deadline)
_protocol.Channel.send = _nested_send
"""

# Three fresh processes of 1.2 GB each (each far under --memory) and the kernel: 3.6 GB together.
MEMORY_TOGETHER = """import subprocess, sys, time
HOLD = "x = b'x' * (1200 << 20)\\nprint('held', flush=True)\\nimport time\\ntime.sleep(120)"
holders = [subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True) for _ in range(3)]
held = sum(1 for holder in holders if holder.stdout.readline().startswith("held"))
time.sleep(2)  # a holder that printed may be killed when a later one allocates
alive = sum(1 for holder in holders if holder.poll() is None)
if held == alive == 3:  # all three hold their memory at once: only then are the answers filled in
    exec(ANSWERS, globals())
"""

SLOW_CELL_SECONDS = 13


def _code_of_answers(source) -> str:
    return "\n\n".join(solution_code(source, function) for function in FUNCTIONS)


def _fill(template: str, **values: str) -> str:
    for name, value in values.items():
        template = template.replace(f"@{name}@", value)
    return template


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    require_sandbox()
    base = tmp_path_factory.mktemp("trust")
    host = HostState(ignore=tmp_path_factory.getbasetemp())
    course = make_course(base / "course")
    source, release = load(course, "source"), load(course, "release")
    correct = answered(release, source)
    answers = _code_of_answers(source)
    names = {
        "KEY": KEY_DESCRIPTION.decode(),
        "SHM": str(SHM_KEY),
        "SOCKET": ABSTRACT_SOCKET.replace("\0", "\\0"),
        "NAME": STASH_NAME,
        "CODE": base64.b64encode(answers.encode()).decode(),
    }
    stash = with_cell_after(correct, "setup", _fill(STASH, **names))
    look = with_cell_after(release, "predict_every_step", _fill(LOOK, **names))
    memory = with_cell_after(
        release, "predict_every_step", f"ANSWERS = {answers!r}\n" + MEMORY_TOGETHER
    )
    submissions = {
        # jobs go out in this order: the stash first, the lookers last (after it on both workers)
        "a_stash": stash,
        "b_deadline": with_cell_after(
            with_answer(correct, "memory_cell_step", SLOW_FIRST_CALL),
            "setup",
            DEADLINE_PATCH,
        ),
        "c_in_place": with_answer(correct, "memory_cell_step", ZERO_IN_PLACE),
        "d_huge_request": with_answer(correct, "run_memory_cell", HUGE_REQUEST),
        "e_nested_message": with_cell_after(
            correct, "predict_every_step", NESTED_MESSAGE
        ),
        "f_memory_together": memory,
        "y_look_1": look,
        "y_look_2": look,
        "y_look_3": look,
    }
    first = base / "submitted"
    for student, nb in submissions.items():
        (first / student / ASSIGNMENT).mkdir(parents=True)
        (first / student / ASSIGNMENT / NOTEBOOK).write_bytes(to_bytes(nb))
    options = dict(
        workers=2,
        cell_timeout=10,
        submission_timeout=90,
        memory_mb=3072,
        progress=False,
    )
    summary = grade(
        GradeOptions(ASSIGNMENT, first, course, output=base / "graded", **options)
    )
    second = base / "next-run"
    (second / "z_look_next" / ASSIGNMENT).mkdir(parents=True)
    (second / "z_look_next" / ASSIGNMENT / NOTEBOOK).write_bytes(to_bytes(look))
    next_summary = grade(
        GradeOptions(
            ASSIGNMENT,
            second,
            course,
            output=base / "graded-next",
            **{**options, "workers": 1},
        )
    )
    rows = {row.student: row for row in summary.rows + next_summary.rows}
    return {"rows": rows, "summaries": [summary, next_summary], "host": host}


def _messages(row) -> str:
    return " | ".join(f"{part.grade_id}: {part.message}" for part in row.parts)


def test_the_stash_is_graded_and_no_looker_finds_it(trust):
    rows = trust["rows"]
    assert rows["a_stash"].score == 10, _messages(rows["a_stash"])
    lookers = {name: row.score for name, row in rows.items() if "look" in name}
    assert lookers == {"y_look_1": 0, "y_look_2": 0, "y_look_3": 0, "z_look_next": 0}


def test_each_submission_ran_as_its_own_identity_and_nothing_is_left(trust):
    from rnn_course.grading import confinement

    uids = [uid for summary in trust["summaries"] for uid in summary.uids.values()]
    if (
        confinement.rootless()
    ):  # a user namespace per submission, the instructor's uid outside
        assert uids == []
        assert all(
            "user namespace of its own" in summary.enforcement[0]
            for summary in trust["summaries"]
        )
    else:
        assert (
            len(uids) == 10 and len(set(uids[:9])) == 9
        )  # one per submission within a run
        assert all(uid >= confinement.UID_BASE for uid in uids)
    left = trust["host"].left(set(uids))
    assert left == {}, left


def test_a_sandbox_cannot_stretch_its_own_deadline(trust):
    row = trust["rows"]["b_deadline"]
    parts = {part.grade_id: part for part in row.parts}
    assert row.status == report.TIMED_OUT_CELL, (row.status, _messages(row))
    assert parts["test_memory_cell_step"].points == 0 and row.score == 6, _messages(row)


def test_an_argument_changed_in_place_fails_that_part_and_says_so(trust):
    row = trust["rows"]["c_in_place"]
    parts = {part.grade_id: part for part in row.parts}
    assert parts["test_memory_cell_step"].points == 0 and row.score == 6, _messages(row)
    assert "in place" in parts["test_memory_cell_step"].message


def test_a_request_that_would_make_the_grader_build_a_huge_tensor_fails_its_part(trust):
    row = trust["rows"]["d_huge_request"]
    parts = {part.grade_id: part for part in row.parts}
    assert row.status == report.GRADED and row.score == 7, (row.status, _messages(row))
    assert parts["test_run_memory_cell"].points == 0
    assert re.search(r"limit", parts["test_run_memory_cell"].message), parts[
        "test_run_memory_cell"
    ].message


def test_an_unreadable_message_ends_that_submission_not_the_grader(trust):
    row = trust["rows"]["e_nested_message"]
    assert row.status != report.GRADER_ERROR and row.score == 0, (
        row.status,
        row.message,
    )
    assert all(summary.grader_errors == 0 for summary in trust["summaries"])


def test_processes_together_stay_under_the_memory_limit(trust):
    from rnn_course.grading import confinement

    if confinement.memory_cgroup_problem():
        pytest.fail(
            f"no memory cgroup to test: {confinement.memory_cgroup_problem()}"
        ) if os.environ.get("CI") else pytest.skip(confinement.memory_cgroup_problem())
    row = trust["rows"]["f_memory_together"]
    assert row.score == 0, (row.status, _messages(row))
    assert row.status == report.OUT_OF_MEMORY, (row.status, row.message)


def test_the_runs_say_which_limits_were_enforced_how(trust):
    for summary in trust["summaries"]:
        assert summary.enforcement, "the summary names how each limit was enforced"
        assert any("system calls" in line for line in summary.enforcement)
