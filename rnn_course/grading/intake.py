"""Finding the submissions and checking them before any student code runs.

Accepted layouts (``SUBMISSIONS`` on the command line):

* a folder with one sub-folder per student, nbgrader's ``submitted/`` layout:
  ``<student>/<assignment>/<notebook>.ipynb``, or without the assignment level:
  ``<student>/<notebook>.ipynb``;
* a zip file (as exported by an LMS), either with the same folders inside (``<student>/...``) or flat,
  one file per submission named ``<student>_<anything>.ipynb``: the student id is the text before the
  first underscore (Canvas's ``<name>_<id>_<id>_<file>`` and Moodle-style exports where the first field
  is the login). Several files of one student count as that student's files.

Per student, the notebook is ``<notebook>.ipynb`` (the released notebook's name); if it is missing but
there is exactly one other notebook, that one is graded under the right name (status "renamed
notebook"); none or several others: "missing notebook". Other regular files of the folder go along
(nbgrader copies them too); symbolic links and sub-folders are ignored. Limits: 20 MiB per file,
50 MiB and 100 files per student. The notebook must be readable by nbformat ("invalid notebook"
otherwise), and its test and locked cells are compared with the release by nbgrader's checksums
("tampered cells restored": nbgrader puts them back, and the grader's own tests do not depend on them).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import report

MAX_FILE_BYTES = 20 << 20
MAX_STUDENT_BYTES = 50 << 20
MAX_FILES = 100
MAX_ZIP_BYTES = 4 << 30
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}")
"""What a student id may look like: it becomes a folder and file name."""


@dataclass
class Submission:
    """One student's submission as found on disk, before grading."""

    student: str
    files: dict[str, Path] = field(default_factory=dict)  # file name -> file on disk
    notebook: str | None = None  # the key in ``files`` graded as the assignment's notebook
    status: str | None = None  # set when it cannot be graded: MISSING, INVALID or UNKNOWN
    message: str = ""
    renamed_from: str | None = None
    tampered: list[str] = field(default_factory=list)  # "test_x (edited)", ...
    fingerprint: str = ""


