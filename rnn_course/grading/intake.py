"""Finding the submissions and checking them before any student code runs.

Accepted layouts (``SUBMISSIONS`` on the command line):

* a folder with one sub-folder per student, nbgrader's ``submitted/`` layout:
  ``<student>/<assignment>/<notebook>.ipynb``, or without the assignment level:
  ``<student>/<notebook>.ipynb``;
* a zip file (as exported by an LMS), either with the same folders inside
  (``<student>/<assignment>/...`` or ``<student>/...``, read by the same rules as a
  folder) or flat, one file per submission named ``<student>_<anything>.ipynb``: the
  student id is the text before the first underscore (Canvas's
  ``<name>_<id>_<id>_<file>`` and Moodle-style exports where the first field is the
  login); a flat file counts as one in the student's folder. A zip whose top level is
  one folder that wraps these (``zip -r submitted.zip submitted``, an export in a
  folder named for the assignment) is read inside it: a top folder is a wrapping one
  when it is named for the assignment or holds students' folders for it
  (``submitted/<student>/<assignment>/``), unless it holds a folder for the
  assignment or its notebook itself (then it is one student's folder).

In a folder or zip where students have folders for several assignments (nbgrader's
``submitted/<student>/<assignment>/``), a student's folder for this assignment is read
(its files; the student's other folders and files are ignored), and a student folder
with sub-folders but neither a folder for this assignment nor a notebook of its own has
nothing for this assignment: it is not a row but listed once
(:attr:`Submissions.absent`), unless the roster names the student, whose row is then
"missing notebook" ("not submitted").

Per student, the notebook is ``<notebook>.ipynb`` (the released notebook's name); if it
is missing but there is exactly one other notebook, that one is graded under the right
name (status "renamed notebook"); none or several others: "missing notebook". Other
regular files of the folder go along (nbgrader copies them too); symbolic links,
sub-folders (in a zip, members below the folder read), hidden files and files whose
names are not printable text (control characters, bidi overrides, bytes that are not
UTF-8, more than 255 bytes) are ignored.

Every input ends as one row per student, whatever it holds; nothing a student made can
stop the run:

* **Notebooks** are read once, here, with bounds: at most 20 MiB, UTF-8, JSON nested at
  most 64 levels (counted without recursion before parsing), no duplicated keys, no
  NaN or infinite numbers; then nbformat's schema and nbgrader's cell metadata schema.
  What fails is an "invalid notebook" row whose message says where; nothing downstream
  sees a notebook that was not validated. Missing or duplicated cell ids are repaired
  (as nbformat does, but deterministically).
* **Zip archives** are read member by member, never extracted to a path the archive
  chose: only stored and deflated members, each decompressed to at most 20 MiB however
  large its header says it is, checksums checked; a member of the folder read that
  cannot be read, is encrypted, is compressed otherwise or duplicates another of the
  student's files, or any of the student's members that climbs out of its folder
  (``..``), makes that student's row "invalid archive" (members of folders not read
  are never decompressed). An archive that cannot be opened at all, with more than
  100,000 members or more than 4 GiB of data is refused as a whole
  (:class:`IntakeError`): no row is recorded.
* **Limits** per student: 100 files, 20 MiB each, 50 MiB in all ("invalid notebook",
  "submission too large").
* **Identities**: a row's student is always printable ASCII and unique, also ignoring
  case. An id that is not valid (see :data:`STUDENT_ID`; Unicode look-alikes, other
  normalisation forms, control characters) and ids that differ only in case are
  refused ("unknown student") under a name made unique with a hash of the original
  (``a_b~1f2e3d4c``); the message shows the original with escapes. With ``--roster``,
  only the roster's ids are graded.

The notebook's test and locked cells are compared with the release by nbgrader's
checksums ("tampered cells restored": nbgrader puts them back, and the grader's own
tests do not depend on them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import stat
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from . import report

MAX_FILE_BYTES = 20 << 20
MAX_STUDENT_BYTES = 50 << 20
MAX_FILES = 100
MAX_ZIP_BYTES = 4 << 30
MAX_ZIP_MEMBERS = 100_000
MAX_NESTING = 64
MAX_NAME_BYTES = 255
MAX_WRAPPING = 3
"""How many folders around a zip's students' folders are looked through."""
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}")
"""What a student id may look like: it becomes a folder and file name."""
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
"""Compression methods read (deflate bounds its output; bzip2 and LZMA do not here)."""

_TOO_LARGE = (
    f"submission too large (at most {MAX_FILES} files, {MAX_FILE_BYTES >> 20} "
    f"MiB each, {MAX_STUDENT_BYTES >> 20} MiB in all)"
)
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class IntakeError(ValueError):
    """The submissions as a whole cannot be read (not one student's fault); says why."""


class NotebookProblem(ValueError):
    """Why a notebook cannot be graded, in words for the grade table."""


@dataclass
class Submission:
    """One student's submission as found on disk, before grading."""

    student: str
    files: dict[str, Path] = field(default_factory=dict)  # file name -> file on disk
    notebook: str | None = None  # the key in ``files`` graded as the notebook
    status: str | None = None  # set when it cannot be graded (report's statuses)
    message: str = ""
    renamed_from: str | None = None
    tampered: list[str] = field(default_factory=list)  # "test_x (edited)", ...
    fingerprint: str = ""


class Submissions(list):
    """The submissions found (a list, sorted by student), and :attr:`absent`: the
    student folders that hold other assignments but nothing for this one (not rows)."""

    def __init__(self, submissions=(), absent=()):
        super().__init__(submissions)
        self.absent: list[str] = list(absent)


@dataclass
class _Found:
    """What the folder or archive holds for one student id, before any checks."""

    files: dict[str, Path] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # unusable file names
    problem: tuple[str, str] | None = None  # (status, message): nothing more is read
    size: int = 0  # bytes staged so far (archives)
    index: int = 0  # its staging folder's name (archives)


def shown(text: str, limit: int = 80) -> str:
    """``text`` quoted, every non-ASCII and unprintable character escaped, shortened:
    what a message shows of a name (``Ann``, ``A\\u0301nn`` and ``Ann\\x1b`` differ)."""
    quoted = ascii(text)
    return quoted if len(quoted) <= limit else quoted[: limit - 3] + "..."


def read_roster(path: Path) -> list[str]:
    """Student ids, one per line, or a CSV file with an ``id`` column (as nbgrader's).

    Every id must be a valid student id, and no two may differ only in case.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: the roster is not UTF-8 text ({error.reason})"
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if lines and "," in lines[0]:
        header = [name.strip().lower() for name in lines[0].split(",")]
        if "id" not in header:
            raise ValueError(f"{path}: a CSV roster needs an 'id' column")
        column = header.index("id")
        rows = [line.split(",") for line in lines[1:]]
        lines = [row[column].strip() for row in rows if len(row) > column]
        lines = [line for line in lines if line]
    for student in lines:
        if not STUDENT_ID.fullmatch(student):
            raise ValueError(
                f"{path}: {shown(student)} is not a valid student id "
                "(up to 100 letters, digits and _.@+-, starting with a "
                "letter or digit)"
            )
    twins = [ids for ids in _by_key(lines).values() if len(ids) > 1]
    if twins:
        raise ValueError(
            f"{path}: the ids {', '.join(map(shown, twins[0]))} differ "
            "only in case: keep one id per student"
        )
    return lines


def collect(
    submissions: Path,
    assignment: str,
    notebook: str,
    release_notebook: Path,
    staging: Path,
    roster: list[str] | None = None,
) -> list[Submission]:
    """Every submission found, checked, one per student id (sorted); plus a "missing
    notebook" entry for each roster student without one; folders without this
    assignment in :attr:`Submissions.absent`. Raises :class:`IntakeError` only when the
    submissions as a whole cannot be read."""
    import nbformat

    submissions, staging = Path(submissions), Path(staging)
    absent: list[str] = []
    if submissions.is_dir():
        found, absent = _from_folder(submissions, assignment)
    elif submissions.is_file():
        found, absent = _from_zip(
            submissions, staging / "archive", assignment, notebook
        )
    else:
        raise IntakeError(f"{submissions} is neither a folder of submissions nor a zip")
    release = nbformat.read(release_notebook, as_version=4)
    names = _row_names(list(found), roster)
    results = []
    for index, (raw, entry) in enumerate(found.items()):
        name, identity_problem = names[raw]
        submission = Submission(name)
        if identity_problem:
            problems = [identity_problem] + (
                [entry.problem[1]] if entry.problem else []
            )
            submission.status, submission.message = report.UNKNOWN, "; ".join(problems)
        elif entry.problem:
            submission.status, submission.message = entry.problem
        else:
            repaired = staging / "repaired" / str(index)
            _check_files(submission, entry, notebook, release, repaired)
        results.append(submission)
    if roster is not None:
        for student in sorted(set(roster) - set(found)):
            message = (
                f"not submitted: the student's folder has no {assignment} folder"
                if student in absent
                else "no submission found"
            )
            results.append(Submission(student, status=report.MISSING, message=message))
        absent = [student for student in absent if student not in roster]
    results.sort(key=lambda submission: submission.student)
    return Submissions(results, [shown_id(student) for student in absent])


def shown_id(student: str) -> str:
    """A folder's name as a summary shows it: a valid id as it is, others escaped."""
    return student if STUDENT_ID.fullmatch(student) else shown(student)


# --- identities ----------------------------------------------------------------------


def _by_key(ids) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for student in ids:
        groups.setdefault(student.lower(), []).append(student)
    return groups


def _disambiguated(raw: str, length: int = 8) -> str:
    """A printable row name for an id that cannot be one: a stub and a hash of it."""
    stub = re.sub(r"[^A-Za-z0-9]+", "_", raw).strip("_")[:40] or "id"
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{stub}~{digest[:length]}"


def _row_names(raw_ids: list[str], roster: list[str] | None) -> dict[str, tuple]:
    """Each found id's row name and, when it is refused, why (``None`` otherwise).

    Row names are unique ignoring case: a valid id keeps its name unless another id of
    the run (or of the roster) differs from it only in case; the others get a hashed
    name (:func:`_disambiguated`), never a valid id, so it cannot take a student's row.
    """
    valid = [raw for raw in raw_ids if STUDENT_ID.fullmatch(raw)]
    groups = _by_key(valid)
    in_roster = {student.lower(): student for student in roster or []}
    roster = None if roster is None else set(roster)
    names: dict[str, tuple] = {}
    for raw in raw_ids:
        twins = [other for other in groups.get(raw.lower(), []) if other != raw]
        if not STUDENT_ID.fullmatch(raw):
            names[raw] = (
                None,
                f"{shown(raw)} is not a valid student id (up to 100 "
                "letters, digits and _.@+-, starting with a letter or digit)",
            )
        elif roster is not None and raw in roster:
            names[raw] = (raw, None)
        elif roster is not None and raw.lower() in in_roster:
            names[raw] = (
                None,
                f"not in the roster, which has "
                f"{shown(in_roster[raw.lower()])} (ids are case-sensitive)",
            )
        elif roster is not None:
            keep = not twins
            names[raw] = (
                raw if keep else None,
                "not in the roster: fix the name or the roster",
            )
        elif twins:
            everyone = ", ".join(shown(other) for other in sorted([raw, *twins]))
            names[raw] = (
                None,
                f"the ids {everyone} differ only in case: rename the "
                "folders so that each student has one id, or pass --roster",
            )
        else:
            names[raw] = (raw, None)
    taken = {name.lower() for name, _ in names.values() if name}
    taken |= set(in_roster)
    for raw in sorted(raw_ids, key=ascii):
        name, problem = names[raw]
        if name is None:
            for length in (8, 16, 64):
                name = _disambiguated(raw, length)
                if name.lower() not in taken:
                    break
            taken.add(name.lower())
            names[raw] = (name, problem)
    return names


# --- folders and archives ------------------------------------------------------------


def _usable_file_name(name: str) -> bool:
    """A name that can be shown and written anywhere: printable, one path part."""
    return (
        name.isprintable()
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and len(name.encode()) <= MAX_NAME_BYTES
    )


def _regular_files(folder: Path) -> _Found:
    found = _Found()
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        if (
            entry.name.startswith(".")
            or entry.is_symlink()
            or not entry.is_file(follow_symlinks=False)
        ):
            continue
        if _usable_file_name(entry.name):
            found.files[entry.name] = Path(entry.path)
        else:
            found.ignored.append(entry.name)
    return found


def _sub_folders(folder: Path) -> list[str]:
    return [
        entry.name
        for entry in os.scandir(folder)
        if not entry.name.startswith(".")
        and not entry.is_symlink()
        and entry.is_dir(follow_symlinks=False)
    ]


def _holds_other_assignments(own_files, has_sub_folders: bool) -> bool:
    """Whether a student folder without a folder for this assignment has nothing for
    it: sub-folders (other assignments', in nbgrader's layout) but no notebook of its
    own. One rule for folders and zips."""
    return has_sub_folders and not any(name.endswith(".ipynb") for name in own_files)


def _from_folder(root: Path, assignment: str) -> tuple[dict[str, _Found], list[str]]:
    """Each student folder's files, and the student folders that hold other
    assignments' folders but neither this one's nor a notebook of their own."""
    found, absent = {}, []
    for entry in sorted(os.scandir(root), key=lambda entry: entry.name):
        if (
            entry.name.startswith(".")
            or entry.is_symlink()
            or not entry.is_dir(follow_symlinks=False)
        ):
            continue
        folder = Path(entry.path)
        nested = folder / assignment
        if nested.is_dir() and not nested.is_symlink():
            folder = nested
        files = _regular_files(folder)
        if folder != nested and _holds_other_assignments(
            files.files, bool(_sub_folders(folder))
        ):
            absent.append(entry.name)  # nbgrader's layout, other assignments only
            continue
        found[entry.name] = files
    return found, absent


_OUTSIDE = "an archive member outside every student's folder"


@dataclass
class _Member:
    """A zip member's place, by its name only: whose, in which of the student's
    folders (``()``: the student's own files), under which file name."""

    info: zipfile.ZipInfo
    student: str
    folders: tuple[str, ...] = ()
    name: str | None = None  # None: a folder's entry
    problem: str | None = None  # its name is refused: the student's row says why


def _member_parts(filename: str) -> tuple[list[str], str | None] | None:
    """A member name's path parts and, when the name is refused, why; None to skip it
    (``__MACOSX``, hidden files and folders)."""
    parts = [part for part in filename.replace("\\", "/").split("/") if part]
    if not parts or parts[0] == "__MACOSX":
        return None
    if filename[:1] in "/\\" or re.match(r"[A-Za-z]:", parts[0]) or parts[0] == "..":
        return [], _OUTSIDE
    if ".." in parts:
        return parts, (
            f"the archive member {shown(filename)} climbs out of "
            "the student's folder ('..')"
        )
    if any(part.startswith(".") for part in parts):
        return None
    return parts, None


def _wrapping_folders(
    paths: list[tuple[list[str], bool]], assignment: str, notebook: str
) -> list[str]:
    """The folders that wrap the students' level of a zip (``submitted/`` zipped with
    ``zip -r``, an export in a folder named for the assignment), from its members'
    ``(parts, is a folder)``, at most :data:`MAX_WRAPPING` of them. A wrapping folder
    is the only thing at the top, is named for the assignment or holds students'
    folders for it (``<top>/<student>/<assignment>/``), and holds neither a folder for
    the assignment nor its notebook (then it is one student's folder)."""
    prefix: list[str] = []
    while len(prefix) < MAX_WRAPPING:
        inside = [
            (parts[len(prefix) :], is_dir)
            for parts, is_dir in paths
            if parts[len(prefix) :]
        ]
        tops = {parts[0] for parts, _ in inside}
        if len(tops) != 1 or any(len(parts) == 1 and not d for parts, d in inside):
            break  # several things at the top, or a file
        (top,) = tops
        folders = [parts[1:] if is_dir else parts[1:-1] for parts, is_dir in inside]
        if any(inner[:1] == [assignment] for inner in folders) or any(
            parts[1:] == [notebook] for parts, is_dir in inside if not is_dir
        ):
            break  # one student's folder
        if assignment.lower() in top.lower() or any(
            inner[1:2] == [assignment] for inner in folders
        ):
            prefix.append(top)
        else:
            break
    return prefix


def _members(archive: zipfile.ZipFile, assignment: str, notebook: str) -> list[_Member]:
    """Every member's place, below the wrapping folders (if any). A flat member
    ``<student>_<anything>_<notebook>`` is that student's notebook."""
    named = []
    for info in archive.infolist():
        split = _member_parts(info.filename)
        if split is not None and not (split[1] and info.is_dir()):
            named.append((info, *split))
    clean = [(parts, info.is_dir()) for info, parts, problem in named if not problem]
    prefix = _wrapping_folders(clean, assignment, notebook)
    members = []
    for info, parts, problem in named:
        if prefix and parts[: len(prefix)] == prefix:
            parts = parts[len(prefix) :]
            if not parts:
                continue  # the wrapping folder's own entry
        if problem:
            if parts[:1] in ([], [".."]):
                members.append(_Member(info, info.filename, problem=_OUTSIDE))
            else:
                members.append(_Member(info, parts[0], problem=problem))
        elif info.is_dir():
            members.append(_Member(info, parts[0], tuple(parts[1:])))
        elif len(parts) >= 2:
            members.append(_Member(info, parts[0], tuple(parts[1:-1]), parts[-1]))
        else:
            student, _, name = parts[0].partition("_")
            if not name:
                continue
            if name == notebook or name.endswith("_" + notebook):
                name = notebook
            members.append(_Member(info, student, (), name))
    return members


def _levels(members: list[_Member], assignment: str) -> dict[str, tuple | None]:
    """Which of each student's folders is read (as :func:`_from_folder` reads a
    folder): ``(assignment,)`` if the student has it, else ``()`` (the student's own
    files); None when the student holds other assignments only (absent)."""
    by_student: dict[str, list[_Member]] = {}
    for member in members:
        by_student.setdefault(member.student, []).append(member)
    level_of = {}
    for student, own in by_student.items():
        own_files = [
            member.name
            for member in own
            if not member.folders and member.name and _usable_file_name(member.name)
        ]
        if any(member.folders[:1] == (assignment,) for member in own):
            level_of[student] = (assignment,)
        elif not any(member.problem for member in own) and _holds_other_assignments(
            own_files, any(member.folders for member in own)
        ):
            level_of[student] = None
        else:
            level_of[student] = ()
    return level_of


def _open_archive(path: Path) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(path)
    except Exception as error:  # noqa: BLE001 (whatever a damaged archive raises)
        raise IntakeError(
            f"{path} is not a readable zip archive ({type(error).__name__}: {error})"
        ) from None
    if len(archive.infolist()) > MAX_ZIP_MEMBERS:
        archive.close()
        raise IntakeError(f"{path} has more than {MAX_ZIP_MEMBERS} members: split it")
    return archive


def _from_zip(
    path: Path, staging: Path, assignment: str, notebook: str
) -> tuple[dict[str, _Found], list[str]]:
    """Read the zip's members by name only: nothing is extracted to a path the archive
    chose. Each student's files, as :func:`_from_folder` finds them, and the students
    who hold other assignments only."""
    found: dict[str, _Found] = {}
    total = 0
    with _open_archive(path) as archive:
        members = _members(archive, assignment, notebook)
        level_of = _levels(members, assignment)
        for member in members:
            info, student, name = member.info, member.student, member.name
            if level_of[student] is None:
                continue  # absent: nothing for this assignment
            entry = found.setdefault(student, _Found(index=len(found)))
            if member.problem:
                entry.problem = entry.problem or (
                    report.INVALID_ARCHIVE,
                    member.problem,
                )
                continue
            if (
                entry.problem
                or not STUDENT_ID.fullmatch(student)
                or name is None
                or member.folders != level_of[student]
            ):
                continue  # nothing more is read for this student, or not this file
            if not _usable_file_name(name):
                entry.ignored.append(name)
            elif name in entry.files:
                entry.problem = (
                    report.INVALID_ARCHIVE,
                    (
                        f"two members of the archive are this student's {shown(name)}: "
                        "keep one"
                    ),
                )
            elif len(entry.files) >= MAX_FILES or entry.size >= MAX_STUDENT_BYTES:
                entry.problem = (report.INVALID, _TOO_LARGE)
            else:
                data = _read_member(archive, info, entry)
                if data is None:
                    continue
                total += len(data)
                if total > MAX_ZIP_BYTES:
                    raise IntakeError(
                        f"{path} holds more than {MAX_ZIP_BYTES >> 30} "
                        "GiB of data: split it"
                    )
                entry.size += len(data)
                target = staging / str(entry.index) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                entry.files[name] = target
    absent = sorted(student for student, level in level_of.items() if level is None)
    return found, absent


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, entry: _Found):
    """The member's bytes, decompressed at most to the limit (the header's sizes are
    not trusted), its checksum checked; ``None`` with ``entry.problem`` set if not."""
    what = f"the archive member {shown(info.filename)}"
    if info.flag_bits & 0x1:
        entry.problem = (report.INVALID_ARCHIVE, f"{what} is encrypted")
        return None
    if info.compress_type not in ZIP_METHODS:
        entry.problem = (
            report.INVALID_ARCHIVE,
            (
                f"{what} is compressed with method {info.compress_type} (the grader "
                f"reads {' and '.join(ZIP_METHODS.values())} members)"
            ),
        )
        return None
    limit = min(MAX_FILE_BYTES, MAX_STUDENT_BYTES - entry.size)
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)  # a read short of the limit met the checksum
    except Exception as error:  # noqa: BLE001 (whatever a damaged member raises)
        entry.problem = (
            report.INVALID_ARCHIVE,
            (
                f"{what} cannot be read ({type(error).__name__}: {str(error)[:120]}): "
                "ask for the file again"
            ),
        )
        return None
    if len(data) > limit:
        entry.problem = (report.INVALID, _TOO_LARGE)
        return None
    return data


