"""The grader's side of nbgrader's gradebooks: the release course copy, and the instructor's gradebook.

* :func:`prepare_release` makes the course copy each sandbox starts from: the *released* notebook and a
  gradebook made from it by nbgrader's own ``generate_assignment``. Its test cells are the visible
  ones only; the hidden tests and solutions never go near a sandbox. It is made once per release and
  kept in the grader's cache (``<course>/.rnn-course-cache/releases/``, keyed by a hash of the released
  files, the gradebook's schema and nbgrader's version), which no sandbox sees.
* :class:`GradebookWriter` records results in the instructor's gradebook (``<course>/gradebook.db``)
  through nbgrader's Gradebook API: the student, the submission, and each grade cell's ``auto_score``.
  Only the main process uses it, one submission after another, so parallel grading cannot corrupt it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import sys
import tempfile
import warnings
from pathlib import Path

from . import report


def _nbgrader_config(root: Path, source: str, release: str, db: Path, assignment: str):
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.source_directory = source
    config.CourseDirectory.release_directory = release
    config.CourseDirectory.db_url = f"sqlite:///{db}"
    config.CourseDirectory.assignment_id = assignment
    config.GenerateAssignment.force = True
    return config


def _venv_first_on_path() -> None:
    """nbgrader runs ``alembic`` by name when it creates a gradebook: find this environment's first."""
    bin_folder = os.path.dirname(sys.executable)
    if bin_folder not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_folder + os.pathsep + os.environ.get("PATH", "")


def _generate_assignment(config) -> None:
    """nbgrader's ``generate_assignment`` through its API."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory

    _venv_first_on_path()
    converter = GenerateAssignment(
        coursedir=CourseDirectory(config=config), config=config
    )
    converter.start()


def _gradebook_schema(like: Path) -> tuple[list[str], list[tuple]]:
    """The SQL that makes ``like``'s tables and its alembic version rows (no content)."""
    with sqlite3.connect(like) as source:
        statements = [
            sql
            for (sql,) in source.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE "
                "'sqlite_%' ORDER BY rowid"
            )
        ]
        versions = source.execute("SELECT version_num FROM alembic_version").fetchall()
    return statements, versions


def empty_gradebook(like: Path, target: Path) -> None:
    """A gradebook with the schema of ``like`` and no rows (nothing of ``like``'s content is copied).

    nbgrader itself would create one by running ``alembic`` in a subprocess (a few seconds each run).
    """
    statements, versions = _gradebook_schema(like)
    with sqlite3.connect(target) as database:
        for statement in statements:
            database.execute(statement)
        database.executemany(
            "INSERT INTO alembic_version (version_num) VALUES (?)", versions
        )


def _release_files(course_root: Path, assignment: str) -> tuple[list[Path], str]:
    """The files of ``exercises/<assignment>/`` a release copy holds, and its one notebook's name."""
    release = Path(course_root) / "exercises" / assignment
    notebooks = sorted(path.name for path in release.glob("*.ipynb"))
    if len(notebooks) != 1:
        raise ValueError(
            f"{release} must hold exactly one notebook (found {len(notebooks)}): run `make exercises`?"
        )
    files = [
        path
        for path in sorted(release.iterdir())
        if path.is_file() and not path.is_symlink() and not path.name.startswith(".")
    ]
    return files, notebooks[0]


RELEASE_CACHE_FORMAT = "1"
"""Part of every cache key: a change to what :func:`prepare_release` makes changes it."""


def release_cache_key(course_root: Path, assignment: str) -> str:
    """What a release copy is made from, hashed: the released files (names and bytes), the schema of
    the course's gradebook, nbgrader's version and the cache format. Any change makes a new key."""
    from importlib.metadata import version

    files, _ = _release_files(course_root, assignment)
    statements, versions = _gradebook_schema(Path(course_root) / "gradebook.db")
    digest = hashlib.sha256()
    for part in (RELEASE_CACHE_FORMAT, version("nbgrader"), assignment, *statements):
        digest.update(part.encode() + b"\0")
    digest.update(repr(sorted(versions)).encode() + b"\0")
    for path in files:
        data = path.read_bytes()
        digest.update(f"{path.name}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


def _make_release(course_root: Path, assignment: str, destination: Path) -> None:
    """The release copy made by nbgrader's ``generate_assignment`` in ``destination``."""
    files, _ = _release_files(course_root, assignment)
    source = Path(destination) / "source" / assignment
    source.mkdir(parents=True)
    empty_gradebook(
        Path(course_root) / "gradebook.db", Path(destination) / "gradebook.db"
    )
    for path in files:
        shutil.copyfile(path, source / path.name)
    _generate_assignment(
        _nbgrader_config(
            Path(destination),
            "source",
            "release",
            Path(destination) / "gradebook.db",
            assignment,
        )
    )
    shutil.rmtree(Path(destination) / "release", ignore_errors=True)
    for folder, _, names in os.walk(destination):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)


