"""Results of grading: one row per submission, the grade table (CSV), feedback pages and
the results cache.

Only the main process calls the writers here; workers return :class:`Row` objects (as
dicts). Everything written is deterministic (sorted, no times, no temporary paths), so
grading the same submissions twice gives byte-identical files.

Nothing unprintable is ever written or shown: a :class:`Row` escapes, when it is made,
every control character (ESC sequences, carriage returns, bidi overrides, zero-width
characters, lone surrogates) of its text as ``\\x1b``, ``\\u202e``, ...
(:func:`printable`); only the log and the parts' messages keep line breaks and tabs.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Statuses: every submission ends with exactly one.
GRADED = "graded"
# graded; test or locked cells were edited/deleted and restored
TAMPERED = "tampered cells restored"
# graded; the only notebook found had another name
RENAMED = "renamed notebook"
# graded; a cell or a test of a part ran out of time
TIMED_OUT_CELL = "timed out (cell)"
# the whole submission ran out of time; parts graded before count
TIMED_OUT_SUBMISSION = "timed out (submission)"
# the kernel ended (os._exit, a crash, a CPU limit); parts graded before count
KERNEL_DIED = "kernel died"
# the notebook hit the memory limit
OUT_OF_MEMORY = "out of memory"
# not a valid notebook (not JSON, not nbformat 4, bad nbgrader metadata, too large): 0
INVALID = "invalid notebook"
# this student's member(s) of the zip cannot be read (checksum, encrypted, ...): 0
INVALID_ARCHIVE = "invalid archive"
# no notebook (or several, none with the assignment's name): 0
MISSING = "missing notebook"
# not in the roster, not a valid student id, or ids differing in case: no score
UNKNOWN = "unknown student"
# the grader itself failed on this submission: nothing was recorded
GRADER_ERROR = "grader error"

STATUSES = (
    GRADED,
    TAMPERED,
    RENAMED,
    TIMED_OUT_CELL,
    TIMED_OUT_SUBMISSION,
    KERNEL_DIED,
    OUT_OF_MEMORY,
    INVALID,
    INVALID_ARCHIVE,
    MISSING,
    UNKNOWN,
    GRADER_ERROR,
)
NOT_FAILURES = (GRADED, TAMPERED, RENAMED)
"""Statuses the progress bar does not count as failures."""
FILE_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+~-]{0,199}")
"""What a row's student must look like to name its files (intake makes every one so)."""
NOT_GRADED = "not graded"
"""The message of each part of a row decided before grading (its own message says why)."""
MESSAGE_LINE = 160
"""Longest line of the grade table's message column (one per reason parts lost points)."""
_TRACEBACK = "Traceback (most recent call last)"


def printable(text: str, keep: str = "") -> str:
    """``text`` with each character that is not printable escaped (``\\x1b``,
    ``\\u202e``, ``\\n``), except those in ``keep`` (e.g. ``"\\n\\t"``): what may reach
    a file or a terminal."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or char in keep else ascii(char)[1:-1]
        for char in text
    )


@dataclass
class PartFeedback:
    grade_id: str
    description: str
    points: float | None
    max_points: float
    message: str = ""

    def __post_init__(self):
        self.grade_id = printable(str(self.grade_id))
        self.description = printable(str(self.description))
        self.message = printable(str(self.message), keep="\n\t")


@dataclass
class Row:
    """Everything recorded about one submission."""

    student: str
    assignment: str
    status: str
    message: str
    score: float | None
    max_score: float
    parts: list[PartFeedback] = field(default_factory=list)
    # of the submitted files: a rerun without --force reuses the row when unchanged
    fingerprint: str = ""
    log: str = (
        ""  # the sandbox's report and stderr tail, for the instructor (not in the CSV)
    )

    def __post_init__(self):
        self.student, self.assignment, self.status, self.message = (
            printable(str(text))
            for text in (self.student, self.assignment, self.status, self.message)
        )
        self.log = printable(str(self.log), keep="\n\t")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Row:
        data = dict(data)
        data["parts"] = [PartFeedback(**part) for part in data.get("parts", [])]
        return cls(**data)


def number(value: float | None) -> str:
    """Points as the CSV shows them: ``3``, ``2.5``, or empty for "not graded"."""
    return "" if value is None else f"{value:g}"


def part_reason(message: str) -> str:
    """A part's failure message as one short line of the grade table: the check's
    wrapped lines joined, a traceback reduced to its last line, cut at a word so that
    the line fits :data:`MESSAGE_LINE` (the feedback page keeps the whole message)."""
    head, traceback, tail = message.partition(_TRACEBACK)
    if traceback:
        last = [line for line in tail.splitlines() if line.strip()][-1:]
        message = " ".join([head, *last])
    return " ".join(message.split()) or "failed"


def _fitted(line: str) -> str:
    if len(line) <= MESSAGE_LINE:
        return line
    return line[: MESSAGE_LINE - 3].rsplit(" ", 1)[0] + "..."


def table_message(row: Row) -> str:
    """The grade table's message cell: the row's own message (one line: why the whole
    row is as it is), then one line per reason its parts lost points for,
    ``grade_id: reason`` (at most :data:`MESSAGE_LINE` characters); parts that lost
    points for the same reason share a line, in the parts' order."""
    reasons: dict[str, list[str]] = {}
    for part in row.parts:
        lost = part.points is None or part.points < part.max_points
        if lost and part.message != NOT_GRADED:
            reasons.setdefault(part_reason(part.message), []).append(part.grade_id)
    lines = [_fitted(f"{', '.join(ids)}: {reason}") for reason, ids in reasons.items()]
    return "\n".join([row.message, *lines] if row.message else lines)