# --- one student's files -------------------------------------------------------------


def _check_files(
    submission: Submission, found: _Found, notebook: str, release, repaired: Path
) -> None:
    sizes = {}
    for name, path in found.files.items():
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode):
            sizes[name] = info.st_size
    files = {name: path for name, path in found.files.items() if name in sizes}
    submission.files = files
    too_large = [name for name, size in sizes.items() if size > MAX_FILE_BYTES]
    if too_large or sum(sizes.values()) > MAX_STUDENT_BYTES or len(files) > MAX_FILES:
        submission.status, submission.message = report.INVALID, _TOO_LARGE
        return
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(
            name.encode() + b"\0" + hashlib.sha256(_read(files[name])).digest()
        )
    submission.fingerprint = digest.hexdigest()
    notebooks = sorted(name for name in files if name.endswith(".ipynb"))
    if notebook in files:
        submission.notebook = notebook
    elif len(notebooks) == 1:
        submission.notebook = submission.renamed_from = notebooks[0]
    else:
        others = f", and several other notebooks: {', '.join(notebooks)}"
        ignored = ", ".join(shown(name, 40) for name in found.ignored[:5])
        submission.status = report.MISSING
        submission.message = (
            f"no {notebook}"
            + (others if notebooks else "")
            + (f" (files ignored: {ignored})" if ignored else "")
        )
        return
    try:
        nb, changed = read_notebook(_read(files[submission.notebook]))
    except NotebookProblem as problem:
        submission.status = report.INVALID
        submission.message = f"{submission.notebook} {problem}"
        return
    submission.tampered = tampered_cells(nb, release)
    if forget_unknown_grade_ids(nb, release) or changed:
        import nbformat

        repaired.mkdir(parents=True, exist_ok=True)
        path = repaired / submission.notebook
        path.write_text(nbformat.writes(nb), encoding="utf-8")
        submission.files[submission.notebook] = path


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)


