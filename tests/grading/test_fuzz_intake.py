"""Fuzzing intake: a few hundred malformed variants of the released notebook, damaged
zip members and hostile names, next to one correct submission (the witness).

The variants' verdicts come from an independent reference: a variant whose JSON text is
malformed (duplicated keys, nesting, NaN, not UTF-8, too large) is invalid by
construction; one that is valid JSON is invalid exactly when nbformat's validator or
nbgrader's cell metadata validator rejects it. Every variant must be decided at intake
as the reference says; then one grading run over all of them, in one zip, must give one
row per student, the witness full marks, no traceback anywhere, no unprintable character
in what it writes or prints, and exit status 0. Only a few schema-valid variants run a
kernel: they are graded in the same run as the witness.
"""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import nbformat
from grading_course import gradebook_scores
from grading_submissions import (
    ASSIGNMENT,
    NOTEBOOK,
    answered,
    load,
    to_bytes,
    with_cell_after,
)
from malformed import (
    build_zip,
    concatenated,
    deflate_bomb,
    mutations,
    patch,
    zip_with_raw_member,
)

from rnn_course.grading import intake, report

VARIANTS = 300
GRADED_VALID = 3  # schema-valid variants that run a kernel in the grading run
ESCAPES = """import os, sys
os.write(2, b"\\x1b[2J\\x1b]0;owned\\x07")
print("\\x1b[31mred\\u202eevil\\r", file=sys.stderr)
print("\\x1b[31mred\\u202eevil\\r", file=sys.__stderr__)
"""
HOSTILE_MEMBERS = ["Ann_1", "ann_2", "eve\x1b[2J_1", "fay\u202e_1", "a b_1", "gus\r_1"]


