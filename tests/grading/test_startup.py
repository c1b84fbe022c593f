"""The grader's main process stays light (issue 10, fast start-up): it reads the plan, the
submissions and the gradebook, and writes the results, without ever importing torch (about 2 s of
CPU that its workers, which do need torch, would otherwise wait for on a small machine)."""

from __future__ import annotations

import subprocess
import sys

from grading_submissions import ASSIGNMENT, NOTEBOOK, load, to_bytes

MAIN_PROCESS = """
import sys
from pathlib import Path
from rnn_course.grading.command import GradeOptions, grade
summary = grade(GradeOptions({assignment!r}, Path({submitted!r}), Path({course!r}),
                             workers=1, sandbox=False, progress=False))
print("ROWS", [(row.student, row.score) for row in summary.rows])
print("TORCH", "torch" in sys.modules)
import rnn_course
print("SHORTCUT", rnn_course.MemoryCell.__module__)
"""


def test_a_grading_run_never_imports_torch_in_its_main_process(course, tmp_path):
    release = load(course, "release")
    (tmp_path / "submitted" / "ann" / ASSIGNMENT).mkdir(parents=True)
    (tmp_path / "submitted" / "ann" / ASSIGNMENT / NOTEBOOK).write_bytes(
        to_bytes(release)
    )
    script = MAIN_PROCESS.format(
        assignment=ASSIGNMENT, submitted=str(tmp_path / "submitted"), course=str(course)
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ROWS [('ann', 0.0)]" in done.stdout, done.stdout  # it did grade
    assert "TORCH False" in done.stdout, done.stdout
    assert (
        "SHORTCUT rnn_course.cell" in done.stdout
    )  # the package's shortcuts still work