# --- one notebook --------------------------------------------------------------------


def nesting_depth(text: str) -> int:
    """How deeply the JSON ``text`` nests arrays and objects, counted without recursion
    (brackets inside strings do not count)."""
    brackets = _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets.encode())), default=0)


def _unique_keys(pairs: list[tuple]) -> dict:
    keys = Counter(key for key, _ in pairs)
    twice = [key for key, count in keys.items() if count > 1]
    if twice:
        raise NotebookProblem(f"has the key {shown(twice[0], 40)} twice in one object")
    return dict(pairs)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotebookProblem(f"has a number too large for a float ({text[:20]})")
    return value


def _no_constant(text: str):
    raise NotebookProblem(f"has {text}, which is not JSON")


def read_notebook(data: bytes):
    """The notebook in ``data``, validated; returns ``(notebook, repaired)``, where
    ``repaired`` says that cell ids were missing or duplicated and have been replaced.

    Raises :class:`NotebookProblem` (a sentence's end: "is not UTF-8 text", ...) for
    anything else than a valid nbformat 4 notebook with valid nbgrader metadata.
    """
    import nbformat
    from nbformat.v4.rwbase import rejoin_lines, strip_transient

    if len(data) > MAX_FILE_BYTES:
        raise NotebookProblem(f"is larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotebookProblem(f"is not UTF-8 text (byte {error.start})") from None
    if nesting_depth(text) > MAX_NESTING:
        raise NotebookProblem(f"nests JSON more than {MAX_NESTING} levels deep")
    try:
        content = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_float=_finite,
            parse_constant=_no_constant,
        )
    except NotebookProblem:
        raise
    except ValueError as error:  # JSONDecodeError, and integers of over 4300 digits
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise NotebookProblem(f"is not JSON ({reason[:80]})") from None
    if not isinstance(content, dict) or type(content.get("nbformat")) is not int:
        raise NotebookProblem("is not a notebook (no nbformat version)")
    if content["nbformat"] != 4 or type(content.get("nbformat_minor")) is not int:
        raise NotebookProblem("is not an nbformat 4 notebook")
    cells = content.get("cells")
    if not isinstance(cells, list):
        raise NotebookProblem("does not follow the notebook format: no list of cells")
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise NotebookProblem(
                f"does not follow the notebook format: cells[{index}] is not an object"
            )
    repaired = _repair_cell_ids(content)
    nb = nbformat.from_dict(content)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (nbformat warns where it would repair)
            nbformat.validate(nb, version=4, version_minor=content["nbformat_minor"])
    except nbformat.ValidationError as error:
        where = "".join(
            f"[{key}]" if isinstance(key, int) else f".{key}"
            for key in error.absolute_path
        ).lstrip(".")
        raise NotebookProblem(
            f"does not follow the notebook format: "
            f"{where or 'the notebook'}: {error.message[:120]}"
        ) from None
    except Exception as error:  # noqa: BLE001 (nbformat's own asserts on odd versions)
        raise NotebookProblem(
            f"does not follow the notebook format ({type(error).__name__})"
        ) from None
    _check_nbgrader_metadata(nb)
    nb = rejoin_lines(nb)  # (as nbformat.reads does: sources as strings)
    return strip_transient(nb), repaired


