"""Submissions for the grading tests: honest ones, faults, and cheats, built from ch02_memory_cell's notebooks.

Each cheat leaves the answers blank (or wrong) and tries something; none may score above a blank.
Cheats that look around (files, network, environment) report what they saw by raising an exception
whose message starts with a tag ("SCAN:", "WRITE:", "NET:", "ENV:"): the grader puts that message in
the student's feedback, where the tests read it. So the tests can tell that a cheat ran and what it
found, without trusting anything else the sandbox says.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ASSIGNMENT = "ch02_memory_cell"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
FUNCTIONS = ("memory_cell_step", "run_memory_cell", "predict_every_step")
OTHER_STUDENT_MARKER = "OTHER-STUDENT-MARKER-7f3a9c"
"""Written into an honest student's notebook: no cheat may ever find it."""


def load(course: Path, which: str) -> nbformat.NotebookNode:
    folder = "solutions" if which == "source" else "exercises"
    return nbformat.read(course / folder / ASSIGNMENT / NOTEBOOK, as_version=4)


def cell(nb, grade_id: str):
    return next(
        c
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def solution_code(source_nb, function: str) -> str:
    """The source's answer with nbgrader's solution markers removed: what a correct student writes."""
    lines = cell(source_nb, function).source.splitlines()
    return "\n".join(
        line
        for line in lines
        if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line
    )


def answered(release, source, functions=FUNCTIONS):
    """The release with these functions answered correctly, as a student would submit it."""
    nb = copy.deepcopy(release)
    for function in functions:
        cell(nb, function).source = solution_code(source, function)
    return nb


def with_answer(nb, function: str, code: str):
    nb = copy.deepcopy(nb)
    cell(nb, function).source = code
    return nb


def with_cell_after(nb, grade_id: str, code: str):
    """Insert a new (student) code cell after the cell ``grade_id``."""
    nb = copy.deepcopy(nb)
    index = next(
        i
        for i, c in enumerate(nb.cells)
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def to_bytes(nb) -> bytes:
    return nbformat.writes(nb).encode()


# --- code the cheats run -------------------------------------------------------------------------

WRONG_STEP = '''def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    """One step, with the classic mistake: W_h not transposed."""
    return torch.tanh(h_prev @ W_h + x_t @ W_x.T + b)
'''

HANGING_STEP = """def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    while True:  # never returns (but can be interrupted)
        pass
"""

UNSTOPPABLE_STEP = """import signal, time
def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    while True:  # ignores interrupts and alarms, and swallows every exception
        try:
            time.sleep(0.1)
        except BaseException:
            pass
"""

SLOW_CELL = "import time\ntime.sleep(9)  # below the suite's 10 s per cell; six of them pass its 45 s per submission\n"

EXIT_NOW = "import os\nos._exit(3)\n"

SYS_EXIT_STEP = """import sys
def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    sys.exit(0)
"""

MEMORY_HOG = """hoard = bytearray(64 << 30)  # 64 GiB at once: past the limit at once, however busy the machine
"""

FORK_BOMB = """import subprocess
started = []
for _ in range(5000):
    try:
        started.append(subprocess.Popen(["sleep", "3600"]))
    except OSError:
        break
FORK = f"FORK: started={len(started)}"
def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    raise RuntimeError(FORK)
"""

DISK_FILL = """import errno, os, tempfile
written = 0
chunk = b"x" * (1 << 20)
for folder in (os.getcwd(), tempfile.gettempdir(), "/tmp", "/dev/shm", os.path.expanduser("~"), "/var/tmp"):
    for index in range(4096):
        try:
            with open(os.path.join(folder, f"fill-{index}.bin"), "wb") as handle:
                for _ in range(256):
                    handle.write(chunk)
                    written += len(chunk)
        except OSError as error:
            if error.errno != errno.EFBIG:  # a full disk (or no right to write here): next folder
                break
print("wrote", written >> 20, "MiB")
"""

ENDLESS_PRINT = """while True:
    print("spam " * 200)
"""

PATCH_HELPERS = """import torch, numpy, rnn_course.checks as checks
def _pass(*args, **kwargs):
    return None
for name in ("check_close", "check_shape", "check_terms", "check_scalar", "check_unchanged", "check_device",
             "check_dtype", "check_type", "check_accumulated", "check_raises"):
    setattr(checks, name, _pass)
checks.call_without_references = lambda function, *args, **kwargs: function(*args)
checks.as_plain_tensor = lambda value, what="": torch.zeros(1)
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
numpy.testing.assert_allclose = _pass
torch.Tensor.__eq__ = lambda self, other: True
"""

ZEROS_ANSWERS = {
    "memory_cell_step": "def memory_cell_step(x_t, h_prev, W_x, W_h, b):\n    return torch.zeros_like(h_prev)\n",
    "run_memory_cell": "def run_memory_cell(xs, W_x, W_h, b, h0=None):\n"
    "    return xs.new_zeros(xs.shape[0], xs.shape[1], W_h.shape[0])\n",
    "predict_every_step": "def predict_every_step(xs, W_x, W_h, b, W_y, b_y):\n"
    "    return xs.new_zeros(xs.shape[0], xs.shape[1], W_y.shape[0])\n",
}

ALWAYS_EQUAL = """class AlwaysEqual(float):
    shape = property(lambda self: ANY)
    dtype = property(lambda self: ANY)
    device = property(lambda self: ANY)
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __getattr__(self, name): return self
    def __call__(self, *args, **kwargs): return self
    def __getitem__(self, key): return self
    def __len__(self): return 1
    def __iter__(self): return iter([self])
    __hash__ = float.__hash__
ANY = AlwaysEqual(0.0)
def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    return ANY
def run_memory_cell(xs, W_x, W_h, b, h0=None):
    return ANY
def predict_every_step(xs, W_x, W_h, b, W_y, b_y):
    return ANY
"""

INPUT_TRANSFORMER = """def _blank_everything(lines):
    return ["pass\\n"]
get_ipython().input_transformers_post.append(_blank_everything)
"""

EVENT_HOOKS = """import rnn_course.checks as checks
def _before(*args, **kwargs):
    checks.check_close = lambda *a, **k: None
    checks.check_terms = lambda *a, **k: None
    globals()["memory_cell_step"] = lambda *a, **k: a[1]
def _after(*args, **kwargs):
    _before()
get_ipython().events.register("pre_run_cell", _before)
get_ipython().events.register("post_run_cell", _after)
get_ipython().showtraceback = lambda *a, **k: None
"""

SCAN_SECRETS = """import os
MARKERS = [b"BEGIN HIDDEN" + b" TESTS", b"### BEGIN" + b" SOLUTION", b"@OTHER@".replace(b"@", b"")]
found, seen = [], 0
roots = @PATHS@ + [os.getcwd(), os.path.expanduser("~"), "/tmp", "/root", "/home", "/srv", "/mnt", "/work", "/"]
skip = ("/proc", "/sys", "/dev", "/usr", "/lib", "/bin", "/sbin", "/etc", "/var/lib", "/boot", "/opt")
LIMIT = 3000  # files read: the secrets' own folders first, then everything else in reach;
# bounded so that the scan ends well inside the suite's 10 s per cell on a loaded machine
for root in roots:
    for folder, folders, files in os.walk(root):
        folders[:] = [f for f in folders if not os.path.join(folder, f).startswith(skip)
                      and "site-packages" not in os.path.join(folder, f)]
        if seen >= LIMIT:
            folders[:] = []
            continue
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue  # FIFOs would block; links lead to files seen anyway
            if seen >= LIMIT:
                break
            seen += 1
            try:
                with open(path, "rb") as handle:
                    data = handle.read(1 << 20)
            except OSError:
                continue
            if any(marker in data for marker in MARKERS):
                found.append(path)
for entry in os.listdir("/proc"):
    if entry.isdigit():
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{what}", "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            if any(marker in data for marker in MARKERS) or any(p.encode() in data for p in @HOSTPATHS@):
                found.append(f"/proc/{entry}/{what}")
SCAN = f"SCAN: files={seen} found={sorted(set(found))}"
def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    raise RuntimeError(SCAN)
""".replace("@OTHER@", "@".join(OTHER_STUDENT_MARKER))

WRITE_SECRETS = """import os
results = []
for path in @PATHS@:
    for mode in ("ab", "wb"):
        try:
            with open(path, mode) as handle:
                handle.write(b"garbage")
            results.append(f"wrote {path}")
        except OSError as error:
            pass
    try:
        os.remove(path)
        results.append(f"removed {path}")
    except OSError:
        pass
for folder in [os.path.dirname(p) for p in @PATHS@]:
    try:
        with open(os.path.join(folder, "planted.txt"), "w") as handle:
            handle.write("planted")
        results.append(f"planted in {folder}")
    except OSError:
        pass
WRITE = f"WRITE: attempts={len(@PATHS@)} succeeded={results}"
def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    raise RuntimeError(WRITE)
"""

NETWORK = """import socket
reached = []
for host, port in [("127.0.0.1", @PORT@), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
    try:
        with socket.create_connection((host, port), timeout=2):
            reached.append(f"{host}:{port}")
    except OSError as error:
        pass
try:
    socket.getaddrinfo("pypi.org", 443)
    reached.append("dns")
except OSError:
    pass
NET = f"NET: reached={reached}"
def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    raise RuntimeError(NET)
"""

DETECT_GRADER = """import os
ENV = "ENV: " + repr(sorted(os.environ.items())) + f" uid={os.getuid()}"
if os.environ.get("NBGRADER_EXECUTION"):
    import rnn_course.checks as checks
    checks.check_close = lambda *a, **k: None  # behave differently under the grader: it changes nothing
def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    raise RuntimeError(ENV)
"""


@dataclass
class Case:
    """A submission of the suite and what must come of it."""

    student: str
    statuses: tuple[
        str, ...
    ]  # acceptable statuses (one, except where the outcome is legitimately either)
    score: float | None  # the exact score expected (None: not graded)
    files: dict[str, bytes] = field(default_factory=dict)
    tag: str | None = None  # the cheat's report tag in the feedback ("SCAN:", ...)
    cheat: bool = False  # a cheat: must not score above the blank submission


def catalogue(
    course: Path,
    *,
    secret_paths: list[str],
    host_paths: list[str],
    write_paths: list[str],
    port: int,
) -> list[Case]:
    """Every case of the fault and cheat suite (ch02_memory_cell, 10 points).

    ``secret_paths``: folders the scanning cheat searches first; ``host_paths``: paths whose mere name
    must not be visible inside the sandbox (e.g. in /proc); ``write_paths``: files the cheat tries to
    overwrite or delete.
    """
    source, release = load(course, "source"), load(course, "release")
    correct = answered(release, source)
    blank = release
    only_later_parts = answered(release, source, FUNCTIONS[1:])

    def blank_with(grade_id, code):
        return to_bytes(with_cell_after(blank, grade_id, code))

    def answer_with(code, base=blank):
        return to_bytes(with_answer(base, "memory_cell_step", code))

    renamed_ids = copy.deepcopy(blank)
    cell(renamed_ids, "test_memory_cell_step").metadata.nbgrader["grade_id"] = (
        "test_renamed"
    )
    renamed_ids.cells = [
        c
        for c in renamed_ids.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") != "test_run_memory_cell"
    ]
    edited_tests = copy.deepcopy(blank)
    for grade_id in (
        "test_memory_cell_step",
        "test_run_memory_cell",
        "test_predict_every_step",
    ):
        cell(edited_tests, grade_id).source = "print('all tests passed')"
    edited_correct = copy.deepcopy(correct)
    cell(edited_correct, "test_memory_cell_step").source = "pass"
    marked = copy.deepcopy(correct)
    cell(marked, "memory_cell_step").source += f"\n# {OTHER_STUDENT_MARKER}\n"
    slow = correct
    for _ in range(6):
        slow = with_cell_after(slow, "setup", SLOW_CELL)
    zeros = copy.deepcopy(blank)
    for function, code in ZEROS_ANSWERS.items():
        cell(zeros, function).source = code
    paths = repr(secret_paths)

    nb = NOTEBOOK
    return [
        # honest submissions
        Case("correct", ("graded",), 10, {nb: to_bytes(marked)}),
        Case("source", ("tampered cells restored",), 10, {nb: to_bytes(source)}),
        Case("blank", ("graded",), 0, {nb: to_bytes(blank)}),
        Case(
            "wrong_step",
            ("graded",),
            6,
            {nb: to_bytes(with_answer(correct, "memory_cell_step", WRONG_STEP))},
        ),
        Case(
            "renamed_file",
            ("renamed notebook",),
            10,
            {"my_answers.ipynb": to_bytes(correct)},
        ),
        Case(
            "empty_folder",
            ("missing notebook",),
            0,
            {"notes.txt": b"I forgot to upload it"},
        ),
        # faults
        Case(
            "hang",
            ("timed out (cell)",),
            6,
            {nb: answer_with(HANGING_STEP, only_later_parts)},
        ),
        Case(
            "unstoppable",
            ("timed out (cell)", "timed out (submission)"),
            0,
            {nb: answer_with(UNSTOPPABLE_STEP, only_later_parts)},
        ),
        Case("slow", ("timed out (submission)",), 0, {nb: to_bytes(slow)}),
        Case(
            "os_exit",
            ("kernel died",),
            0,
            {nb: blank_with("memory_cell_step", EXIT_NOW)},
        ),
        Case(
            "sys_exit",
            ("graded",),
            6,
            {nb: answer_with(SYS_EXIT_STEP, only_later_parts)},
        ),
        Case(
            "memory_hog", ("out of memory",), 0, {nb: blank_with("setup", MEMORY_HOG)}
        ),
        Case(
            "fork_bomb",
            ("graded",),
            0,
            {nb: answer_with(FORK_BOMB)},
            tag="FORK:",
            cheat=True,
        ),
        Case(
            "disk_fill",
            ("graded",),
            0,
            {nb: blank_with("setup", DISK_FILL)},
            cheat=True,
        ),
        Case(
            "endless_print",
            ("timed out (cell)",),
            0,
            {nb: blank_with("setup", ENDLESS_PRINT)},
        ),
        Case("not_json", ("invalid notebook",), 0, {nb: b"{ this is not JSON"}),
        # cheats
        Case(
            "renamed_cells",
            ("tampered cells restored",),
            0,
            {nb: to_bytes(renamed_ids)},
            cheat=True,
        ),
        Case(
            "edited_tests",
            ("tampered cells restored",),
            0,
            {nb: to_bytes(edited_tests)},
            cheat=True,
        ),
        Case(
            "edited_tests_correct",
            ("tampered cells restored",),
            10,
            {nb: to_bytes(edited_correct)},
        ),
        Case(
            "patched_helpers",
            ("graded",),
            0,
            {nb: to_bytes(with_cell_after(zeros, "setup", PATCH_HELPERS))},
            cheat=True,
        ),
        Case(
            "always_equal", ("graded",), 0, {nb: answer_with(ALWAYS_EQUAL)}, cheat=True
        ),
        Case(
            "input_transformer",
            ("graded",),
            0,
            {nb: blank_with("setup", INPUT_TRANSFORMER)},
            cheat=True,
        ),
        Case(
            "event_hooks",
            ("graded",),
            0,
            {nb: to_bytes(with_cell_after(zeros, "setup", EVENT_HOOKS))},
            cheat=True,
        ),
        Case(
            "read_secrets",
            ("graded",),
            0,
            {
                nb: answer_with(
                    SCAN_SECRETS.replace("@PATHS@", paths).replace(
                        "@HOSTPATHS@", repr(host_paths)
                    )
                )
            },
            tag="SCAN:",
            cheat=True,
        ),
        Case(
            "write_secrets",
            ("graded",),
            0,
            {nb: answer_with(WRITE_SECRETS.replace("@PATHS@", repr(write_paths)))},
            tag="WRITE:",
            cheat=True,
        ),
        Case(
            "network",
            ("graded",),
            0,
            {nb: answer_with(NETWORK.replace("@PORT@", str(port)))},
            tag="NET:",
            cheat=True,
        ),
        Case(
            "detect_grader",
            ("graded",),
            0,
            {nb: answer_with(DETECT_GRADER)},
            tag="ENV:",
            cheat=True,
        ),
    ]


def write_submissions(cases: list[Case], folder: Path) -> None:
    """nbgrader's submitted/ layout: <student>/<assignment>/<files>."""
    for case in cases:
        target = folder / case.student / ASSIGNMENT
        target.mkdir(parents=True)
        for name, data in case.files.items():
            (target / name).write_bytes(data)