def grade_table(rows: list[Row], grade_ids: list[str]) -> str:
    """The CSV text: student, assignment, score, max_score, one column per part,
    status, message (:func:`table_message`: one line per reason points were lost)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["student", "assignment", "score", "max_score", *grade_ids, "status", "message"]
    )
    for row in sorted(rows, key=lambda row: row.student):
        points = {part.grade_id: part.points for part in row.parts}
        writer.writerow(
            [
                row.student,
                row.assignment,
                number(row.score),
                number(row.max_score),
                *(number(points.get(grade_id)) for grade_id in grade_ids),
                row.status,
                table_message(row),
            ]
        )
    return buffer.getvalue()


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def feedback_page(row: Row) -> str:
    """A self-contained HTML page for the student: score, status, and each part's result
    and message.

    It shows what the tests said (the messages of the exercise checks), never a hidden
    test's code or a traceback, and nothing the student's notebook printed (its outputs
    stay in the sandbox).
    """
    escape = html.escape
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(row.assignment)}: feedback for {escape(row.student)}</title>",
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;"
        "padding:0 1em}table{border-collapse:collapse;width:100%}"
        "td,th{border:1px solid #ccc;padding:.4em;vertical-align:top;text-align:left}"
        "pre{white-space:pre-wrap;margin:0}.pass{color:#060}.fail{color:#a00}</style>",
        "</head><body>",
        f"<h1>{escape(row.assignment)}</h1>",
        f"<p>Student: <b>{escape(row.student)}</b><br>"
        f"Score: <b>{escape(number(row.score) or '-')}"
        f" / {escape(number(row.max_score))}</b><br>Status: {escape(row.status)}</p>",
    ]
    if row.message:
        lines.append(f"<p>{escape(row.message)}</p>")
    if row.parts:
        lines.append("<table><tr><th>test</th><th>points</th><th>result</th></tr>")
        for part in row.parts:
            passed = part.points is not None and part.points >= part.max_points
            verdict = "passed" if passed else (part.message or "failed")
            lines.append(
                f"<tr><td><code>{escape(part.grade_id)}</code><br>"
                f"{escape(part.description)}</td>"
                f"<td>{escape(number(part.points) or '-')} / "
                f"{escape(number(part.max_points))}</td>"
                f'<td class="{"pass" if passed else "fail"}">'
                f"<pre>{escape(verdict)}</pre></td></tr>"
            )
        lines.append("</table>")
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"


class OutputFolder:
    """The grading output of one assignment::

    grades.csv                  the grade table
    feedback/<student>.html     one page per student, to hand back
    results/<student>.json      every row, kept by the next run (unless changed/--force)
    logs/<student>.log          what the sandbox reported (for the instructor)
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def _stem(student: str) -> str:
        if not FILE_STEM.fullmatch(student):
            raise ValueError(f"not a student id that can name a file: {ascii(student)}")
        return student

    def cached(self, student: str) -> Row | None:
        path = self.root / "results" / f"{self._stem(student)}.json"
        try:
            return Row.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, row: Row) -> None:
        stem = self._stem(row.student)
        write_atomically(
            self.root / "results" / f"{stem}.json",
            json.dumps(row.to_dict(), indent=1, sort_keys=True),
        )
        write_atomically(self.root / "feedback" / f"{stem}.html", feedback_page(row))
        if row.log:
            write_atomically(self.root / "logs" / f"{stem}.log", row.log)

    def write_table(self, rows: list[Row], grade_ids: list[str]) -> Path:
        path = self.root / "grades.csv"
        write_atomically(path, grade_table(rows, grade_ids))
        return path