def _repair_cell_ids(content: dict) -> bool:
    """Give cells without a usable id, or with one another cell had first, a new id
    (``cell-<index>``); True if any changed. (nbformat would, with random ids.)"""
    if content["nbformat_minor"] < 5:
        return False
    cells = content["cells"]
    taken = Counter(cell.get("id") for cell in cells if isinstance(cell.get("id"), str))
    seen, changed = set(), False
    for index, cell in enumerate(cells):
        cell_id = cell.get("id")
        if "id" in cell and not isinstance(cell_id, str):
            continue  # a wrong type: the schema reports it
        if cell_id is None or cell_id in seen:
            new = f"cell-{index}"
            while new in taken or new in seen:
                new += "x"
            cell["id"] = cell_id = new
            changed = True
        seen.add(cell_id)
    return changed


def _check_nbgrader_metadata(nb) -> None:
    import jsonschema
    from nbgrader.nbgraderformat.v3 import MetadataValidatorV3

    validator = MetadataValidatorV3()
    validator.log = logging.getLogger("rnn_course.grading.intake")  # (no warnings)
    for index, cell in enumerate(nb.cells):
        if "nbgrader" not in cell.metadata:
            continue
        if not isinstance(cell.metadata.nbgrader, dict):
            raise NotebookProblem(
                f"has nbgrader metadata that is not an object in cells[{index}]"
            )
        try:
            jsonschema.validate(cell.metadata.nbgrader, validator.schema)
            validator.validate_cell(cell)  # (also what the schema cannot say)
        except Exception as error:  # noqa: BLE001 (nbgrader raises several kinds)
            message = getattr(error, "message", None) or str(error)
            raise NotebookProblem(
                f"has invalid nbgrader metadata in cells[{index}]: {message[:120]}"
            ) from None