def _cached_release(
    course_root: Path, assignment: str, cache: Path
) -> tuple[Path | None, bool]:
    """The cached release copy for the release as it is now: (folder, whether it was made now).

    ``cache`` is the grader's own folder (under the course root, which no sandbox sees): an entry is
    made in a private temporary folder beside it and renamed into place in one step, so a reader
    never sees half of one; entries of the same assignment with another key are removed. Returns
    (None, False) where the cache cannot be written (a read-only course, say)."""
    key = release_cache_key(course_root, assignment)
    entry = Path(cache) / f"{assignment}-{key[:32]}"
    if (entry / "gradebook.db").is_file():
        return entry, False
    try:
        Path(cache).mkdir(parents=True, exist_ok=True)
        os.chmod(cache, 0o755)
        building = Path(tempfile.mkdtemp(prefix=f".{assignment}-", dir=cache))
    except OSError:
        return None, False
    try:
        _make_release(course_root, assignment, building / "copy")
        try:
            os.rename(building / "copy", entry)
        except OSError:
            if not (
                entry / "gradebook.db"
            ).is_file():  # (another run's rename won: use that)
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    for other in Path(cache).glob(f"{assignment}-*"):
        if other != entry and other.name[len(assignment) + 1 :].isalnum():
            shutil.rmtree(other, ignore_errors=True)
    return entry, True


def prepare_release(
    course_root: Path, assignment: str, destination: Path, cache: Path | None = None
) -> str:
    """Fill ``destination`` with ``source/<assignment>/`` (the release) and ``gradebook.db``; returns the
    notebook's file name. The release folder must hold exactly one notebook; the course's gradebook must
    exist (its schema is reused).

    With ``cache`` (a folder of the grader's own), the copy is made once per release (see
    :func:`release_cache_key`) and copied from there afterwards: ``generate_assignment`` and its
    imports cost about a second of CPU per run.
    """
    _, notebook = _release_files(course_root, assignment)
    entry = _cached_release(course_root, assignment, cache)[0] if cache else None
    if entry is None:
        _make_release(course_root, assignment, destination)
        return notebook
    try:
        shutil.copytree(entry, destination)
    except (OSError, shutil.Error):  # (a concurrent run on a newer release removed it)
        shutil.rmtree(destination, ignore_errors=True)
        _make_release(course_root, assignment, destination)
        return notebook
    for folder, _, names in os.walk(destination):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)
    return notebook


class GradebookWriter:
    """Writes rows into the instructor's gradebook (the main process only)."""

    def __init__(self, course_root: Path, assignment: str, notebook: str):
        self.course_root = Path(course_root)
        self.db = self.course_root / "gradebook.db"
        self.db_url = f"sqlite:///{self.db}"
        self.assignment = assignment
        self.notebook = Path(notebook).stem

    def ensure_assignment(self, grade_ids: list[str]) -> None:
        """Make sure the gradebook knows the assignment with these grade cells.

        If it does not know the assignment yet, nbgrader's ``generate_assignment`` records it from
        ``solutions/`` (writing its release to a temporary folder: ``exercises/`` is left alone).
        """
        from nbgrader.api import Gradebook, MissingEntry

        _venv_first_on_path()
        with Gradebook(self.db_url) as gradebook:
            try:
                assignment = gradebook.find_assignment(self.assignment)
            except MissingEntry:
                assignment = None
            if assignment is not None:
                known = sorted(
                    cell.name
                    for notebook in assignment.notebooks
                    for cell in notebook.grade_cells
                )
                if known != sorted(grade_ids):
                    raise ValueError(
                        f"the gradebook's grade cells for {self.assignment} ({', '.join(known)}) differ "
                        f"from the source notebook's ({', '.join(grade_ids)}): regenerate the assignment"
                    )
                return
        with tempfile.TemporaryDirectory(prefix="rnn-course-release-") as release:
            _generate_assignment(
                _nbgrader_config(
                    self.course_root, "solutions", release, self.db, self.assignment
                )
            )

    def write(self, row: report.Row) -> None:
        """Record one row: the student, the submission, and the score of each grade cell."""
        if row.score is None or row.status in (report.UNKNOWN, report.GRADER_ERROR):
            return
        from nbgrader.api import Gradebook

        with Gradebook(self.db_url) as gradebook, warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # SQLAlchemy's autoflush warnings inside nbgrader's API
            gradebook.update_or_create_student(row.student)
            gradebook.update_or_create_submission(self.assignment, row.student)
            for part in row.parts:
                grade = gradebook.find_grade(
                    part.grade_id, self.notebook, self.assignment, row.student
                )
                grade.auto_score = part.points if part.points is not None else 0.0
                grade.needs_manual_grade = False
            gradebook.db.commit()