def read_roster(path: Path) -> list[str]:
    """Student ids, one per line, or a CSV file with an ``id`` column (nbgrader's roster format)."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8-sig").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if lines and "," in lines[0]:
        header = [name.strip().lower() for name in lines[0].split(",")]
        if "id" not in header:
            raise ValueError(f"{path}: a CSV roster needs an 'id' column")
        column = header.index("id")
        return [line.split(",")[column].strip() for line in lines[1:] if line.split(",")[column].strip()]
    return lines


def collect(submissions: Path, assignment: str, notebook: str, release_notebook: Path, staging: Path,
            roster: list[str] | None = None) -> list[Submission]:
    """Every submission found, checked; plus a "missing notebook" entry for roster students without one."""
    import nbformat

    submissions = Path(submissions)
    if submissions.is_file() and zipfile.is_zipfile(submissions):
        found = _from_zip(submissions, staging, notebook)
    elif submissions.is_dir():
        found = _from_folder(submissions, assignment)
    else:
        raise ValueError(f"{submissions} is neither a folder of submissions nor a zip file")
    release = nbformat.read(release_notebook, as_version=4)
    results = []
    for student, files in sorted(found.items()):
        submission = Submission(student)
        if not STUDENT_ID.fullmatch(student):
            submission.student = _printable(student)
            submission.status, submission.message = report.UNKNOWN, "the folder name is not a valid student id"
        elif roster is not None and student not in roster:
            submission.status, submission.message = report.UNKNOWN, "not in the roster: fix the name or the roster"
        else:
            _check_files(submission, files, notebook, release, Path(staging) / "repaired" / student)
        results.append(submission)
    if roster is not None:
        seen = {submission.student for submission in results}
        for student in sorted(set(roster) - seen):
            results.append(Submission(student, status=report.MISSING, message="no submission found"))
    return results


def _printable(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.@+-]", "_", name)[:100] or "_"
    return cleaned if cleaned[0].isalnum() else "_" + cleaned


def _regular_files(folder: Path) -> dict[str, Path]:
    files = {}
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        if entry.name.startswith(".") or entry.is_symlink() or not entry.is_file(follow_symlinks=False):
            continue
        files[entry.name] = Path(entry.path)
    return files


def _from_folder(root: Path, assignment: str) -> dict[str, dict[str, Path]]:
    found = {}
    for entry in sorted(os.scandir(root), key=lambda entry: entry.name):
        if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            continue
        folder = Path(entry.path)
        nested = folder / assignment
        if nested.is_dir() and not nested.is_symlink():
            folder = nested
        found[entry.name] = _regular_files(folder)
    return found


def _from_zip(path: Path, staging: Path, notebook: str) -> dict[str, dict[str, Path]]:
    """Read the zip's members by name only: nothing is extracted to a path the archive chose.

    A flat member named ``<student>_<anything>_<notebook>`` is that student's ``<notebook>``.
    """
    found: dict[str, dict[str, Path]] = {}
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            parts = [part for part in info.filename.replace("\\", "/").split("/") if part]
            if info.is_dir() or not parts or parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts):
                continue
            if len(parts) >= 2:
                student, name = parts[0], parts[-1]
            else:
                student, _, name = parts[0].partition("_")
                if not name:
                    continue
                if name == notebook or name.endswith("_" + notebook):
                    name = notebook
            safe_name = _printable(name)
            if not STUDENT_ID.fullmatch(student):
                found.setdefault(student, {})
                continue
            files = found.setdefault(student, {})
            if len(files) >= MAX_FILES:
                continue
            with archive.open(info) as member:
                data = member.read(MAX_FILE_BYTES + 1)
            total += len(data)
            if total > MAX_ZIP_BYTES:
                raise ValueError(f"{path} holds more than {MAX_ZIP_BYTES >> 30} GiB")
            target = Path(staging) / student / safe_name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            files[safe_name] = target
    return found


def _check_files(submission: Submission, files: dict[str, Path], notebook: str, release, repaired: Path) -> None:
    sizes = {}
    for name, path in files.items():
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            continue
        sizes[name] = info.st_size
    files = {name: path for name, path in files.items() if name in sizes}
    submission.files = files
    too_large = [name for name, size in sizes.items() if size > MAX_FILE_BYTES]
    if too_large or sum(sizes.values()) > MAX_STUDENT_BYTES or len(files) > MAX_FILES:
        submission.status = report.INVALID
        submission.message = (f"submission too large (at most {MAX_FILES} files, {MAX_FILE_BYTES >> 20} MiB each, "
                              f"{MAX_STUDENT_BYTES >> 20} MiB in all)")
        return
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(_read(files[name])).digest())
    submission.fingerprint = digest.hexdigest()
    notebooks = sorted(name for name in files if name.endswith(".ipynb"))
    if notebook in files:
        submission.notebook = notebook
    elif len(notebooks) == 1:
        submission.notebook = notebooks[0]
        submission.renamed_from = notebooks[0]
    else:
        submission.status = report.MISSING
        submission.message = (f"no {notebook}" if not notebooks else
                              f"no {notebook}, and several other notebooks: {', '.join(notebooks)}")
        return
    import nbformat

    try:
        nb = nbformat.reads(_read(files[submission.notebook]).decode("utf-8"), as_version=4)
        if not isinstance(nb.get("cells"), list) or nb.get("nbformat") != 4:
            raise ValueError("not an nbformat 4 notebook")
    except Exception as error:  # noqa: BLE001 (whatever nbformat raises on garbage)
        submission.status = report.INVALID
        submission.message = f"{submission.notebook} is not a readable notebook ({type(error).__name__})"
        return
    submission.tampered = tampered_cells(nb, release)
    if forget_unknown_grade_ids(nb, release):
        repaired.mkdir(parents=True, exist_ok=True)
        path = repaired / submission.notebook
        path.write_text(nbformat.writes(nb), encoding="utf-8")
        submission.files[submission.notebook] = path


def forget_unknown_grade_ids(nb, release) -> bool:
    """Make cells whose grade id the release does not know into plain cells; True if there were any.

    nbgrader 0.9.6 means to do this itself (``OverwriteCells`` drops an unknown grade id), but with
    ``add_missing_cells`` it then fails on the cell it has just changed (KeyError 'grade_id'), and the
    whole submission with it. Renaming a test cell must cost no more than deleting it: it is restored.
    """
    known = {cell.metadata.nbgrader["grade_id"] for cell in release.cells if "nbgrader" in cell.metadata}
    changed = False
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        if "nbgrader" in meta and meta["nbgrader"].get("grade_id") not in known:
            del meta["nbgrader"]
            changed = True
    return changed


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)


def tampered_cells(submitted, release) -> list[str]:
    """Test and locked cells of the release that the submission deleted, duplicated or edited.

    Compared as nbgrader's ``OverwriteCells`` compares them: by grade id and nbgrader's checksum.
    """
    from nbgrader import utils

    found: dict[str, list] = {}
    for cell in submitted.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id:
            found.setdefault(grade_id, []).append(cell)
    known = {cell.metadata.nbgrader["grade_id"] for cell in release.cells if "nbgrader" in cell.metadata}
    changes = [f"{grade_id} (unknown grade id)" for grade_id in found if grade_id not in known]
    for cell in release.cells:
        if not (utils.is_grade(cell) or utils.is_locked(cell)):
            continue
        grade_id = cell.metadata.nbgrader["grade_id"]
        copies = found.get(grade_id, [])
        if not copies:
            changes.append(f"{grade_id} (deleted)")
        elif len(copies) > 1:
            changes.append(f"{grade_id} (duplicated)")
        else:
            try:
                same = utils.compute_checksum(copies[0]) == cell.metadata.nbgrader.get("checksum")
            except Exception:  # noqa: BLE001 (a mangled cell)
                same = False
            if not same:
                changes.append(f"{grade_id} (edited)")
    return changes