def forget_unknown_grade_ids(nb, release) -> bool:
    """Make cells whose grade id the release does not know into plain cells; True if
    there were any.

    nbgrader 0.9.6 means to do this itself (``OverwriteCells`` drops an unknown grade
    id), but with ``add_missing_cells`` it then fails on the cell it has just changed
    (KeyError 'grade_id'), and the whole submission with it. Renaming a test cell must
    cost no more than deleting it: it is restored.
    """
    known = {
        cell.metadata.nbgrader["grade_id"]
        for cell in release.cells
        if "nbgrader" in cell.metadata
    }
    changed = False
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        if "nbgrader" in meta and meta["nbgrader"].get("grade_id") not in known:
            del meta["nbgrader"]
            changed = True
    return changed


def tampered_cells(submitted, release) -> list[str]:
    """Test and locked cells of the release that the submission deleted, duplicated or
    edited.

    Compared as nbgrader's ``OverwriteCells`` compares them: by grade id and nbgrader's
    checksum.
    """
    from nbgrader import utils

    found: dict[str, list] = {}
    for cell in submitted.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id:
            found.setdefault(grade_id, []).append(cell)
    known = {
        cell.metadata.nbgrader["grade_id"]
        for cell in release.cells
        if "nbgrader" in cell.metadata
    }
    changes = [
        f"{grade_id} (unknown grade id)" for grade_id in found if grade_id not in known
    ]
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
            same = utils.compute_checksum(copies[0]) == cell.metadata.nbgrader.get(
                "checksum"
            )
            if not same:
                changes.append(f"{grade_id} (edited)")
    return changes