def accepted_by_reference(data: bytes) -> bool:
    """Whether nbformat's and nbgrader's own validators accept the notebook ``data``."""
    from nbgrader.nbgraderformat.v3 import MetadataValidatorV3

    try:
        nb = nbformat.from_dict(json.loads(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.validate(nb)
        validator = MetadataValidatorV3()
        for cell in nb.cells:
            validator.validate_cell(cell)
    except Exception:  # noqa: BLE001 (any rejection)
        return False
    return True


def variants(course: Path) -> dict[str, tuple[bytes, bool, str]]:
    """student -> (notebook bytes, valid by the reference, what was changed)."""
    release = json.loads(to_bytes(load(course, "release")))
    found = {}
    for index, mutation in enumerate(mutations(release, VARIANTS)):
        valid = mutation.structural and accepted_by_reference(mutation.data)
        found[f"v{index:03d}"] = (mutation.data, valid, mutation.name)
    return found


def unprintable(text: str, allowed: str = "") -> list[str]:
    return [char for char in text if not char.isprintable() and char not in allowed]


def test_every_variant_is_decided_at_intake_as_the_reference_decides(course, tmp_path):
    found = variants(course)
    valid = [student for student, (_, ok, _) in found.items() if ok]
    assert 0 < len(valid) < VARIANTS // 3  # mostly invalid, some valid: both are tested
    root = tmp_path / "submitted"
    for student, (data, _, _) in found.items():
        (root / student).mkdir(parents=True)
        (root / student / NOTEBOOK).write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning from nbformat
        rows = intake.collect(
            root,
            ASSIGNMENT,
            NOTEBOOK,
            course / "exercises" / ASSIGNMENT / NOTEBOOK,
            tmp_path / "staging",
        )
    assert [row.student for row in rows] == sorted(found)
    for row in rows:
        data, ok, what = found[row.student]
        expected = None if ok else report.INVALID
        assert row.status == expected, f"{row.student} ({what}): {row.message}"
        assert not unprintable(row.message) and len(row.message) < 300


def _damaged_members(release: bytes) -> tuple[bytes, dict[str, str]]:
    """A zip of damaged members (one student each), and each student's status."""
    members = [
        ("zcrc_1_" + NOTEBOOK, release),
        ("zenc_1_" + NOTEBOOK, release),
        ("zdup_1_" + NOTEBOOK, release),
        ("zdup_2_" + NOTEBOOK, release),
        (f"zclimb/{ASSIGNMENT}/../../x.py", b""),
        *[(f"zmany/f{i}.txt", b"x") for i in range(101)],
    ]
    data = build_zip(members)
    data = patch(data, "zcrc_1_" + NOTEBOOK, crc=lambda old: old ^ 1)
    data = patch(data, "zenc_1_" + NOTEBOOK, flags=lambda old: old | 1)
    size = 64 << 20
    bomb = zip_with_raw_member(
        "zbomb_1_" + NOTEBOOK, deflate_bomb(64), size, zlib.crc32(bytes(size))
    )
    expected = {
        "zcrc": report.INVALID_ARCHIVE,
        "zenc": report.INVALID_ARCHIVE,
        "zdup": report.INVALID_ARCHIVE,
        "zclimb": report.INVALID_ARCHIVE,
        "zmany": report.INVALID,
        "zbomb": report.INVALID,
    }
    return concatenated(bomb, data), expected


def test_one_grading_run_over_every_hostile_input(sandbox_required, course, tmp_path):
    release_nb, source_nb = load(course, "release"), load(course, "source")
    release = to_bytes(release_nb)
    found = variants(course)
    valid = sorted(student for student, (_, ok, _) in found.items() if ok)
    graded = random.Random(1).sample(valid, GRADED_VALID)
    chosen = {
        student: item
        for student, item in found.items()
        if not item[1] or student in graded
    }
    members = [
        (f"witness_1_{NOTEBOOK}", to_bytes(answered(release_nb, source_nb))),
        (f"esc_1_{NOTEBOOK}", to_bytes(with_cell_after(release_nb, "setup", ESCAPES))),
        *[(f"{name}_{NOTEBOOK}", release) for name in HOSTILE_MEMBERS],
        *[(f"{student}_{NOTEBOOK}", data) for student, (data, _, _) in chosen.items()],
    ]
    damaged, damaged_statuses = _damaged_members(release)
    archive = tmp_path / "export.zip"
    archive.write_bytes(concatenated(build_zip(members), damaged))
    output = tmp_path / "graded"
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "rnn-course"),
            "grade",
            ASSIGNMENT,
            str(archive),
            "--course-root",
            str(course),
            "--output",
            str(output),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = (output / "grades.csv").read_text(encoding="utf-8")
    rows = {row["student"]: row for row in csv.DictReader(io.StringIO(table))}

    students = {"witness", "esc", *chosen, *damaged_statuses}
    assert students <= set(rows)
    hostile = set(rows) - students  # one row each, never one of the others' names
    assert len(hostile) == len(HOSTILE_MEMBERS)
    assert all(rows[name]["status"] == report.UNKNOWN for name in hostile)
    assert (rows["witness"]["score"], rows["witness"]["status"]) == ("10", "graded")
    assert rows["esc"]["score"] == "0" and rows["esc"]["status"] == report.GRADED
    for student, (_, ok, what) in chosen.items():
        row = rows[student]
        if ok:  # a kernel ran it: a blank release, however changed, scores 0
            assert row["status"] not in (report.GRADER_ERROR, report.INVALID), what
            assert row["score"] == "0", what
        else:
            assert row["status"] == report.INVALID, f"{what}: {row['message']}"
    for student, status in damaged_statuses.items():
        assert rows[student]["status"] == status, rows[student]["message"]
    assert gradebook_scores(course)["witness"] == 10

    texts = {"stdout": run.stdout, "stderr": run.stderr, "grades.csv": table}
    for folder in ("feedback", "logs"):
        for path in sorted((output / folder).iterdir()):
            texts[f"{folder}/{path.name}"] = path.read_text(encoding="utf-8")
    assert len([name for name in texts if name.startswith("feedback/")]) == len(rows)
    for name, text in texts.items():
        assert "Traceback" not in text, name
        for sequence in ("\x1b[2J", "\x1b]0", "\x1b[31m", "\u202e"):
            assert sequence not in text, (name, sequence)
        if name != "stderr":  # (the progress bar redraws its line with \r there)
            assert not unprintable(text, allowed="\n\t"), name
    for fields in csv.reader(io.StringIO(table)):
        *others, message = fields  # the message column: one printable line per reason
        assert not any(unprintable(text) for text in [*others, *message.split("\n")])
